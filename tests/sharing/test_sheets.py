"""QA sheets imported for real through the `kbchat` CLI: xlsx with Chinese headers, csv with a BOM, the
export formats (Alpaca json, OpenAI / ShareGPT jsonl); bad sheets give the exact lines a user sees;
export -> import -> export is identical; --as-knowledge passages are cited "file, row N" (LLM stub)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner
from openpyxl import Workbook, load_workbook

from kbchat.cli import main
from kbchat.sharing.store import ShareStore
from kbchat.sharing.sheets import MAX_ROW_CHARS, read_sheet
from tests.conftest import SHOTS_ON

SHOTS = Path("/work/shots/issue-12b")

TW = [  # Traditional Chinese clinic FAQ
    ("胃食道逆流要注意什麼？", "避免睡前三小時進食，並將床頭抬高約十五公分。"),
    ("大腸鏡檢查前要怎麼準備？", "檢查前一天吃低渣飲食，並依指示服用清腸藥。"),
    ("幽門桿菌怎麼治療？", "通常使用含抗生素的三合一或四合一療法，為期十四天。"),
]


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def xlsx(path: Path, rows: list[list]) -> Path:
    wb = Workbook()
    ws = wb.active
    for row in rows:
        ws.append(row)
    wb.save(path)
    return path


def records(data: Path, status: str | None = None):
    with ShareStore(data / "kbchat.sqlite") as store:
        return store.list(status=status)


def test_xlsx_chinese_headers_traditional_content(cli_env, tmp_path):
    sheet = xlsx(tmp_path / "門診問答.xlsx", [["問題", "答案"], *map(list, TW)])
    res = run("shared", "import", str(sheet), "--persona", "doctor", "--source", "clinic-faq-2026")
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == ["門診問答.xlsx: 3 imported, 0 duplicates skipped"]
    got = records(cli_env)
    assert [(r.question, r.answer) for r in got] == TW  # the sheet's order
    r = got[0]
    assert (r.status, r.origin, r.source, r.persona_id) == ("approved", "import", "clinic-faq-2026", "doctor")
    assert r.reviewed_by and r.reviewed_by.startswith("cli") and r.reviewed_by == r.user
    assert r.persona_prompt  # the doctor persona's system prompt: an OpenAI export gets its voice
    # the simplified header and the English one map the same way
    simp = xlsx(tmp_path / "faq-简体.xlsx", [["问题", "答案"], ["胃痛怎么办？", "先就医检查。"]])
    assert run("shared", "import", str(simp)).exit_code == 0
    res = run("export", "--format", "openai")
    lines = [json.loads(x) for x in res.stdout.splitlines()]
    assert lines[0]["messages"][0]["role"] == "system" and lines[0]["messages"][1]["content"] == TW[0][0]
    assert lines[-1]["messages"] == [{"role": "user", "content": "胃痛怎么办？"},
                                     {"role": "assistant", "content": "先就医检查。"}]


def test_csv_with_and_without_bom_alpaca_json_openai_jsonl_sharegpt(cli_env, tmp_path):
    bom = tmp_path / "with-bom.csv"
    bom.write_bytes("question,answer\nWhat is GERD?,\"Acid reflux, often at night.\"\n".encode("utf-8-sig"))
    plain = tmp_path / "plain.csv"
    plain.write_text("instruction,input,output\nSummarise the leaflet,Leaflet: eat slowly.,Eat slowly.\n",
                     encoding="utf-8")
    alpaca = tmp_path / "alpaca.json"
    alpaca.write_text(json.dumps([{"instruction": "Q1 alpaca", "input": "", "output": "A1 alpaca"},
                                  {"instruction": "Q2 alpaca", "input": "ctx", "output": "A2 alpaca"}]),
                      encoding="utf-8")
    openai = tmp_path / "openai.jsonl"
    openai.write_text("\n".join(json.dumps({"messages": m}, ensure_ascii=False) for m in (
        [{"role": "system", "content": "You are Dr. Wang."}, {"role": "user", "content": "Q openai"},
         {"role": "assistant", "content": "A openai"}],
        [{"role": "user", "content": "Passages:\n[1] a.pdf p.2: text\n\nQuestion: Q ctx"},
         {"role": "assistant", "content": "A ctx"}])) + "\n", encoding="utf-8")
    sharegpt = tmp_path / "sharegpt.jsonl"
    sharegpt.write_text(json.dumps({"conversations": [{"from": "human", "value": "Q sharegpt"},
                                                      {"from": "gpt", "value": "A sharegpt"}]}) + "\n")
    for f, n in ((bom, 1), (plain, 1), (alpaca, 2), (openai, 2), (sharegpt, 1)):
        res = run("shared", "import", str(f))
        assert res.exit_code == 0 and res.stdout.strip() == f"{f.name}: {n} imported, 0 duplicates skipped", res.output
    got = {r.question: r for r in records(cli_env)}
    assert got["What is GERD?"].answer == "Acid reflux, often at night."  # no BOM in the header or the text
    assert got["Summarise the leaflet"].context == "Leaflet: eat slowly."
    assert got["Q2 alpaca"].context == "ctx"
    assert got["Q openai"].persona_prompt == "You are Dr. Wang."
    assert got["Q ctx"].context == "[1] a.pdf p.2: text" and got["Q ctx"].answer == "A ctx"
    assert got["Q sharegpt"].answer == "A sharegpt"
    assert len(got) == 7
    # every export format has the imported pairs
    for fmt in ("alpaca", "openai", "sharegpt", "csv"):
        out = run("export", "--format", fmt).stdout
        assert all(q in out for q in got), fmt
    run("export", "--format", "xlsx", "-o", str(tmp_path / "all.xlsx"))
    cells = {c.value for row in load_workbook(tmp_path / "all.xlsx").active.iter_rows() for c in row}
    assert set(got) <= cells


BAD_LINES = {
    "missing-column.xlsx": ["Error: missing-column.xlsx: row 1: unknown column layout (found: question, notes); "
                            "the header row needs instruction + output, question + answer, 問題 + 答案 or "
                            "问题 + 答案"],
    "empty-cells.csv": ["empty-cells.csv: row 3: empty answer", "empty-cells.csv: row 4: empty question",
                        "empty-cells.csv: row 6: too long (20,007 characters, limit 20,000)",
                        "empty-cells.csv: 2 imported, 0 duplicates skipped, 3 rows rejected"],
    "duplicate-row.xlsx": ["duplicate-row.xlsx: 2 imported, 1 duplicate skipped"],
    "zero-bytes.xlsx": ["Error: zero-bytes.xlsx: empty file (0 bytes)"],
    "renamed-pdf.xlsx": ["Error: renamed-pdf.xlsx: not an Excel workbook (the contents do not match the .xlsx name)"],
    "renamed-png.csv": ["Error: renamed-png.csv: not a CSV file (binary content)"],
    "broken.json": ["Error: broken.json: not valid JSON (line 1, column 32: Expecting ':' delimiter)"],
    "old.xls": ["Error: old.xls: unsupported file type '.xls' (save it as .xlsx) (use .xlsx, .csv, .json, .jsonl)"],
}


def test_bad_sheets_give_one_line_each(cli_env, tmp_path):
    xlsx(tmp_path / "missing-column.xlsx", [["question", "notes"], ["Q?", "n"]])
    long = "x" * (MAX_ROW_CHARS - 2)
    (tmp_path / "empty-cells.csv").write_text(
        "question,answer\nGood one?,Yes.\nNo answer?,\n,Answer without a question\n\nToo long?," + long + "\n"
        "Another good one?,Also yes.\n", encoding="utf-8")
    xlsx(tmp_path / "duplicate-row.xlsx", [["question", "answer"], ["Same?", "Same."], ["Other?", "Other."],
                                           ["Same?", "Same."]])
    (tmp_path / "zero-bytes.xlsx").write_bytes(b"")
    (tmp_path / "renamed-pdf.xlsx").write_bytes(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n")
    (tmp_path / "renamed-png.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64))
    (tmp_path / "broken.json").write_text('[{"instruction": "Q", "output" "A"}]', encoding="utf-8")
    (tmp_path / "old.xls").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(100))
    seen = []
    for name, expected in BAD_LINES.items():
        res = run("shared", "import", str(tmp_path / name))
        lines = res.output.strip().splitlines()
        assert lines == expected, (name, lines)
        assert "Traceback" not in res.output
        assert res.exit_code == (0 if name == "duplicate-row.xlsx" else 1), name
        seen.append(f"$ kbchat shared import {name}   (exit {res.exit_code})\n" + "\n".join(lines))
    # good rows went in, each once; the rejected ones did not
    got = sorted(r.question for r in records(cli_env))
    assert got == ["Another good one?", "Good one?", "Other?", "Same?"]
    with ShareStore(cli_env / "kbchat.sqlite") as store:
        assert store.duplicates_skipped() == 1
    if SHOTS_ON:
        SHOTS.mkdir(parents=True, exist_ok=True)
        (SHOTS / "import-messages.txt").write_text("\n\n".join(seen) + "\n", encoding="utf-8")


def test_a_failed_import_stores_nothing(cli_env, tmp_path, monkeypatch):
    sheet = xlsx(tmp_path / "qa.xlsx", [["question", "answer"], ["One?", "1"], ["Two?", "2"]])
    from kbchat.records.database import shared

    real = shared.insert
    calls = []

    def failing_insert(*a, **kw):  # the database refuses the second row mid-import
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(*a, **kw)

    monkeypatch.setattr(shared, "insert", failing_insert)
    res = CliRunner().invoke(main, ["shared", "import", str(sheet)])
    assert res.exit_code == 1 and res.output.strip() == "Error: qa.xlsx: not imported (disk full); nothing was stored"
    monkeypatch.setattr(shared, "insert", real)
    assert records(cli_env) == []  # nothing half-imported
    assert run("shared", "import", str(sheet)).exit_code == 0 and len(records(cli_env)) == 2


def _export_all(data: Path, tmp: Path, tag: str) -> dict[str, object]:
    out: dict[str, object] = {}
    for fmt in ("alpaca", "openai", "sharegpt", "csv"):
        for ctx in ((), ("--with-context",)):
            out[f"{fmt}{ctx}"] = run("export", "--format", fmt, *ctx, "--data-dir", str(data)).stdout_bytes
    path = tmp / f"{tag}.xlsx"
    run("export", "--format", "xlsx", "-o", str(path), "--data-dir", str(data))
    out["xlsx"] = [[c.value for c in row] for row in load_workbook(path).active.iter_rows()]
    return out


def test_round_trip_export_import_export_is_identical(cli_env, tmp_path):
    from tests.sharing.test_share import make

    with ShareStore(cli_env / "kbchat.sqlite") as store:
        a = store.share(make("k1", shared_at="2026-01-02T03:04:05Z"))
        b = store.share(make("k2", question="H100 的 TDP？", answer="700 W [1]。", persona_id="general",
                             persona_prompt="", shared_at="2026-01-03T00:00:00Z"))
        store.review(a.id, "approved", "boss")
        store.edit(b.id, "H100 SXM 的 TDP 為 700 W [1]。", "boss")
        store.review(b.id, "approved", "boss")
    first = _export_all(cli_env, tmp_path, "first")
    for fmt, ext in (("alpaca", "json"), ("openai", "jsonl"), ("sharegpt", "jsonl"), ("csv", "csv"),
                     ("xlsx", "xlsx")):
        for ctx in ((), ("--with-context",)) if fmt != "xlsx" else ((),):
            sheet = tmp_path / f"{fmt}{len(ctx)}.{ext}"
            run("export", "--format", fmt, *ctx, "-o", str(sheet))
            other = tmp_path / f"again-{fmt}{len(ctx)}"
            res = run("shared", "import", str(sheet), "--data-dir", str(other))
            assert res.exit_code == 0 and "2 imported" in res.stdout, res.output
            again = _export_all(other, tmp_path, f"again-{fmt}{len(ctx)}")
            key = f"{fmt}{ctx}" if fmt != "xlsx" else "xlsx"
            assert again[key] == first[key], (fmt, ctx)
            if fmt in ("csv", "xlsx"):  # the tables carry persona, sources and time: every table export agrees
                assert again["csv()"] == first["csv()"] and again["xlsx"] == first["xlsx"]
            if fmt == "openai":  # the system prompt came back too
                assert again["openai()"] == first["openai()"]
    assert "H100 SXM 的 TDP 為 700 W" in first["alpaca()"].decode()  # the edit, not the original


def test_as_knowledge_answers_cite_file_and_row(cli_env, tmp_path):
    sheet = xlsx(tmp_path / "clinic-faq.xlsx", [
        ["問題", "答案"], *map(list, TW),
        ["What is the zebra clinic's fax number?", "The zebra clinic fax number is 02-5550-1234."]])
    res = run("shared", "import", str(sheet), "--as-knowledge", "clinc")  # a typo: refused before anything is stored
    assert res.exit_code != 0 and "--as-knowledge: unknown knowledge base 'clinc'" in res.output, res.output
    assert records(cli_env, "all") == []
    res = run("shared", "import", str(sheet), "--as-knowledge", "clinic")
    assert res.exit_code == 0, res.output
    assert "clinic-faq.xlsx: 4 pair(s) indexed in knowledge base clinic (cited as clinic-faq.xlsx, row N)" in res.stdout
    res = run("ask", "What is the zebra clinic's fax number?", "--collection", "kb-clinic", "--json")
    out = json.loads(res.stdout)
    assert out["answer"].startswith("According to [1]") and out["citations"][0]["source"] == "clinic-faq.xlsx"
    assert out["citations"][0]["page"] == 5  # the sheet's row 5 (header = row 1)
    res = run("ask", "What is the zebra clinic's fax number?", "--collection", "kb-clinic")
    assert "*[1] clinic-faq.xlsx, row 5" in res.stdout, res.stdout
    # the chat renders the same citation
    from kbchat.answer import cite
    from kbchat.search.retrieve import search
    from kbchat.settings import Settings
    from kbchat.search.store import EmbeddedStore
    from kbchat.search.loaders import load_embedder
    from kbchat.ui.render import render

    settings = Settings(data_dir=cli_env)
    store = EmbeddedStore(cli_env, load_embedder(settings))
    hits = search([store.collection("kb-clinic")], store.embedder, "幽門桿菌怎麼治療？", k=3)
    assert hits[0].source == "clinic-faq.xlsx" and hits[0].page == 4
    text = "通常使用三合一或四合一療法 [1]。"
    body, _ = render(text, hits, cite(text, hits), "en")
    assert "Source 1 — clinic-faq.xlsx, row 4:" in body
    body, _ = render(text, hits, cite(text, hits), "zh-TW")
    assert "clinic-faq.xlsx, 第 4 列" in body
    store.close()
    # the pairs are records too (approved, origin import)
    assert len(records(cli_env, "approved")) == 4


def test_reader_reports_rows_as_the_user_numbers_them(tmp_path):
    p = tmp_path / "qa.jsonl"
    p.write_text('{"instruction": "Q1", "output": "A1"}\n\n{"foo": 1}\nnot json\n'
                 '{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, '
                 '{"role": "user", "content": "c"}]}\n', encoding="utf-8")
    sheet = read_sheet(p)
    assert [r.row for r in sheet.rows] == [1]
    assert sheet.problems == [
        "qa.jsonl: row 3: unknown layout (keys: foo); each item needs instruction + output, question + answer, "
        "問題 + 答案 or 问题 + 答案",
        "qa.jsonl: row 4: not valid JSON (column 1: Expecting value)",
        "qa.jsonl: row 5: several turns (only one question and one answer per row can be imported)",
    ]
