"""Access control from the command line, on both stores (embedded; PostgreSQL with KBCHAT_DATABASE_URL):
`--as USER` on search, ask and export whichever way the bases are named, the access commands' refusals,
and `kbchat audit` after a scripted session.

alice is in group hr, bob in none; base hr (readable by hr only) holds a PDF with a code word nobody else
may see; the default base holds enough passages for a full top k."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone

import pytest
from click.testing import CliRunner

from kbchat.cli import main
from tests.conftest import REPO

CODE = "QUOKKA4471"
HR_FILE = "hr-salaries.pdf"
HR_PAGES = [f"Salary review policy. The salary review code word is {CODE}. Reviews happen every March.",
            "Salary bands for engineers and managers are set by the HR committee each year."]
DEFAULT_PAGES = [f"Office handbook page {i}: the salary is paid on the last working day; reviews of desks, "
                 f"chairs and parking happen every month (section {i})." for i in range(1, 9)]
QUESTION = "When does the salary review happen and what is the code word?"


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def ok(*args, input=None):
    r = run(*args, input=input)
    assert r.exit_code == 0, (args, r.output)
    return r


@pytest.fixture(params=["embedded", "postgresql"])
def site(request, cli_env, monkeypatch, tmp_path, pdf_factory):
    """alice (hr), bob (no group), admin boss; base hr readable by hr, with the code word; the default base
    with 8 passages; persona hr-helper bound to hr. The store: embedded or PostgreSQL."""
    if request.param == "postgresql":
        monkeypatch.setenv("KBCHAT_DATABASE_URL", request.getfixturevalue("pg_url"))
    monkeypatch.setenv("KBCHAT_KNOWLEDGE_DIR", str(tmp_path / "knowledge"))
    personas = tmp_path / "personas"
    personas.mkdir()
    shutil.copy(REPO / "personas" / "general.yaml", personas / "general.yaml")
    general = (REPO / "personas" / "general.yaml").read_text(encoding="utf-8")
    (personas / "hr-helper.yaml").write_text(  # the general persona, bound to base hr
        general.replace("id: general", "id: hr-helper").replace("default: true", "default: false")
        + "\nknowledge: [hr]\n", encoding="utf-8")
    monkeypatch.setenv("KBCHAT_PERSONAS_DIR", str(personas))
    for name, admin in (("alice", False), ("bob", False), ("boss", True)):
        ok("users", "add", name, *(["--admin"] if admin else []), "--password-stdin", input=f"{name}-pw-12345\n")
    ok("groups", "add", "hr")
    ok("users", "groups", "alice", "--add", "hr")
    ok("kb", "create", "hr", "--description", "HR files")
    ok("ingest", str(pdf_factory(HR_FILE, HR_PAGES)), "--kb", "hr")
    ok("ingest", str(pdf_factory("handbook.pdf", DEFAULT_PAGES)))
    ok("kb", "access", "hr", "--read", "hr")
    return request.param


def _hits(r) -> list[dict]:
    return json.loads(r.stdout)


@pytest.mark.parametrize("naming", [("--kb", "hr"), ("--collection", "kb-hr"), ("--persona", "hr-helper"),
                                    ("--kb", "hr", "--kb", "default"), ()],
                         ids=["kb", "collection", "persona", "kb-and-default", "default"])
def test_search_as_bob_never_shows_hr_and_as_alice_does(site, naming):
    bob = run("search", QUESTION, *naming, "--as", "bob", "--json")
    assert CODE not in bob.output and HR_FILE not in bob.output
    only_hr = "default" not in naming and naming != ()
    if only_hr:
        assert bob.exit_code == 1
        assert "bob may not read knowledge base hr: left out" in bob.stderr
        assert "nothing left to search" in bob.stderr
    else:
        assert bob.exit_code == 0, bob.output
        assert all(h["source"] == "handbook.pdf" for h in _hits(bob))
        assert ("may not read knowledge base hr" in bob.stderr) == ("hr" in naming)
    alice = ok("search", QUESTION, *naming, "--as", "alice", "--json")
    if naming:
        assert CODE in alice.stdout and _hits(alice)[0]["source"] == HR_FILE
    else:  # the default base only: nothing of hr for anybody
        assert CODE not in alice.stdout
    # the operator (no --as) reads everything, as before
    if naming:
        assert CODE in ok("search", QUESTION, *naming, "--json").stdout


def test_bobs_top_k_is_full(site):
    """The filter is applied before ranking: bob gets k hits from what he may read, not k minus hr's."""
    for k in (3, 5, 8):
        bob = _hits(ok("search", QUESTION, "--kb", "hr", "--kb", "default", "--as", "bob", "--k", str(k), "--json"))
        assert len(bob) == k and {h["source"] for h in bob} == {"handbook.pdf"}
    alice = _hits(ok("search", QUESTION, "--kb", "hr", "--kb", "default", "--as", "alice", "--k", "5", "--json"))
    assert len(alice) == 5 and alice[0]["source"] == HR_FILE


