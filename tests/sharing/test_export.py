"""Exporters read back by their consumers (json, csv, openpyxl), redaction, and the export/shared CLI."""

from __future__ import annotations

import csv
import io
import json

import pytest
from click.testing import CliRunner
from openpyxl import load_workbook

from kbchat.sharing.export import COLUMNS, export_records, format_context, redact
from kbchat.sharing.store import SharedQA, ShareStore

Q = "A100 的記憶體頻寬是多少？"
A = "A100 80GB 的記憶體頻寬為 2,039 GB/s [1]。"
R = "規格表第 3 頁列出頻寬。"
PROMPT = "你是 NVIDIA GPU 工程師，只根據文件回答。"
SOURCES = [
    {"n": 1, "file": "nvidia-a100-datasheet.pdf", "page": 3,
     "text": "Memory bandwidth 2,039 GB/s 記憶體頻寬"},
    {"n": 2, "file": "h100.pdf", "page": 1, "text": "H100 SXM 3.35 TB/s"},
]


def rec(key="msg-1", **kw) -> SharedQA:
    base = dict(question=Q, answer=A, reasoning=R, persona_id="engineer", persona_prompt=PROMPT, user="alice",
                sources=SOURCES, model="stub", settings={"k": 5}, answer_key=key,
                shared_at="2024-05-02T03:04:05Z")
    base.update(kw)
    return SharedQA(**base)


CONTEXT = ("[1] nvidia-a100-datasheet.pdf p.3: Memory bandwidth 2,039 GB/s 記憶體頻寬\n"
           "[2] h100.pdf p.1: H100 SXM 3.35 TB/s")
THINK = f"<think>\n{R}\n</think>\n\n{A}"


# --------------------------------------------------------------------------------------------
# formats
# --------------------------------------------------------------------------------------------


def test_context_format():
    assert format_context(rec()) == CONTEXT
    assert format_context(rec(sources=[])) == ""


def test_alpaca_plain_and_with_context_and_reasoning():
    data = export_records([rec()], "alpaca")
    assert "記憶體頻寬".encode() in data  # ensure_ascii=False
    assert json.loads(data) == [{"instruction": Q, "input": "", "output": A}]
    full = json.loads(export_records([rec()], "alpaca", with_context=True, with_reasoning=True))
    assert full == [{"instruction": Q, "input": CONTEXT, "output": THINK}]
    # no reasoning: no empty think block
    bare = json.loads(export_records([rec(reasoning="")], "alpaca", with_reasoning=True))
    assert bare[0]["output"] == A
    assert json.loads(export_records([], "alpaca")) == []


def test_openai_jsonl():
    lines = export_records([rec(), rec("msg-2", persona_prompt="")], "openai").decode("utf-8").splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first == {"messages": [{"role": "system", "content": PROMPT}, {"role": "user", "content": Q},
                                  {"role": "assistant", "content": A}]}
    assert [m["role"] for m in second["messages"]] == ["user", "assistant"]
    assert "記憶體" in lines[0]
    ctx = json.loads(export_records([rec()], "openai", with_context=True, with_reasoning=True))
    user = ctx["messages"][1]["content"]
    assert CONTEXT in user and user.endswith(Q)
    assert ctx["messages"][2]["content"] == THINK


def test_sharegpt_jsonl():
    line = json.loads(export_records([rec()], "sharegpt"))
    assert line == {"conversations": [{"from": "system", "value": PROMPT}, {"from": "human", "value": Q},
                                      {"from": "gpt", "value": A}]}
    line = json.loads(export_records([rec(persona_prompt="")], "sharegpt", with_context=True))
    assert [c["from"] for c in line["conversations"]] == ["human", "gpt"]
    assert CONTEXT in line["conversations"][0]["value"]


def test_csv_has_bom_and_reads_back():
    tricky = "第二行\n含逗號, 與 \"引號\""
    data = export_records([rec(), rec("msg-2", answer=tricky)], "csv", with_context=True)
    assert data.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    assert tuple(rows[0]) == COLUMNS
    assert rows[1] == [Q, CONTEXT, A, "engineer", "nvidia-a100-datasheet.pdf p.3; h100.pdf p.1",
                       "2024-05-02T03:04:05.000000+00:00"]
    assert rows[2][2] == tricky
    assert len(rows) == 3


