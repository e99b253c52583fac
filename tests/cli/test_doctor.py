"""`kbchat doctor` for real: the CLI in-process, the real embedder (auto), the LLM stub over HTTP."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from kbchat.cli import main
from kbchat.doctor import check_llm, format_report
from kbchat.search.precision import cpu_info
from kbchat.settings import Settings


@pytest.fixture
def env(cli_env, tmp_path, monkeypatch):
    """The CLI's environment (cli_env) with the embedder precision users get; the test's temp dir."""
    monkeypatch.setenv("KBCHAT_EMBEDDING_PRECISION", "auto")  # what users get
    return tmp_path


def test_doctor_reports_cpu_variant_endpoint_data_dir_and_versions(env, pdf_factory):
    runner = CliRunner()
    pdf = pdf_factory("zebra.pdf", ["The zebra protocol uses port 7777."])
    assert runner.invoke(main, ["ingest", str(pdf)]).exit_code == 0
    r = runner.invoke(main, ["doctor"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    lines = {line.split()[1]: line for line in r.output.splitlines()
             if line[:4].strip() in ("OK", "WARN", "FAIL")}
    assert cpu_info().model in lines["CPU"] and "logical CPUs" in lines["CPU"]
    runs = ("bundled:all-MiniLM-L6-v2: torch ", "bundled:all-MiniLM-L6-v2: ONNX Runtime fp32 ")
    assert any(x in lines["embedder"] for x in runs) and "(auto, " in lines["embedder"]
    assert "probe passages/s" in lines["embedder"] and "questions via " in lines["embedder"]
    assert lines["LLM"].startswith("OK") and "serves 'stub'" in lines["LLM"]
    assert "knowledge (1 passages)" in lines["data"] and str(env / "data") in lines["data"]
    assert "torch " in lines["versions"] and "kbchat 0.1.0" in lines["versions"]
    assert r.output.rstrip().endswith("all checks passed")
    if not cpu_info().has_bf16:  # this machine: the measurement refuses bf16 and says why
        assert "bf16: refused" in lines["embedder"]
        assert "torch fp32" in lines["embedder"] or "ONNX Runtime fp32" in lines["embedder"]

    j = runner.invoke(main, ["doctor", "--json"], catch_exceptions=False)
    report = json.loads(j.output)
    assert report["ok"] and report["embedder"]["variant"] in ("fp32", "bf16", "onnx")
    assert report["embedder"]["variants"]["fp32"]["passages_per_s"] > 0
    assert report["cpu"]["count"] >= 1 and report["data_dir"]["collections"] == {"knowledge": 1}


def test_doctor_fails_on_an_unreachable_llm_and_a_missing_reranker(env, monkeypatch, tmp_path):
    monkeypatch.setenv("KBCHAT_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("KBCHAT_RERANKER_MODEL", str(tmp_path / "no-such-reranker"))
    r = CliRunner().invoke(main, ["doctor"], catch_exceptions=False)
    assert r.exit_code == 1
    out = r.output.splitlines()
    llm = next(x for x in out if "LLM endpoint" in x)
    assert llm.startswith("FAIL") and "unreachable" in llm and "KBCHAT_LLM_BASE_URL" in llm
    rr = next(x for x in out if " reranker " in x)
    assert rr.startswith("FAIL") and "cannot load reranker model" in rr
    assert next(x for x in out if " embedder " in x).startswith("OK")  # the rest still checked
    assert out[-1] == "some checks FAILED (see above)"


def test_llm_check_names_a_model_the_endpoint_does_not_serve(stub):
    s = Settings(llm_base_url=stub.base_url, llm_model="llama-9000")
    c = check_llm(s)
    assert c.status == "warn" and "'llama-9000' is not among its models (stub)" in c.detail


def test_data_dir_check_new_and_damaged(tmp_path):
    from kbchat.doctor import check_data_dir

    c, info = check_data_dir(Settings(data_dir=tmp_path / "new"))
    assert c.status == "ok" and "(created on first ingest): no collections yet" in c.detail
    assert info["exists"] is False and info["writable"] is True
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "catalog.sqlite").write_bytes(b"this is not a database" * 100)
    c, _ = check_data_dir(Settings(data_dir=bad))
    assert c.status == "fail" and "catalog unreadable" in c.detail
    text = format_report({"ok": False, "checks": [c.__dict__]})
    assert text.splitlines()[0].startswith("FAIL  data dir  ")
    assert text.endswith("some checks FAILED (see above)")
