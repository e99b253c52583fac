"""Review of shared Q&A against a real database: pending until approved, rejected never exported, an
edit exported beside the kept original; the CLI (list --status, show, approve, reject, edit, export
--status, stats on 1,000+ imported pairs); an existing database upgraded by migration 0002."""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path

from click.testing import CliRunner
from openpyxl import Workbook

from kbchat.cli import main
from kbchat.sharing.stats import estimate_tokens, language_of
from kbchat.sharing.store import ShareStore
from tests.conftest import SHOTS_ON
from tests.sharing.test_share import make

SHOTS = Path("/work/shots/issue-12b")


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_shared_records_wait_for_review(tmp_path):
    with ShareStore(tmp_path / "kbchat.sqlite") as store:
        a = store.share(make("k1", shared_at="2026-01-01T00:00:00Z"))
        b = store.share(make("k2", question="Q2", shared_at="2026-01-02T00:00:00Z"))
        assert (a.status, a.origin, a.reviewed_by) == ("pending", "share", None)
        assert store.count("pending") == 2 and store.next_pending().id == a.id
        assert store.next_pending([a.id]).id == b.id
        done = store.review(a.id, "approved", "boss")
        assert (done.status, done.reviewed_by) == ("approved", "boss") and done.reviewed_at
        edited = store.edit(b.id, "A better answer.", "boss")
        assert edited.edited_answer == "A better answer." and edited.answer == make("x").answer  # original kept
        assert edited.final_answer == "A better answer." and edited.status == "pending"
        assert store.edit(b.id, edited.answer, "boss").edited_answer is None  # back to the original
        assert store.review("nope", "approved", "boss") is None and store.edit("nope", "x", "boss") is None
        assert [r.id for r in store.list(status="approved")] == [a.id]
        assert [r.id for r in store.list(status="pending")] == [b.id]
        assert len(store.list(status="all")) == 2
        # sharing the same answer again does not reset its review
        assert store.share(make("k1")).status == "approved"


