"""Export shared Q&A pairs for fine-tuning (Alpaca, OpenAI chat JSONL, ShareGPT, CSV, Excel), with PII
redaction. The ``export`` / ``shared ...`` commands are in kbchat.cli.shared (reading sheets:
kbchat.sharing.sheets; the summary: kbchat.sharing.stats).
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any, Iterable

from kbchat.documents.passages import row_of
from kbchat.sharing.store import SharedQA

FORMATS = ("alpaca", "openai", "sharegpt", "csv", "xlsx")
EXPORT_STATUSES = ("approved", "pending", "rejected", "all")
COLUMNS = ("instruction", "input", "output", "persona", "sources", "shared_at")

# --------------------------------------------------------------------------------------------
# Redaction
# --------------------------------------------------------------------------------------------

# ASCII-only boundaries: \b fails next to CJK characters (they count as word characters).
_L = r"(?<![0-9A-Za-z])"
_R = r"(?![0-9A-Za-z])"
_LN = r"(?<![0-9A-Za-z.,+/$-])"  # before a phone number: not inside a larger number, amount or code
_RN = r"(?![0-9A-Za-z]|[.,]\d)"

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_IDS = [
    # Taiwan national ID (A123456789) and resident certificates (AB12345678 old, A812345678 new)
    re.compile(_L + r"[A-Z][12ABCD89]\d{8}" + _R),
    # Chinese resident identity card: 6-digit area, birth date, 3-digit sequence, check digit or X
    re.compile(_L + r"[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]" + _R),
]
_SEP = r"[ \u00a0.-]?"
_PHONES = [
    # international: +886 2 1234 5678, +1 (415) 555-0100, +86 138 1234 5678, +886-912-345-678
    re.compile(r"(?<![0-9A-Za-z+])\+\d{1,3}(?:" + _SEP + r"\(\d{1,4}\))?(?:" + _SEP + r"\d{1,5}){1,5}" + _RN),
    # Taiwan landline with area code: (02) 2345-6789, 02-2345-6789, (049) 234-5678
    re.compile(r"(?<![0-9A-Za-z])\(0\d{1,3}\)[ -]?\d{3,4}[ -]?\d{4}" + _RN),
    re.compile(_LN + r"0\d{1,2}-\d{3,4}-\d{4}" + _RN),
    # Taiwan mobile: 0912-345-678, 0912 345 678, 0912345678
    re.compile(_LN + r"09\d{2}[ -]?\d{3}[ -]?\d{3}" + _RN),
    # Chinese mainland mobile: 13812345678, 138 1234 5678, 138-1234-5678
    re.compile(_LN + r"1[3-9]\d[ -]?\d{4}[ -]?\d{4}" + _RN),
]


def _phone(m: re.Match) -> str:
    return "[PHONE]" if len(re.sub(r"\D", "", m.group(0))) >= 8 else m.group(0)


def redact(text: str) -> str:
    """Mask e-mail addresses, phone numbers and national-ID-like numbers as [EMAIL], [PHONE], [ID]."""
    if not text:
        return text
    text = _EMAIL.sub("[EMAIL]", text)
    for pattern in _IDS:
        text = pattern.sub("[ID]", text)
    for pattern in _PHONES:
        text = pattern.sub(_phone, text)
    return text


def redact_record(record: SharedQA) -> SharedQA:
    """A copy of the record with every free-text field redacted."""
    return record.model_copy(
        update={
            "user": redact(record.user) if record.user else record.user,
            "persona_prompt": redact(record.persona_prompt),
            "question": redact(record.question),
            "answer": redact(record.answer),
            "edited_answer": redact(record.edited_answer) if record.edited_answer else record.edited_answer,
            "context": redact(record.context),
            "reasoning": redact(record.reasoning),
            "sources": [
                {**s, "file": redact(str(s.get("file", ""))), "text": redact(str(s.get("text", "")))}
                for s in record.sources
            ],
        }
    )


# --------------------------------------------------------------------------------------------
# Formats
# --------------------------------------------------------------------------------------------


def source_ref(s: dict[str, Any]) -> str:
    """A cited passage as "file p.N", a QA-sheet row as "file row N" (the file alone when it has no page)."""
    page = s.get("page")
    if page in (None, ""):
        return str(s.get("file", ""))
    if isinstance(page, int) and row_of(page, s.get("page_label")) is not None:
        return f"{s.get('file', '')} {s['page_label']}"
    return f"{s.get('file', '')} p.{page}"


def format_context(record: SharedQA) -> str:
    """The cited passages, numbered: "[1] file.pdf p.3: text", one per line; an imported pair's input
    column as it was."""
    if record.context:
        return record.context
    lines = []
    for i, s in enumerate(record.sources, 1):
        text = " ".join(str(s.get("text", "")).split())
        lines.append(f"[{s.get('n') or i}] {source_ref(s)}: {text}")
    return "\n".join(lines)


def format_output(record: SharedQA, with_reasoning: bool = False) -> str:
    """The answer (an admin's edit when there is one), preceded by "<think>…</think>" when asked and the
    record has reasoning."""
    if with_reasoning and record.reasoning.strip():
        return f"<think>\n{record.reasoning.strip()}\n</think>\n\n{record.final_answer}"
    return record.final_answer


def _user_text(record: SharedQA, with_context: bool) -> str:
    context = format_context(record) if with_context else ""
    if not context:
        return record.question
    return f"Passages:\n{context}\n\nQuestion: {record.question}"


def _jsonl(items: Iterable[dict]) -> bytes:
    return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items).encode("utf-8")


def _rows(records: list[SharedQA], with_context: bool, with_reasoning: bool) -> list[list[str]]:
    return [
        [
            r.question,
            format_context(r) if with_context else "",
            format_output(r, with_reasoning),
            r.persona_id,
            "; ".join(source_ref(s) for s in r.sources),
            r.shared_at,
        ]
        for r in records
    ]


def _xlsx(rows: list[list[str]]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Alignment, Font

    wb = Workbook()
    ws = wb.active
    ws.title = "QA"
    ws.append(list(COLUMNS))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    wrap = Alignment(wrap_text=True, vertical="top")
    for row in rows:
        # openpyxl refuses control characters other than tab / newline / carriage return
        ws.append([re.sub(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", "", v) for v in row])
    for row in ws.iter_rows(min_row=2):
        for cell in row:
            cell.alignment = wrap
    for letter, width in zip("ABCDEF", (50, 60, 80, 16, 40, 28)):
        ws.column_dimensions[letter].width = width
    ws.freeze_panes = "A2"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def export_records(records: Iterable[SharedQA], fmt: str, *, with_context: bool = False,
                   with_reasoning: bool = False, redact: bool = False) -> bytes:
    """Serialise records in one of FORMATS; UTF-8 (CSV with a BOM for Excel), CJK kept as is."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r} (choose from {', '.join(FORMATS)})")
    records = [redact_record(r) if redact else r for r in records]
    if fmt == "alpaca":
        items = [
            {"instruction": r.question, "input": format_context(r) if with_context else "",
             "output": format_output(r, with_reasoning)}
            for r in records
        ]
        return (json.dumps(items, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
    if fmt == "openai":
        def messages(r: SharedQA) -> list[dict[str, str]]:
            system = [{"role": "system", "content": r.persona_prompt}] if r.persona_prompt.strip() else []
            return [*system, {"role": "user", "content": _user_text(r, with_context)},
                    {"role": "assistant", "content": format_output(r, with_reasoning)}]

        return _jsonl({"messages": messages(r)} for r in records)
    if fmt == "sharegpt":
        def conversations(r: SharedQA) -> list[dict[str, str]]:
            system = [{"from": "system", "value": r.persona_prompt}] if r.persona_prompt.strip() else []
            return [*system, {"from": "human", "value": _user_text(r, with_context)},
                    {"from": "gpt", "value": format_output(r, with_reasoning)}]

        return _jsonl({"conversations": conversations(r)} for r in records)
    rows = _rows(records, with_context, with_reasoning)
    if fmt == "csv":
        buf = io.StringIO(newline="")
        writer = csv.writer(buf)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
        return buf.getvalue().encode("utf-8-sig")
    return _xlsx(rows)


__all__ = ["COLUMNS", "EXPORT_STATUSES", "FORMATS", "export_records", "format_context", "format_output", "source_ref", 
           "redact", "redact_record"]