def test_xlsx_reads_back_with_bold_header_and_wrap():
    data = export_records([rec()], "xlsx", with_reasoning=True)
    ws = load_workbook(io.BytesIO(data)).active
    rows = [[c.value for c in row] for row in ws.iter_rows()]
    assert tuple(rows[0]) == COLUMNS
    assert rows[1][0] == Q and rows[1][2] == THINK and rows[1][3] == "engineer"
    assert rows[1][1] in (None, "")
    assert ws["A1"].font.bold
    assert ws["C2"].alignment.wrap_text


def test_unknown_format():
    with pytest.raises(ValueError):
        export_records([rec()], "parquet")


# --------------------------------------------------------------------------------------------
# redaction
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,token", [
    ("alice.chen@example.com.tw", "[EMAIL]"),
    ("寄信到 bob+kb@corp.example.org 謝謝", "[EMAIL]"),
    ("+886 2 1234 5678", "[PHONE]"),
    ("+1 (415) 555-0100", "[PHONE]"),
    ("+886-912-345-678", "[PHONE]"),
    ("0912-345-678", "[PHONE]"),
    ("0912345678", "[PHONE]"),
    ("0912 345 678", "[PHONE]"),
    ("(02) 2345-6789", "[PHONE]"),
    ("02-2345-6789", "[PHONE]"),
    ("13812345678", "[PHONE]"),
    ("+86 138 1234 5678", "[PHONE]"),
    ("電話0912345678。", "[PHONE]"),
    ("A123456789", "[ID]"),
    ("AB12345678", "[ID]"),
    ("身分證字號A123456789，", "[ID]"),
    ("11010519491231002X", "[ID]"),
    ("110105194912310021", "[ID]"),
])
def test_redact_masks(text, token):
    out = redact(text)
    assert token in out
    assert not any(ch.isdigit() for ch in out), out


@pytest.mark.parametrize("text", [
    "2,039 GB/s", "80GB", "A100", "H100", "1.5 TB/s", "2024-05-01", "312 TFLOPS", "version 2.12.0",
    "Figure 3", "$1,234,567.89", "400W", "A100 80GB 的記憶體頻寬為 2,039 GB/s", "2024-05-01T10:00:00",
    "1,234,567,890", "ISBN 978-3-16-148410-0", "2023-2024", "C++ 17", "10.0.0.1", "port 8080",
    "H100 SXM5 700W",
])
def test_redact_keeps_ordinary_numbers(text):
    assert redact(text) == text


def test_redact_applies_to_every_field():
    r = rec(question="我的手機 0912-345-678 可以嗎？", answer="請寄到 a@b.com。",
            reasoning="用戶身分證 A123456789", persona_prompt="聯絡 +1 (415) 555-0100",
            sources=[{"n": 1, "file": "x.pdf", "page": 2, "text": "電話 (02) 2345-6789，2,039 GB/s"}])
    for fmt in ("alpaca", "openai", "sharegpt", "csv"):
        data = export_records([r], fmt, with_context=True, with_reasoning=True, redact=True)
        text = data.decode("utf-8-sig")
        for secret in ("0912", "a@b.com", "A123456789", "555-0100", "2345-6789"):
            assert secret not in text, (fmt, secret)
        assert "2,039 GB/s" in text
    ws = load_workbook(io.BytesIO(export_records([r], "xlsx", with_context=True, redact=True))).active
    assert "[PHONE]" in ws["A2"].value and "[PHONE]" in ws["B2"].value and "[EMAIL]" in ws["C2"].value


# --------------------------------------------------------------------------------------------
# CLI through a tiny group
# --------------------------------------------------------------------------------------------


@pytest.fixture
def cli(settings, monkeypatch):
    """The `export` and `shared` commands, reading the test's settings from the environment as the CLI does."""
    from kbchat.cli.shared import commands

    for name, value in (("KBCHAT_DATA_DIR", settings.data_dir), ("KBCHAT_KNOWLEDGE_DIR", settings.knowledge_dir),
                        ("KBCHAT_PERSONAS_DIR", settings.personas_dir)):
        monkeypatch.setenv(name, str(value))
    return commands