def test_ask_as_bob(site, stub):
    bob = run("ask", QUESTION, "--persona", "hr-helper", "--as", "bob")
    assert bob.exit_code == 1 and CODE not in bob.output and "bob may not read knowledge base hr" in bob.stderr
    bob = ok("ask", QUESTION, "--kb", "hr", "--kb", "default", "--as", "bob", "--json")
    assert CODE not in bob.output and HR_FILE not in bob.output
    assert all(CODE not in json.dumps(req) for req in stub.requests[-1:])  # nothing of hr went to the LLM
    alice = ok("ask", QUESTION, "--persona", "hr-helper", "--as", "alice", "--json")
    assert json.loads(alice.stdout)["hits"][0]["source"] == HR_FILE


def test_unknown_as_user_and_base(site):
    r = run("search", QUESTION, "--as", "mallory")
    assert r.exit_code == 1 and r.stderr.strip() == "Error: --as: no user named mallory"
    r = run("export", "--format", "openai", "--as", "mallory")
    assert r.exit_code == 1 and "no user named mallory" in r.stderr
    r = run("search", QUESTION, "--kb", "nope", "--as", "bob")
    assert r.exit_code == 1 and "unknown knowledge base 'nope'" in r.stderr


def _share(records):
    from kbchat.records.database import open_database
    from kbchat.settings import Settings
    from kbchat.sharing.store import SharedQA, ShareStore

    store = ShareStore(open_database(Settings()))
    for i, (question, collections) in enumerate(records):
        store.share(SharedQA(question=question, answer=f"answer {i} [1]", answer_key=f"k{i}", status="approved",
                             sources=[{"n": n, "file": "f.pdf", "page": 1, "text": f"passage of {c or 'unknown'}",
                                       **({"collection": c} if c else {})}
                                      for n, c in enumerate(collections, 1)]))


def test_export_as_bob_leaves_out_records_citing_hr(site):
    _share([("salary question", ["kb-hr"]), ("handbook question", ["knowledge"]),
            ("mixed question", ["knowledge", "kb-hr"]), ("old record", [None]), ("no sources", [])])
    bob = ok("export", "--format", "openai", "--with-context", "--as", "bob")
    assert "passage of kb-hr" not in bob.stdout and "salary question" not in bob.stdout
    assert "mixed question" not in bob.stdout and "old record" not in bob.stdout  # unknown base: left out
    assert "handbook question" in bob.stdout and "no sources" in bob.stdout
    assert "3 record(s) left out" in bob.stderr
    alice = ok("export", "--format", "openai", "--with-context", "--as", "alice")
    assert "salary question" in alice.stdout and "mixed question" in alice.stdout
    assert "old record" not in alice.stdout and "1 record(s) left out" in alice.stderr
    boss = ok("export", "--format", "openai", "--as", "boss")  # an admin reads everything, unknown bases too
    assert "old record" in boss.stdout and "left out" not in boss.stderr
    everything = ok("export", "--format", "openai")
    assert len(everything.stdout.splitlines()) == 5
    lines = [json.loads(x) for x in ok("audit", "--action", "export", "--json").stdout.splitlines()]
    assert [(x["detail"].get("as"), x["detail"]["records"]) for x in lines] == [
        ("bob", 2), ("alice", 4), ("boss", 5), (None, 5)]


