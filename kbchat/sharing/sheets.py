"""QA sheets read into shared records: ``.xlsx``, ``.csv`` (UTF-8, with or without BOM), ``.json`` and
``.jsonl`` in the formats ``kbchat export`` writes or with a header row naming the columns; every row
validated (one line per problem: file, row, reason). Also a sheet's pairs as passages of a knowledge base,
one per row, cited as "file.xlsx, row N". No Chainlit, no database: share.ShareStore stores the records.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from kbchat.documents.passages import ROW_LABEL, row_of
from kbchat.errors import KbchatError
from kbchat.sharing.store import SharedQA, utc_iso

SUFFIXES = (".xlsx", ".csv", ".json", ".jsonl")
MAX_ROW_CHARS = 20_000  # question + input + answer of one row
MAX_FILE_BYTES = 50 * 1024 * 1024

# Header cell (case and outer blanks ignored) -> field. A sheet needs one question and one answer column.
QUESTION_HEADERS = ("instruction", "question", "問題", "问题")
ANSWER_HEADERS = ("output", "answer", "答案")
HEADERS: dict[str, str] = {
    **{h: "question" for h in QUESTION_HEADERS},
    **{h: "answer" for h in ANSWER_HEADERS},
    "input": "context",
    "persona": "persona",
    "sources": "sources",
    "shared_at": "shared_at",
}
LAYOUTS = "instruction + output, question + answer, 問題 + 答案 or 问题 + 答案"
_MAGIC = (b"%PDF", b"PK\x03\x04", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"\xd0\xcf\x11\xe0", b"\x7fELF")


class SheetError(KbchatError):
    """A sheet that cannot be read at all: one line naming the file and the reason."""


@dataclass
class Row:
    """One question/answer row of a sheet, as read (1-based ``row`` as the user sees it)."""

    row: int
    question: str
    answer: str
    context: str = ""
    persona_id: str = ""
    persona_prompt: str = ""
    sources: list[dict[str, Any]] = field(default_factory=list)
    shared_at: str | None = None


@dataclass
class Sheet:
    """A sheet's good rows, one line per rejected row, and the file's identity."""

    name: str
    doc_hash: str
    rows: list[Row]
    problems: list[str]


def _line(name: str, reason: str, row: int | None = None) -> str:
    return f"{name}: row {row}: {reason}" if row is not None else f"{name}: {reason}"


def read_sheet(path: Path, name: str | None = None) -> Sheet:
    """Read and validate a QA sheet. Raises SheetError when the file cannot be used at all (empty,
    unreadable, another format under this name, no known header); rows with problems are left out and
    described in ``Sheet.problems``."""
    path = Path(path)
    name = name or path.name
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        hint = " (save it as .xlsx)" if suffix == ".xls" else ""
        raise SheetError(_line(name, f"unsupported file type '{suffix or path.name}'{hint} "
                                     f"(use {', '.join(SUFFIXES)})"))
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise SheetError(_line(name, f"too large ({size // 1048576} MB, limit {MAX_FILE_BYTES // 1048576} MB)"))
        data = path.read_bytes()
    except OSError as err:
        raise SheetError(_line(name, f"cannot read file ({err.strerror or err})")) from None
    if not data:
        raise SheetError(_line(name, "empty file (0 bytes)"))
    doc_hash = hashlib.sha256(data).hexdigest()
    problems: list[str] = []
    if suffix == ".xlsx":
        raw = _xlsx_rows(data, name)
        rows = _table(raw, name, problems)
    elif suffix == ".csv":
        rows = _table(_csv_rows(data, name), name, problems)
    else:
        rows = _json_rows(_text(data, name, "JSON"), name, suffix, problems)
    if not rows and not problems:
        raise SheetError(_line(name, "no question-answer rows"))
    problems.sort(key=lambda line: int(line.split(": row ", 1)[1].split(":", 1)[0]))  # in row order
    return Sheet(name=name, doc_hash=doc_hash, rows=rows, problems=problems)


# ---------------------------------------------------------------- reading the formats


def _binary(data: bytes) -> bool:
    return data.startswith(_MAGIC) or b"\x00" in data[:8192]


def _text(data: bytes, name: str, kind: str) -> str:
    if _binary(data):
        raise SheetError(_line(name, f"not a {kind} file (binary content)"))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SheetError(_line(name, f"not UTF-8 text (save it as {'CSV UTF-8' if kind == 'CSV' else 'UTF-8'})")) \
            from None


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _xlsx_rows(data: bytes, name: str) -> list[tuple[int, list[str]]]:
    import zipfile

    from openpyxl import load_workbook

    if not data.startswith(b"PK\x03\x04"):
        raise SheetError(_line(name, "not an Excel workbook (the contents do not match the .xlsx name)"))
    try:
        wb = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as err:
        raise SheetError(_line(name, f"damaged Excel workbook ({type(err).__name__})")) from None
    except Exception as err:  # openpyxl's InvalidFileException and friends
        raise SheetError(_line(name, f"not an Excel workbook ({' '.join(str(err).split())[:120]})")) from None
    try:
        ws = wb.worksheets[0]
        return [(i, [_cell(v) for v in row]) for i, row in enumerate(ws.iter_rows(values_only=True), 1)]
    finally:
        wb.close()


def _csv_rows(data: bytes, name: str) -> list[tuple[int, list[str]]]:
    text = _text(data, name, "CSV")
    try:
        return [(i, row) for i, row in enumerate(csv.reader(io.StringIO(text, newline="")), 1)]
    except csv.Error as err:
        raise SheetError(_line(name, f"not a readable CSV file ({err})")) from None


def _table(raw: list[tuple[int, list[str]]], name: str, problems: list[str]) -> list[Row]:
    """Rows of a sheet whose first non-empty row is the header."""
    raw = [(i, cells) for i, cells in raw if any(c.strip() for c in cells)]
    if not raw:
        raise SheetError(_line(name, "no question-answer rows"))
    head_row, head = raw[0]
    columns: dict[str, int] = {}
    for j, h in enumerate(head):
        role = HEADERS.get(h.strip().lower())
        if role and role not in columns:
            columns[role] = j
    if "question" not in columns or "answer" not in columns:
        found = ", ".join(h.strip() for h in head if h.strip()) or "nothing"
        raise SheetError(_line(name, f"unknown column layout (found: {found}); the header row needs {LAYOUTS}",
                               head_row))
    out = []
    for i, cells in raw[1:]:
        def get(role: str) -> str:
            j = columns.get(role)
            return cells[j] if j is not None and j < len(cells) else ""

        row = _row(name, i, get("question"), get("answer"), get("context"), problems,
                   persona_id=get("persona").strip(), sources=get("sources"), shared_at=get("shared_at"))
        if row is not None:
            out.append(row)
    return out


def _parse_sources(text: str) -> list[dict[str, Any]]:
    """The export's sources column ("a.pdf p.3; b.pdf") back into source references (without text)."""
    out: list[dict[str, Any]] = []
    for i, ref in enumerate((r for r in text.split("; ") if r.strip()), 1):
        file, sep, page = ref.rpartition(" p.")
        if sep and page.isdigit():
            out.append({"n": i, "file": file, "page": int(page), "text": ""})
        else:
            out.append({"n": i, "file": ref, "page": None, "text": ""})
    return out