@pytest.fixture
def shared(settings):
    store = ShareStore(settings.data_dir / "kbchat.sqlite")
    a = store.share(rec("k1", persona_id="engineer", shared_at="2024-04-01T00:00:00Z"))
    b = store.share(rec("k2", persona_id="sales", question="H100 呢？ 請打 0912345678",
                        shared_at="2024-06-01T00:00:00Z"))
    a, b = (store.review(r.id, "approved", "boss") for r in (a, b))  # export writes approved records only
    store.close()
    return a, b


def test_cli_export_stdout_each_json_format(cli, shared):
    runner = CliRunner()
    res = runner.invoke(cli, ["export", "--format", "alpaca"])
    assert res.exit_code == 0, res.output
    assert [x["instruction"] for x in json.loads(res.stdout_bytes)] == [Q, "H100 呢？ 請打 0912345678"]
    res = runner.invoke(cli, ["export", "--format", "openai", "--persona", "sales", "--redact"])
    assert res.exit_code == 0
    lines = res.stdout_bytes.decode().splitlines()
    assert len(lines) == 1 and "[PHONE]" in lines[0] and "0912345678" not in lines[0]
    res = runner.invoke(cli, ["export", "--format", "sharegpt", "--since", "2024-05-01", "--with-context"])
    assert res.exit_code == 0
    (line,) = res.stdout_bytes.decode().splitlines()
    assert "H100 呢" in line and "[1] nvidia-a100-datasheet.pdf p.3" in line


def test_cli_export_files(cli, shared, tmp_path):
    runner = CliRunner()
    out = tmp_path / "out" / "qa.xlsx"
    res = runner.invoke(cli, ["export", "--format", "xlsx", "-o", str(out), "--with-reasoning"])
    assert res.exit_code == 0, res.output
    ws = load_workbook(out).active
    assert ws.max_row == 3 and ws["A2"].value == Q and ws["C2"].value == THINK
    csv_out = tmp_path / "qa.csv"
    res = runner.invoke(cli, ["export", "--format", "csv", "-o", str(csv_out)])
    assert res.exit_code == 0
    with open(csv_out, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["persona"] for r in rows] == ["engineer", "sales"]
    assert rows[0]["instruction"] == Q


def test_cli_export_errors(cli, shared):
    runner = CliRunner()
    res = runner.invoke(cli, ["export", "--format", "xlsx"])
    assert res.exit_code == 1 and "-o" in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    res = runner.invoke(cli, ["export", "--format", "alpaca", "--since", "last week"])
    assert res.exit_code == 1 and "--since" in res.output
    res = runner.invoke(cli, ["export", "--format", "yaml"])
    assert res.exit_code == 2


def test_cli_data_dir_override_and_empty(cli, tmp_path):
    runner = CliRunner()
    empty = tmp_path / "nowhere"
    res = runner.invoke(cli, ["export", "--format", "alpaca", "--data-dir", str(empty)])
    assert res.exit_code == 0 and json.loads(res.stdout_bytes) == []
    assert not empty.exists()  # reading never creates a store
    other = tmp_path / "other"
    s = ShareStore(other / "kbchat.sqlite")
    s.share(rec("zz", question="其他資料夾"))
    s.close()
    res = runner.invoke(cli, ["shared", "list", "--data-dir", str(other)])
    assert res.exit_code == 0 and "其他資料夾" in res.stdout


def test_cli_shared_list_and_delete(cli, shared):
    a, b = shared
    runner = CliRunner()
    res = runner.invoke(cli, ["shared", "list"])
    assert res.exit_code == 0
    lines = res.stdout.splitlines()
    assert lines[0].startswith(a.id) and lines[1].startswith(b.id) and Q in lines[0]
    res = runner.invoke(cli, ["shared", "list", "--persona", "sales", "--json"])
    assert [json.loads(line)["id"] for line in res.stdout.splitlines()] == [b.id]
    res = runner.invoke(cli, ["shared", "delete", a.id])
    assert res.exit_code == 0 and a.id in res.stdout
    res = runner.invoke(cli, ["shared", "delete", a.id])
    assert res.exit_code == 1 and "no shared record" in res.output
    res = runner.invoke(cli, ["shared", "list"])
    assert a.id not in res.stdout and b.id in res.stdout
