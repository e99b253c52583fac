"""The `kbchat` CLI for real: click's runner in-process, plus the installed console script once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from kbchat.cli import main
from tests.conftest import EVAL_DEV

ZEBRA = ["Zebra networks overview. The zebra protocol is used by the zoo.",
         "The zebra protocol uses port 7777 for all traffic. Heartbeats are sent every 30 seconds."]


pytestmark = pytest.mark.stub(per_test=True)  # tests switch its mode and stop it


@pytest.fixture
def env(cli_env, stub):
    """The CLI's environment (cli_env); the stub LLM it talks to."""
    return stub


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_ingest_search_and_exit_codes(env, pdf_factory, tmp_path):
    good = pdf_factory("zebra.pdf", ZEBRA)
    bad = tmp_path / "pdfs" / "broken.pdf"
    bad.write_bytes(b"hello, not a pdf")
    r = run("ingest", str(good.parent))
    assert r.exit_code == 1, r.output
    assert "zebra.pdf: 2 pages" in r.output
    assert "FAILED broken.pdf: not a PDF" in r.output
    assert "1 file(s) failed" in r.output
    again = run("ingest", str(good))
    assert again.exit_code == 0 and "unchanged" in again.output

    r = run("search", "which port does the zebra protocol use", "--json")
    assert r.exit_code == 0
    hits = json.loads(r.output)
    assert hits[0]["source"] == "zebra.pdf" and hits[0]["page"] == 2 and "7777" in hits[0]["text"]

    lines = '{"id": "a", "question": "zebra port"}\n{"id": "b", "question": "heartbeat interval"}\n'
    r = run("search", "--jsonl", "--k", "1", input=lines)
    out = [json.loads(x) for x in r.output.splitlines()]
    assert [o["id"] for o in out] == ["a", "b"]
    keys = {"source", "page", "text", "score", "ocr"}
    assert all(len(o["hits"]) == 1 and set(o["hits"][0]) == keys for o in out)


def test_ingest_into_named_collection_is_separate(env, pdf_factory):
    pdf = pdf_factory("zebra.pdf", ZEBRA)
    assert run("ingest", str(pdf), "--collection", "team-a").exit_code == 0
    assert json.loads(run("search", "zebra port", "--json").output) == []
    hits = json.loads(run("search", "zebra port", "--json", "--collection", "team-a").output)
    assert hits and hits[0]["source"] == "zebra.pdf"


def test_ask_streams_answer_and_sources(env, pdf_factory):
    run("ingest", str(pdf_factory("zebra.pdf", ZEBRA)))
    r = run("ask", "Which port does the zebra protocol use?")
    assert r.exit_code == 0, r.output
    assert "According to [1]" in r.output
    assert "Sources:" in r.output and "*[1] zebra.pdf, page 2" in r.output
    j = json.loads(run("ask", "Which port?", "--json").output)
    assert j["citations"][0]["source"] == "zebra.pdf" and j["citations"][0]["page"] == 2


def test_ask_reasoning_flag_uses_style(env, pdf_factory, monkeypatch):
    run("ingest", str(pdf_factory("zebra.pdf", ZEBRA)))
    monkeypatch.setenv("KBCHAT_REASONING_STYLE", "qwen3")
    env.mode = "think_inline"
    r = run("ask", "Which port?", "--reasoning", "off", "--json")
    assert r.exit_code == 0
    j = json.loads(r.output)
    assert "<think>" not in j["answer"] and j["reasoning"]
    assert env.last_messages[-1]["content"].rstrip().endswith("/no_think")


@pytest.mark.parametrize("mode,words", [("401", "API key"), ("404", "not served"), ("cut", "cut off")])
def test_ask_llm_failure_exit_1_one_line_after_passages(env, pdf_factory, mode, words):
    run("ingest", str(pdf_factory("zebra.pdf", ZEBRA)))
    env.mode = mode
    r = run("ask", "Which port does the zebra protocol use?")
    assert r.exit_code == 1
    assert "Passages found (search-only answer):" in r.output
    assert "zebra.pdf, page 2" in r.output
    err_lines = [ln for ln in r.output.splitlines() if ln.startswith("Error:")]
    assert len(err_lines) == 1 and words in err_lines[0]
    assert "Traceback" not in r.output


def test_ask_unreachable_llm(env, pdf_factory):
    run("ingest", str(pdf_factory("zebra.pdf", ZEBRA)))
    env.stop()
    r = run("ask", "Which port?")
    assert r.exit_code == 1 and "could not be reached" in r.output and "Traceback" not in r.output