def _row(name: str, i: int, question: str, answer: str, context: str, problems: list[str], *,
         persona_id: str = "", persona_prompt: str = "", sources: str = "", shared_at: str = "") -> Row | None:
    """A validated Row, or None with one line added to ``problems``."""
    if not question.strip() and not answer.strip():
        problems.append(_line(name, "empty question and answer", i))
        return None
    if not question.strip():
        problems.append(_line(name, "empty question", i))
        return None
    if not answer.strip():
        problems.append(_line(name, "empty answer", i))
        return None
    size = len(question) + len(context) + len(answer)
    if size > MAX_ROW_CHARS:
        problems.append(_line(name, f"too long ({size:,} characters, limit {MAX_ROW_CHARS:,})", i))
        return None
    at = None
    if shared_at.strip():
        try:
            at = utc_iso(shared_at.strip())
        except ValueError:
            problems.append(_line(name, f"shared_at is not a date and time ({shared_at.strip()[:40]!r})", i))
            return None
    return Row(row=i, question=question, answer=answer, context=context, persona_id=persona_id,
               persona_prompt=persona_prompt, sources=_parse_sources(sources), shared_at=at)


def _json_rows(text: str, name: str, suffix: str, problems: list[str]) -> list[Row]:
    items: list[tuple[int, Any]] = []
    if suffix == ".json":
        try:
            doc = json.loads(text)
            items = list(enumerate(doc, 1)) if isinstance(doc, list) else [(1, doc)]
        except json.JSONDecodeError as err:
            if not err.msg.startswith("Extra data"):  # else: JSON Lines under a .json name
                raise SheetError(_line(name, f"not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})")) \
                    from None
            suffix = ".jsonl"
    if suffix == ".jsonl":
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                items.append((i, json.loads(line)))
            except json.JSONDecodeError as err:
                problems.append(_line(name, f"not valid JSON (column {err.colno}: {err.msg})", i))
    out = []
    for i, item in items:
        row = _json_row(name, i, item, problems)
        if row is not None:
            out.append(row)
    if not out and problems and all(": not valid JSON" in p for p in problems):
        raise SheetError(_line(name, "not valid JSON"))
    return out


_ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant"}


def _json_row(name: str, i: int, item: Any, problems: list[str]) -> Row | None:
    if not isinstance(item, dict):
        problems.append(_line(name, f"not an object but {type(item).__name__}", i))
        return None
    turns = item.get("messages") if "messages" in item else item.get("conversations")
    if turns is None:  # Alpaca or a header-like object: {"instruction", "input", "output"}, {"question", ...}
        keys = {HEADERS.get(str(k).strip().lower()): v for k, v in item.items()}
        if "question" not in keys or "answer" not in keys:
            found = ", ".join(map(str, item)) or "nothing"
            problems.append(_line(name, f"unknown layout (keys: {found}); each item needs {LAYOUTS}", i))
            return None
        return _row(name, i, _cell(keys["question"]), _cell(keys["answer"]), _cell(keys.get("context")),
                    problems, persona_id=_cell(keys.get("persona")).strip(), sources=_cell(keys.get("sources")),
                    shared_at=_cell(keys.get("shared_at")))
    if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
        problems.append(_line(name, "messages/conversations is not a list of turns", i))
        return None
    by_role: dict[str, list[str]] = {"system": [], "user": [], "assistant": []}
    for t in turns:
        role = _ROLES.get(str(t.get("role", t.get("from", ""))).lower())
        if role is None:
            problems.append(_line(name, f"unknown role {t.get('role', t.get('from'))!r}", i))
            return None
        content = t.get("content", t.get("value", ""))
        if isinstance(content, list):  # OpenAI content parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        by_role[role].append(_cell(content))
    if len(by_role["user"]) > 1 or len(by_role["assistant"]) > 1:
        problems.append(_line(name, "several turns (only one question and one answer per row can be imported)", i))
        return None
    question = (by_role["user"] or [""])[0]
    context = ""
    if question.startswith("Passages:\n") and "\n\nQuestion: " in question:  # kbchat export --with-context
        context, _, question = question[len("Passages:\n"):].partition("\n\nQuestion: ")
    return _row(name, i, question, (by_role["assistant"] or [""])[0], context, problems,
                persona_prompt=(by_role["system"] or [""])[0])