def test_access_refusals(site):
    before = ok("kb", "access", "hr").stdout
    for bad, name in (("hr,nosuch", "no group named nosuch"), ("user:nobody", "no user named nobody")):
        r = run("kb", "access", "hr", "--read", bad)
        assert r.exit_code == 1 and name in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert ok("kb", "access", "hr").stdout == before == "hr: read: group:hr; manage: admins\n"
    r = run("groups", "remove", "hr")
    assert r.exit_code == 1 and "grants access to hr" in r.stderr
    assert "hr\t" in ok("groups", "list").stdout
    assert CODE in ok("search", QUESTION, "--kb", "hr", "--as", "alice", "--json").stdout
    r = ok("groups", "remove", "hr", "--force")
    assert "hr no longer name it" in r.stdout
    assert ok("kb", "access", "hr").stdout == "hr: read: admins only; manage: admins\n"  # never everybody
    for user in ("alice", "bob"):
        r = run("search", QUESTION, "--kb", "hr", "--as", user, "--json")
        assert r.exit_code == 1 and CODE not in r.output
    assert CODE in ok("search", QUESTION, "--kb", "hr", "--as", "boss", "--json").stdout


def test_audit_lists_a_scripted_session(site, tmp_path, pdf_factory):
    """Each kind of change the CLI makes lands in `kbchat audit`, and --since/--user/--action filter."""
    start = datetime.now(timezone.utc)
    ok("users", "add", "carol", "--password-stdin", input="carol-pw-12345\n")
    ok("users", "role", "carol", "admin")
    ok("groups", "add", "clinic-a")
    ok("groups", "quota", "clinic-a", "20")
    ok("users", "groups", "bob", "--add", "clinic-a")
    ok("users", "groups", "bob", "--remove", "clinic-a")
    ok("kb", "create", "board")
    ok("ingest", str(pdf_factory("minutes.pdf", ["Board minutes: the budget was approved."])), "--kb", "board")
    ok("kb", "access", "board", "--read", "clinic-a,user:alice", "--manage", "user:carol")
    ok("kb", "remove", "board", "minutes.pdf")
    sheet = tmp_path / "qa.csv"
    sheet.write_text("instruction,input,output\nQ one,,A one\nQ two,,A two\nQ three,,A three\n", encoding="utf-8")
    ok("shared", "import", str(sheet))
    ids = [json.loads(x)["id"] for x in ok("shared", "list", "--json").stdout.splitlines()]
    ok("shared", "reject", ids[0])
    ok("shared", "approve", ids[1])
    ok("shared", "edit", ids[2], "--answer", "A three, better")
    ok("shared", "delete", ids[0])
    ok("export", "--format", "openai", "--as", "bob")
    ok("groups", "remove", "clinic-a", "--force")

    rows = [json.loads(x) for x in ok("audit", "--json").stdout.splitlines()]
    actions = [r["action"] for r in rows]
    for action in ("user.add", "user.role", "group.add", "group.quota", "group.member.add", "group.member.remove",
                   "kb.create", "kb.add", "kb.access", "kb.remove", "sheet.import", "review.reject",
                   "review.approve", "review.edit", "review.delete", "export", "group.remove"):
        assert action in actions, action
    assert all(r["address"] == "cli" and r["user_identifier"].startswith("cli") for r in rows)
    text = json.dumps(rows)
    assert "carol-pw-12345" not in text and "budget was approved" not in text  # no password, no passage text
    by = {r["action"]: r for r in rows}
    assert by["kb.add"]["target"] == "board" and by["kb.add"]["detail"]["documents"] == ["minutes.pdf"]
    assert by["kb.remove"]["detail"]["document"] == "minutes.pdf"
    assert by["sheet.import"]["detail"]["imported"] == 3
    assert by["kb.access"]["detail"] == {"read": "group:clinic-a, user:alice", "manage": ["user:carol"]}
    assert by["export"]["detail"]["as"] == "bob" and by["group.remove"]["detail"] == {"bases": ["board"]}

    kb_rows = [json.loads(x) for x in ok("audit", "--action", "kb.*", "--json").stdout.splitlines()]
    assert {r["action"] for r in kb_rows} == {"kb.create", "kb.add", "kb.access", "kb.remove"}
    assert [r["action"] for r in kb_rows].count("kb.create") == 2  # the fixture's hr and board
    since = [json.loads(x) for x in ok("audit", "--since", start.isoformat(), "--json").stdout.splitlines()]
    assert since[0]["action"] == "user.add" and since[0]["target"] == "carol" and len(since) < len(rows)
    assert ok("audit", "--since", "1m", "--json").stdout == ok("audit", "--json").stdout
    assert ok("audit", "--user", "nobody").stdout == ""
    assert len(ok("audit", "--user", rows[0]["user_identifier"], "--json").stdout.splitlines()) == len(rows)
    plain = ok("audit", "--action", "review.approve").stdout.splitlines()
    assert len(plain) == 1 and f"review.approve\t{ids[1]}\tcli" in plain[0]