def test_eval_reports_per_language(env, pdf_factory, tmp_path):
    run("ingest", str(pdf_factory("zebra.pdf", ZEBRA)))
    qs = tmp_path / "q.jsonl"
    qs.write_text(
        json.dumps({"id": "1", "lang": "en", "question": "zebra port", "doc": "zebra.pdf", "page": 2,
                    "evidence": ["port 7777"], "cross": False, "answerable": True}) + "\n"
        + json.dumps({"id": "2", "lang": "en", "question": "giraffe colour", "doc": "giraffe.pdf", "page": 1,
                      "evidence": ["yellow"], "cross": False, "answerable": True}) + "\n")
    r = run("eval", str(qs), "--k", "5", "--json")
    rep = json.loads(r.output)
    assert rep["groups"]["all"]["n"] == 2
    assert rep["groups"]["all"]["hit@5"] == pytest.approx(0.5)
    assert rep["groups"]["lang=en"]["hit@1"] == pytest.approx(0.5)
    table = run("eval", str(qs)).output
    assert "lang=en" in table and "hit@5" in table


def test_console_script_end_to_end(tmp_path, pdf_factory):
    """The installed `kbchat` entry point, as a user runs it (new process, real model load)."""
    pdf = pdf_factory("zebra.pdf", ZEBRA)
    exe = os.path.join(os.path.dirname(sys.executable), "kbchat")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KBCHAT_")}
    env["KBCHAT_DATA_DIR"] = str(tmp_path / "d")
    r = subprocess.run([exe, "ingest", str(pdf)], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([exe, "search", "zebra port"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0 and "[1] zebra.pdf, page 2" in r.stdout
    missing = subprocess.run([exe, "ingest", str(tmp_path / "nope.pdf")], capture_output=True, text=True,
                             env=env, timeout=300)
    assert missing.returncode == 1 and "file not found" in missing.stderr
    assert "Traceback" not in missing.stderr


@pytest.mark.skipif(not EVAL_DEV.exists(), reason="needs ../shared/eval")
def test_eval_file_format_matches_shared_scorer(tmp_path):
    """The shared scorer's question file loads with our loader."""
    from kbchat.evaluate import load_questions

    qs = load_questions(EVAL_DEV)
    assert qs and all({"id", "question", "doc", "evidence"} <= set(q) for q in qs)


def test_eval_shared_scores_the_reviewed_answers_by_their_citations(env, cli_env, pdf_factory, monkeypatch,
                                                                    tmp_path):
    """`kbchat eval --shared`: approved records whose answers cite passages are the questions, the cited file
    and page the gold; pending ones and ones citing nothing are not scored; per language."""
    from kbchat.records.database import default_url
    from kbchat.sharing.store import SharedQA, ShareStore

    monkeypatch.setenv("KBCHAT_KNOWLEDGE_DIR", str(tmp_path / "knowledge"))
    assert run("ingest", str(pdf_factory("zebra.pdf", ZEBRA))).exit_code == 0
    assert "nothing to score" in CliRunner().invoke(main, ["eval", "--shared"]).output

    def rec(key, question, page, status="approved", file="zebra.pdf"):
        return SharedQA(question=question, answer=f"See [1] ({key}).", persona_id="general", answer_key=key,
                        sources=[{"n": 1, "file": file, "page": page, "text": "…", "collection": "knowledge"}]
                        if page else [], status=status)

    store = ShareStore(default_url(cli_env))
    for r in (rec("a", "Which port does the zebra protocol use?", 2),      # found at its cited page
              rec("b", "Which port does the zebra protocol use for heartbeats?", 2, file="other.pdf"),  # never
              rec("c", "斑馬協定使用哪個連接埠？", 2),                          # another language
              rec("d", "What is the zebra protocol?", 1, status="pending"),  # not reviewed: not scored
              rec("e", "What does the zoo use?", None)):                    # cites nothing: not scored
        store.share(r) if r.status == "pending" else store.review(store.share(r).id, "approved", "boss")
    store.close()
    r = run("eval", "--shared", "--json")
    assert r.exit_code == 0, r.output
    groups = json.loads(r.output)["groups"]
    assert groups["all"]["n"] == 3
    assert groups["all"]["hit@5"] == pytest.approx(2 / 3)   # two pages in all: any cited page of zebra.pdf is found
    latin = groups["lang=latin"]
    assert latin["n"] == 2 and latin["hit@5"] == 0.5 and latin["hit@1"] == 0.5
    assert groups["lang=zh-Hant"]["n"] == 1
    assert run("eval", "--shared", "--persona", "doctor").exit_code == 1  # no record of that persona
    assert CliRunner().invoke(main, ["eval"]).exit_code == 2              # a file or --shared