# ---------------------------------------------------------------- into records and passages


def to_records(sheet: Sheet, *, by: str | None, persona: str = "", persona_prompt: str = "",
               source: str = "", now: datetime | None = None) -> list[SharedQA]:
    """The sheet's rows as approved records (origin ``import``, approved by ``by``). Rows without a
    persona column value get ``persona``; rows without a shared_at get the import time, one microsecond
    apart, so exports keep the sheet's order."""
    now = now or datetime.now(timezone.utc)
    stamp = utc_iso(now)
    out = []
    for k, r in enumerate(sheet.rows):
        id_ = uuid.uuid4().hex
        own = bool(r.persona_id)
        out.append(SharedQA(
            id=id_, answer_key=f"import-{id_}", shared_at=r.shared_at or utc_iso(now + timedelta(microseconds=k)),
            user=by, persona_id=r.persona_id or persona,
            persona_prompt=r.persona_prompt or ("" if own else persona_prompt),
            question=r.question, answer=r.answer, context=r.context, sources=r.sources, model="",
            settings={"row": r.row}, status="approved", origin="import", source=source or sheet.name,
            reviewed_by=by, reviewed_at=stamp,
        ))
    return out


def sheet_document(sheet: Sheet, folder: Path):
    """The sheet's rows as one document of a knowledge base: a passage per row ("question\\nanswer"),
    page = row number and page label "row N" (cited "file.xlsx, row N"). A Markdown copy of the pairs
    is written to ``folder`` (the document's path: its Source shows the passage text)."""
    from kbchat.documents.passages import ParsedPdf, Passage

    folder.mkdir(parents=True, exist_ok=True)
    md = folder / f"{sheet.doc_hash}.md"
    passages = []
    lines = [f"# {sheet.name}\n"]
    for r in sheet.rows:
        text = f"{r.question.strip()}\n{r.answer.strip()}"
        passages.append(Passage(sheet.name, r.row, ROW_LABEL.format(n=r.row), 0, len(text), text, sheet.doc_hash))
        lines.append(f"## {ROW_LABEL.format(n=r.row)}\n\n{text}\n")
    md.write_text("\n".join(lines), encoding="utf-8")
    if not passages:
        raise SheetError(_line(sheet.name, "no question-answer rows to index"))
    return ParsedPdf(source=sheet.name, path=md, doc_hash=sheet.doc_hash, pages=len(passages), passages=passages)


__all__ = ["HEADERS", "MAX_ROW_CHARS", "ROW_LABEL", "Row", "SUFFIXES", "Sheet", "SheetError", "read_sheet",
           "row_of", "sheet_document", "to_records"]


@dataclass
class ImportResult:
    """What importing one sheet did."""

    sheet: Sheet
    added: list[SharedQA]
    duplicates: int

    def summary(self) -> str:
        """'qa.xlsx: 12 imported, 1 duplicate skipped, 2 rows rejected'."""
        rejected = len(self.sheet.problems)
        parts = [f"{len(self.added)} imported", f"{self.duplicates} duplicate{'s' if self.duplicates != 1 else ''} "
                 "skipped"]
        if rejected:
            parts.append(f"{rejected} row{'s' if rejected != 1 else ''} rejected")
        return f"{self.sheet.name}: " + ", ".join(parts)


def import_sheet(path: Path, store, *, by: str | None, persona: str = "", persona_prompt: str = "",
                 source: str = "", name: str | None = None) -> ImportResult:
    """Read ``path`` and add its good rows to the ShareStore ``store`` in one transaction (exact
    duplicates skipped). Raises SheetError when the file cannot be used at all."""
    sheet = read_sheet(path, name)
    records = to_records(sheet, by=by, persona=persona, persona_prompt=persona_prompt, source=source)
    added, duplicates = store.add_many(records)
    return ImportResult(sheet=sheet, added=added, duplicates=duplicates)


__all__ += ["ImportResult", "import_sheet"]
