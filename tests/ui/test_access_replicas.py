"""Access changes reach every replica at the next question: two `chainlit run` processes on one PostgreSQL
database (as tests/browser/test_replicas.py starts them), bob chatting over socket.io with replica B while
`kbchat kb access` changes base hr in the database."""

from __future__ import annotations

import asyncio
import secrets
import shutil

import pytest

from tests.browser.conftest import login
from tests.conftest import REPO, make_pdf, new_pg_database
from tests.fixtures.appserver import PASSWORDS, AppServer, kbchat_cli
from tests.ui.test_load import Chat

pytestmark = [pytest.mark.slow]

CODE = "QUOKKA4471"
HR_FILE = "hr-salaries.pdf"
HR_TEXT = f"Salary review policy: the salary review code word is {CODE}; reviews happen every March."
QUESTION = "When is the salary review and what is its code word?"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, pg_server, stub):
    """Replicas A and B: one database, one secret, each its own knowledge folder holding base hr (readable by
    group hr) with the same PDF; the general persona searches hr besides the default base."""
    root = tmp_path_factory.mktemp("access-replicas")
    personas = root / "personas"
    personas.mkdir()
    general = (REPO / "personas" / "general.yaml").read_text(encoding="utf-8")
    (personas / "general.yaml").write_text(general + "\nknowledge: [hr]\n", encoding="utf-8")
    pdf = make_pdf(root / HR_FILE, [HR_TEXT])
    shared = {"KBCHAT_DATABASE_URL": new_pg_database(pg_server), "KBCHAT_UPLOADS_DIR": str(root / "uploads"),
              "CHAINLIT_AUTH_SECRET": secrets.token_urlsafe(48), "KBCHAT_PERSONAS_DIR": str(personas)}
    for name in ("A", "B"):
        (root / name / "knowledge" / "hr").mkdir(parents=True)
        (root / name / "knowledge" / "hr" / "README.md").write_text("# hr\n\nHR files.\n", encoding="utf-8")
        shutil.copy(pdf, root / name / "knowledge" / "hr" / HR_FILE)
    cli_env = {**shared, "KBCHAT_KNOWLEDGE_DIR": str(root / "A" / "knowledge")}

    def cli(*args):
        r = kbchat_cli(*args, env=cli_env, data_dir=root / "cli-data",
                       stdin=PASSWORDS.get(args[2], "") + "\n" if args[:2] == ("users", "add") else None)
        assert r.returncode == 0, (args, r.stderr)
        return r.stdout

    for name in ("alice", "bob"):
        cli("users", "add", name, "--password-stdin")
    cli("groups", "add", "hr")
    cli("users", "groups", "alice", "--add", "hr")
    cli("kb", "access", "hr", "--read", "hr")
    servers = {}
    try:
        for name in ("A", "B"):
            srv = AppServer(root / name, stub.base_url, extra_env=shared)
            servers[name] = srv
            srv.wait_ready()
        yield {"cli": cli, **servers}
    finally:
        for srv in servers.values():
            srv.stop()


async def _ask(url: str, user: str, question: str) -> str:
    client = login(url, user)
    chat = Chat(url, cookie="; ".join(f"{k}={v}" for k, v in client.cookies.items()))
    await chat.connect()
    try:
        await chat.send(question)
        await asyncio.sleep(0.5)  # the answer's last update (its sources) after the task ends
    finally:
        await chat.sio.disconnect()
    return "\n".join(str(m.get("output", "")) for m in chat.messages.values())


def test_access_change_on_the_database_applies_to_the_next_question_on_the_other_replica(cluster):
    a, b = cluster["A"], cluster["B"]
    assert HR_FILE in asyncio.run(_ask(a.url, "alice", QUESTION))       # alice (group hr) is answered from hr
    before = asyncio.run(_ask(b.url, "bob", QUESTION))
    assert HR_FILE not in before and CODE not in before                 # bob is not, on B
    assert cluster["cli"]("kb", "access", "hr", "--read", "hr,user:bob").strip() == \
        "hr: read: group:hr, user:bob; manage: admins"
    after = asyncio.run(_ask(b.url, "bob", QUESTION))                    # no restart of B
    assert HR_FILE in after
    cluster["cli"]("kb", "access", "hr", "--read", "hr")                # and back, on A this time
    again = asyncio.run(_ask(a.url, "bob", QUESTION))
    assert HR_FILE not in again and CODE not in again