def _env(tmp_path, monkeypatch) -> Path:
    from tests.conftest import REPO

    monkeypatch.setenv("KBCHAT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("KBCHAT_PERSONAS_DIR", str(REPO / "personas"))
    return tmp_path / "data"


def test_cli_review_and_export_status(tmp_path, monkeypatch):
    data = _env(tmp_path, monkeypatch)
    with ShareStore(data / "kbchat.sqlite") as store:
        ok = store.share(make("k1", question="Approve me", shared_at="2026-01-01T00:00:00Z"))
        bad = store.share(make("k2", question="Reject me", shared_at="2026-01-02T00:00:00Z"))
        fix = store.share(make("k3", question="Edit me", answer="A wrong answer [1].",
                               shared_at="2026-01-03T00:00:00Z"))
        wait = store.share(make("k4", question="Leave me", shared_at="2026-01-04T00:00:00Z"))
    res = run("shared", "list", "--status", "pending")
    assert [line.split("\t")[2] for line in res.stdout.splitlines()] == ["pending"] * 4
    res = run("export", "--format", "alpaca")
    assert json.loads(res.stdout) == []
    assert ("4 pending record(s) not exported: review them (kbchat shared list --status pending) or export "
            "with --status all") in res.output
    assert run("shared", "approve", ok.id, "--by", "boss").stdout == f"approved {ok.id}\n"
    assert run("shared", "reject", bad.id).stdout == f"rejected {bad.id}\n"
    res = run("shared", "edit", fix.id, "--approve", "--by", "boss", input="The corrected answer.\n")
    assert res.stdout == f"edited {fix.id} and approved\n"
    res = run("shared", "show", fix.id)
    assert "Answer (edited; exported):\nThe corrected answer.\n" in res.stdout
    assert f"Original answer:\n{fix.answer}" in res.stdout and "status:    approved by boss" in res.stdout
    assert "[1] nvidia-a100-datasheet.pdf p.3: 2,039 GB/s 記憶體頻寬" in res.stdout
    res = run("shared", "approve", "no-such-id")
    assert res.exit_code == 1 and "no shared record with id no-such-id" in res.output

    exported = json.loads(run("export", "--format", "alpaca").stdout)
    assert [x["instruction"] for x in exported] == ["Approve me", "Edit me"]  # never the rejected one
    assert exported[1]["output"] == "The corrected answer."
    for fmt in ("openai", "sharegpt", "csv"):
        out = run("export", "--format", fmt).stdout
        assert "Reject me" not in out and "Leave me" not in out and "The corrected answer." in out
        assert fix.answer not in out
    everything = [x["instruction"] for x in json.loads(run("export", "--format", "alpaca", "--status", "all").stdout)]
    assert everything == ["Approve me", "Reject me", "Edit me", "Leave me"]
    pending = json.loads(run("export", "--format", "alpaca", "--status", "pending").stdout)
    assert [x["instruction"] for x in pending] == ["Leave me"]
    res = run("shared", "list", "--status", "rejected")
    assert res.stdout.startswith(bad.id) and len(res.stdout.splitlines()) == 1
    assert wait.id in run("shared", "list").stdout


def test_existing_database_is_upgraded_records_become_pending(tmp_path):
    """A database of kbchat before review (revision 0001) with shared records: opened by this version,
    its records are pending (never reviewed), with their duplicate hash, and nothing else changes."""
    from alembic import command
    from alembic.config import Config

    from kbchat.records.database import MIGRATIONS, Database
    from kbchat.sharing.store import qa_hash

    db_file = tmp_path / "kbchat.sqlite"
    url = f"sqlite:///{db_file}"
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    command.upgrade(cfg, "0001")
    old = make("legacy-key")
    con = sqlite3.connect(db_file)
    con.execute("INSERT INTO shared (id, answer_key, shared_at, persona_id, shared_by, record) VALUES (?,?,?,?,?,?)",
                (old.id, old.answer_key, old.shared_at, old.persona_id, old.user,
                 json.dumps({k: v for k, v in old.model_dump().items()
                             if k in ("id", "shared_at", "user", "persona_id", "persona_prompt", "question", "answer",
                                      "reasoning", "sources", "model", "settings", "answer_key")})))
    con.commit()
    con.close()
    store = ShareStore(Database(url))
    (r,) = store.list()
    assert (r.status, r.origin, r.reviewed_by, r.edited_answer) == ("pending", "share", None, None)
    assert (r.question, r.answer, r.sources) == (old.question, old.answer, old.sources)
    con = sqlite3.connect(db_file)
    assert con.execute("SELECT qa_hash FROM shared").fetchone()[0] == qa_hash(old.question, "", old.answer)
    assert int(con.execute("SELECT version_num FROM alembic_version").fetchone()[0]) >= 2  # 0002 and later ran
    con.close()
    store.db.close()


def test_language_and_token_estimates():
    assert language_of("胃食道逆流要注意什麼？避免睡前進食。") == "zh-Hant"
    assert language_of("胃食道逆流要注意什么？避免睡前进食。") == "zh-Hans"
    assert language_of("逆流性食道炎について教えてください。") == "ja"
    assert language_of("위식도 역류 질환이란 무엇입니까?") == "ko"
    assert language_of("What is reflux?") == "latin" and language_of("胃痛") == "zh"
    assert estimate_tokens("胃痛") == 2 and estimate_tokens("one two three") == 4


TOPICS_TW = ["胃食道逆流", "大腸鏡檢查", "幽門桿菌", "胃潰瘍", "腸躁症", "膽結石", "脂肪肝", "便祕"]
TOPICS_EN = ["reflux", "colonoscopy", "H. pylori", "gastric ulcer", "IBS", "gallstones", "fatty liver"]


def test_stats_on_a_sheet_of_1200_pairs(tmp_path, monkeypatch):
    data = _env(tmp_path, monkeypatch)
    rnd = random.Random(12)
    wb = Workbook()
    ws = wb.active
    ws.append(["問題", "答案"])
    for i in range(1200):
        if i % 3:
            topic = rnd.choice(TOPICS_TW)
            q = f"第 {i} 題：{topic}的病人應該注意什麼？"
            a = "".join(rnd.choice(["避免油膩食物。", "規律作息並定期回診。", "依醫師指示服藥，不可自行停藥。",
                                    "如有出血或劇烈疼痛應立即就醫。"]) for _ in range(rnd.randint(1, 40)))
        else:
            topic = rnd.choice(TOPICS_EN)
            q = f"Question {i}: what should a patient with {topic} watch out for?"
            a = " ".join(rnd.choice(["Avoid late meals.", "Take the medicine as prescribed.",
                                     "See a doctor if the pain gets worse.", "Keep a food diary."])
                         for _ in range(rnd.randint(1, 60)))
        ws.append([q, a])
    for i in (5, 17, 400):  # three exact duplicates
        ws.append([ws.cell(row=i + 2, column=1).value, ws.cell(row=i + 2, column=2).value])
    ws.append(["An empty answer", None])
    sheet = tmp_path / "gastro-faq-1200.xlsx"
    wb.save(sheet)
    res = run("shared", "import", str(sheet), "--persona", "doctor", "--source", "gastro-faq")
    assert res.output.splitlines() == ["gastro-faq-1200.xlsx: row 1205: empty answer",
                                       "gastro-faq-1200.xlsx: 1200 imported, 3 duplicates skipped, 1 row rejected"]
    with ShareStore(data / "kbchat.sqlite") as store:  # plus two chat shares waiting for review
        store.share(make("chat-1"))
        store.share(make("chat-2", question="H100 的 TDP？"))
    res = run("shared", "stats")
    assert res.exit_code == 0
    out = res.stdout
    assert out.startswith("1,202 record(s); 1,200 approved would be exported (kbchat export), 2 pending review")
    assert "  approved                   1,200   99.8%" in out and "  pending                        2    0.2%" in out
    assert "  import                     1,200   99.8%" in out and "  share                          2    0.2%" in out
    assert "  doctor                     1,200   99.8%" in out and "  engineer                       2    0.2%" in out
    assert "  zh-Hant                      802" in out and "  latin                        400" in out
    assert "Exact duplicates skipped by imports: 3" in out
    assert "Token length of approved pairs (question + input + answer), 1,200 pair(s):" in out
    bars = [line for line in out.splitlines() if "│" in line]
    assert len(bars) == 8 and sum(int(b.split()[-2].replace(",", "")) for b in bars) == 1200
    assert any("█" * 40 in b for b in bars)
    if SHOTS_ON:
        SHOTS.mkdir(parents=True, exist_ok=True)
        imported = "\n".join(run("shared", "import", str(sheet), "--data-dir", str(tmp_path / "again"))
                              .output.splitlines())
        (SHOTS / "stats.txt").write_text(
            f"$ kbchat shared import {sheet.name} --persona doctor --source gastro-faq\n{imported}\n\n"
            f"(plus two chat shares waiting for review)\n$ kbchat shared stats\n{out}", encoding="utf-8")


def test_import_skips_pairs_already_shared_also_rows_without_a_hash(tmp_path, monkeypatch):
    data = _env(tmp_path, monkeypatch)
    with ShareStore(data / "kbchat.sqlite") as store:
        old = store.share(make("legacy", question="Old question?", answer="Old answer."))
    con = sqlite3.connect(data / "kbchat.sqlite")  # as a legacy shared.sqlite imported after the upgrade leaves it
    con.execute("UPDATE shared SET qa_hash = NULL")
    con.commit()
    con.close()
    sheet = tmp_path / "qa.csv"
    sheet.write_text("question,answer\nOld question?,Old answer.\n  New question?  ,New answer.\n", encoding="utf-8")
    res = run("shared", "import", str(sheet))
    assert res.stdout == "qa.csv: 1 imported, 1 duplicate skipped\n"
    res = run("shared", "import", str(sheet))  # the same sheet again: all duplicates, nothing stored twice
    assert res.stdout == "qa.csv: 0 imported, 2 duplicates skipped\n"
    with ShareStore(data / "kbchat.sqlite") as store:
        assert len(store) == 2 and store.get(old.id).status == "pending" and store.duplicates_skipped() == 3
