"""Two app replicas on one PostgreSQL, for real: two `chainlit run` processes with their own data dirs, one
database (KBCHAT_DATABASE_URL), one uploads folder (KBCHAT_UPLOADS_DIR) and one CHAINLIT_AUTH_SECRET, as
behind a load balancer. A chat upload made on one is searched by the other at once, a thread started on one
resumes on the other, a document the CLI ingests meanwhile is found by both without a restart, and the
ownership checks hold on both."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.browser.conftest import browser_login, login
from tests.conftest import CORPUS, SHOTS_DIR, make_pdf, new_pg_database
from tests.fixtures.appserver import PASSWORDS, AppServer, kbchat_cli

# screenshots for the closing note: replicas-*.png in the KBCHAT_SHOTS folder when it is set
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.shots(SHOTS_DIR)]

T400 = CORPUS / "nvidia-t400-datasheet-1987150-r3.pdf"
SEEN: dict[str, list[str]] = {"A": [], "B": []}  # what each replica showed, for the closing note


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, pg_server, stub):
    root = tmp_path_factory.mktemp("replicas")
    url = new_pg_database(pg_server)
    shared = {"KBCHAT_DATABASE_URL": url, "KBCHAT_UPLOADS_DIR": str(root / "shared-uploads"),
              "CHAINLIT_AUTH_SECRET": secrets.token_urlsafe(48)}
    for name in ("alice", "bob"):
        r = kbchat_cli("users", "add", name, "--password-stdin", env=shared, data_dir=root / "cli-data",
                       stdin=PASSWORDS[name] + "\n")
        assert r.returncode == 0, r.stderr
    servers = {}
    try:
        for name in ("A", "B"):  # one after the other: the second finds the knowledge folder already synced
            (root / name).mkdir()
            srv = AppServer(root / name, stub.base_url, knowledge=[T400], extra_env=shared)
            servers[name] = srv
            srv.wait_ready()
        yield {"url": url, "env": shared, "root": root, **servers}
    finally:
        for srv in servers.values():
            srv.stop()


def _ask(page, question: str, n_before: int):
    from playwright.sync_api import expect

    page.locator("#chat-input").fill(question)
    page.locator("#chat-submit").click()
    answers = page.locator("[data-step-type='assistant_message']").filter(has_text=re.compile("Source 1", re.I))
    expect(answers).to_have_count(n_before + 1, timeout=90_000)
    return answers.last


def _cites(answer) -> list[str]:
    """The "file, page N" sources an answer shows."""
    return sorted(set(re.findall(r"[\w.-]+\.pdf, page \d+", answer.inner_text())))


def test_both_replicas_share_one_store(cluster):
    """The knowledge folder synced by A is not indexed twice by B, and both search it."""
    eng = create_engine(cluster["url"].replace("postgresql://", "postgresql+psycopg://"))
    with eng.connect() as c:
        docs = c.execute(text("SELECT source_key, count(*) FROM kb_documents WHERE active GROUP BY 1")).all()
    eng.dispose()
    assert docs == [(f"knowledge/{T400.name}", 1)]  # synced by A; B found it unchanged
    assert "knowledge sync:" in cluster["B"].read_log()
    for name in ("A", "B"):
        alice = login(cluster[name].url, "alice")
        r = alice.post("/project/threads", json={"pagination": {"first": 5}, "filter": {}})
        assert r.status_code == 200  # the session cookie is signed with the secret both replicas share


def test_upload_on_one_replica_resumes_and_is_searched_on_the_other(cluster, browser, shots, tmp_path):
    from playwright.sync_api import expect

    a, b = cluster["A"], cluster["B"]
    pdf = make_pdf(tmp_path / "zebra-manual.pdf", ["Introduction to the zoo network.",
                                                   "The zebra protocol uses port 7777 for all traffic."])
    ctx, page = browser_login(browser, a.url, "alice")
    page.locator("#upload-button-input").set_input_files(str(pdf))
    first = _ask(page, "What port does the zebra protocol use?", 0)
    expect(first).to_contain_text("zebra-manual.pdf, page 2")
    SEEN["A"].append(f"alice uploads zebra-manual.pdf, asks; answer cites {_cites(first)}")
    tid = page.url.rstrip("/").split("/thread/")[-1]
    assert re.fullmatch(r"[0-9a-f-]{36}", tid), page.url
    shots(page, "replicas-A-upload-answer")
    ctx.close()
    uploaded = list((Path(cluster["env"]["KBCHAT_UPLOADS_DIR"]) / tid).glob("*.pdf"))
    assert len(uploaded) == 1  # in the shared folder, not in A's data dir
    assert not (a.root / "data" / "uploads").exists()

    # the same user on replica B: the thread is in B's sidebar, resumes, and a follow-up searches the upload
    ctx, page = browser_login(browser, b.url, "alice")
    item = page.locator(f"#thread-{tid}")
    expect(item).to_be_visible()
    item.click()
    expect(page.locator("[data-step-type='assistant_message']").filter(
        has_text="zebra-manual.pdf, page 2").first).to_be_visible()
    follow = _ask(page, "Which port does zebra use for its traffic?", 1)
    expect(follow).to_contain_text("zebra-manual.pdf")
    assert "7777" in follow.inner_text()
    SEEN["B"].append(f"alice opens thread {tid[:8]} from B's sidebar (A's answer shown); follow-up cites "
                     f"{_cites(follow)} and says 7777")
    shots(page, "replicas-B-resumed-follow-up")
    ctx.close()

    # the cited upload is served by B from the shared folder; not to bob, not without a login
    alice_b = login(b.url, "alice")
    thread = alice_b.get(f"/project/thread/{tid}").json()
    src = next(e for e in thread["elements"] if e["name"] == "Source 1")
    assert alice_b.get(src["url"]).content.startswith(b"%PDF")
    bob_b = login(b.url, "bob")
    codes = {"bob GET thread": bob_b.get(f"/project/thread/{tid}").status_code,
             "bob GET upload": bob_b.get(src["url"]).status_code,
             "anonymous GET thread": httpx.get(f"{b.url}/project/thread/{tid}").status_code,
             "bob DELETE thread": bob_b.request("DELETE", "/project/thread", json={"threadId": tid}).status_code}
    SEEN["B"].append(f"another user / no login against alice's thread: {codes}")
    assert codes == {"bob GET thread": 401, "bob GET upload": 404, "anonymous GET thread": 401,
                     "bob DELETE thread": 401}

    # deleting on B removes it for A too: rows, passages in PostgreSQL, files in the shared folder
    assert alice_b.request("DELETE", "/project/thread", json={"threadId": tid}).status_code == 200
    alice_a = login(a.url, "alice")
    assert alice_a.get(f"/project/thread/{tid}").status_code == 404
    eng = create_engine(cluster["url"].replace("postgresql://", "postgresql+psycopg://"))
    with eng.connect() as c:
        left = c.execute(text("SELECT count(*) FROM kb_passages WHERE collection=:c"), {"c": f"thread-{tid}"}).scalar()
    eng.dispose()
    assert left == 0 and not (Path(cluster["env"]["KBCHAT_UPLOADS_DIR"]) / tid).exists()
    SEEN["A"].append(f"after B deleted the thread: GET on A -> 404, passages left {left}")


def test_a_document_ingested_meanwhile_is_found_by_both_at_once(cluster, browser, shots, tmp_path):
    from playwright.sync_api import expect

    pdf = make_pdf(tmp_path / "walrus-guide.pdf", ["Walrus gateway guide.",
                                                   "The walrus gateway listens on port 6464 for backups."])
    r = kbchat_cli("ingest", str(pdf), env=cluster["env"], data_dir=cluster["root"] / "cli-data")
    assert r.returncode == 0 and "walrus-guide.pdf" in r.stdout, r.stderr
    for name in ("B", "A"):
        ctx, page = browser_login(browser, cluster[name].url, "alice")
        answer = _ask(page, "Which port does the walrus gateway listen on?", 0)
        expect(answer).to_contain_text("walrus-guide.pdf")
        SEEN[name].append(f"walrus-guide.pdf ingested by the CLI meanwhile, no restart: answer cites {_cites(answer)}")
        shots(page, f"replicas-{name}-ingested-meanwhile")
        ctx.close()
    print("\nwhat each replica saw:")
    for name, lines in SEEN.items():
        for line in lines:
            print(f"  {name}: {line}")
