"""Export shared Q&A pairs for fine-tuning (Alpaca, OpenAI chat JSONL, ShareGPT, CSV, Excel), with PII
redaction, and the ``export`` / ``shared list|show|approve|reject|edit|delete|import|stats`` commands that
kbchat.cli registers (reading sheets: kbchat.sheets; the summary: kbchat.dataset).
"""

from __future__ import annotations

import csv
import io
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable, Iterable

import click

from kbchat.sharing.store import SharedQA, ShareStore, utc_iso

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


def _source_ref(s: dict[str, Any]) -> str:
    page = s.get("page")
    return f"{s.get('file', '')} p.{page}" if page not in (None, "") else str(s.get("file", ""))


def format_context(record: SharedQA) -> str:
    """The cited passages, numbered: "[1] file.pdf p.3: text", one per line; an imported pair's input
    column as it was."""
    if record.context:
        return record.context
    lines = []
    for i, s in enumerate(record.sources, 1):
        text = " ".join(str(s.get("text", "")).split())
        lines.append(f"[{s.get('n') or i}] {_source_ref(s)}: {text}")
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
            "; ".join(_source_ref(s) for s in r.sources),
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


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def parse_since(value: str | None) -> str | None:
    """A --since value (YYYY-MM-DD or ISO date-time, UTC when no offset) as a UTC ISO string."""
    if value is None or not value.strip():
        return None
    try:
        return utc_iso(value)
    except ValueError:
        raise click.ClickException(f"--since: {value!r} is not a date (use YYYY-MM-DD)") from None


def _data_dir_option(f):
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=None,
        help="Data folder (overrides KBCHAT_DATA_DIR); the records live in its database "
        "unless KBCHAT_DATABASE_URL names another.",
    )(f)


def register_cli(group: click.Group, get_settings: Callable[[], Any]) -> None:
    """Add ``export`` and ``shared list|show|approve|reject|edit|delete|import|stats`` to a click group;
    get_settings builds the Settings."""

    def open_store(data_dir: Path | None) -> ShareStore:
        from kbchat.records.database import open_database

        try:
            settings = get_settings()
            if data_dir is not None:
                settings = settings.model_copy(update={"data_dir": Path(data_dir)})
            return ShareStore(open_database(settings))
        except click.ClickException:
            raise
        except Exception as err:  # pydantic ValidationError, ConfigError, a database that won't open: one line
            raise click.ClickException(" ".join(str(err).split())) from None

    def nothing_stored(data_dir: Path | None) -> bool:
        """No database and no legacy store yet: reading must not create one."""
        from kbchat.records.database import DB_FILE, LEGACY_SHARED

        s = get_settings()
        folder = Path(data_dir) if data_dir is not None else Path(s.data_dir)
        return s.database_url is None and not (folder / DB_FILE).exists() and not (folder / LEGACY_SHARED).exists()

    def load(data_dir: Path | None, persona: str | None, since: str | None,
             user: str | None = None, status: str | None = None) -> list[SharedQA]:
        if nothing_stored(data_dir):
            return []
        with open_store(data_dir) as store:
            try:
                return store.list(persona=persona, since=since, user=user, status=status)
            except Exception as err:
                raise click.ClickException(f"cannot read shared records: {' '.join(str(err).split())}") from None

    @group.command("export")
    @click.option("--format", "fmt", type=click.Choice(FORMATS), required=True, help="Output format.")
    @click.option("--with-context", is_flag=True, help="Include the cited passages as input/context.")
    @click.option("--with-reasoning", is_flag=True, help="Prepend the reasoning in <think>…</think>.")
    @click.option("--persona", default=None, metavar="ID", help="Only records of this persona.")
    @click.option("--since", default=None, metavar="DATE", help="Only records shared on or after DATE (UTC).")
    @click.option("--redact", "do_redact", is_flag=True, help="Mask e-mails, phone numbers and ID numbers.")
    @click.option("--status", type=click.Choice(EXPORT_STATUSES), default="approved", show_default=True,
                  help="Records of this review status; all = every status, pending included.")
    @click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
                  help="Output file (default: standard output; required for xlsx).")
    @_data_dir_option
    def export_cmd(fmt, with_context, with_reasoning, persona, since, do_redact, status, output, data_dir):
        """Export shared Q&A pairs for fine-tuning (approved ones unless --status says otherwise; an
        admin's edited answer replaces the original)."""
        if fmt == "xlsx" and output is None:
            raise click.ClickException("xlsx is a binary format: give an output file with -o FILE.xlsx")
        records = load(data_dir, persona, parse_since(since), status=status)
        if status == "approved" and not nothing_stored(data_dir):
            with open_store(data_dir) as store:
                pending = store.count("pending")
            if pending:
                click.echo(f"{pending} pending record(s) not exported: review them "
                           "(kbchat shared list --status pending) or export with --status all", err=True)
        data = export_records(records, fmt, with_context=with_context, with_reasoning=with_reasoning,
                              redact=do_redact)
        if output is None:
            click.echo(data, nl=False)  # bytes go to the binary stdout unchanged
            return
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_bytes(data)
        except OSError as err:
            raise click.ClickException(f"cannot write {output}: {err.strerror or err}") from None
        click.echo(f"{len(records)} record(s) written to {output}", err=True)

    @group.group("shared")
    def shared_group():
        """Shared Q&A records (administrator)."""

    @shared_group.command("list")
    @click.option("--status", type=click.Choice(EXPORT_STATUSES), default="all", show_default=True,
                  help="Only records of this review status.")
    @click.option("--persona", default=None, metavar="ID", help="Only records of this persona.")
    @click.option("--since", default=None, metavar="DATE", help="Only records shared on or after DATE (UTC).")
    @click.option("--user", default=None, metavar="NAME", help="Only records this user shared.")
    @click.option("--json", "as_json", is_flag=True, help="Print full records as JSON lines.")
    @_data_dir_option
    def list_cmd(status, persona, since, user, as_json, data_dir):
        """List records, oldest first: id, time, status, persona, who shared it, question."""
        records = load(data_dir, persona, parse_since(since), user, status=status)
        for r in records:
            if as_json:
                click.echo(json.dumps(r.model_dump(), ensure_ascii=False))
            else:
                question = " ".join(r.question.split())
                question = question if len(question) <= 60 else question[:59] + "…"
                mark = r.status + ("*" if r.edited_answer is not None else "")
                click.echo(f"{r.id}\t{r.shared_at[:19]}Z\t{mark}\t{r.persona_id or '-'}\t{r.user or '-'}\t{question}")
        if not as_json:
            click.echo(f"{len(records)} record(s)" + (f" ({status})" if status != "all" else "")
                       + ("; * = answer edited" if any(r.edited_answer is not None for r in records) else ""),
                       err=True)

    def one(store: ShareStore, record_id: str) -> SharedQA:
        record = store.get(record_id)
        if record is None:
            raise click.ClickException(f"no shared record with id {record_id}")
        return record

    @shared_group.command("show")
    @click.argument("record_id", metavar="ID")
    @click.option("--json", "as_json", is_flag=True, help="Print the full record as JSON.")
    @_data_dir_option
    def show_cmd(record_id, as_json, data_dir):
        """Show one record: question, answer (and the edit), cited passages, persona, review."""
        with open_store(data_dir) as store:
            r = one(store, record_id)
        if as_json:
            click.echo(json.dumps(r.model_dump(), ensure_ascii=False, indent=2))
            return
        click.echo(describe(r))

    def review_cmd(status: str):
        @click.argument("record_ids", metavar="ID...", nargs=-1, required=True)
        @click.option("--by", default=None, metavar="NAME", help="Reviewer recorded (default cli:<OS user>).")
        @_data_dir_option
        def cmd(record_ids, by, data_dir):
            with open_store(data_dir) as store:
                for record_id in record_ids:
                    one(store, record_id)
                for record_id in record_ids:
                    store.review(record_id, status, by or _cli_user())
                    click.echo(f"{status} {record_id}")
                left = store.count("pending")
            click.echo(f"{left} pending record(s) left", err=True)

        return cmd

    shared_group.command("approve", help="Approve records: `kbchat export` writes them.")(review_cmd("approved"))
    shared_group.command("reject", help="Reject records: never exported (kept, so a re-share does not return).")(
        review_cmd("rejected"))

    @shared_group.command("edit")
    @click.argument("record_id", metavar="ID")
    @click.option("--answer", default=None, help="The corrected answer (default: read from standard input).")
    @click.option("--approve", is_flag=True, help="Approve the record too.")
    @click.option("--by", default=None, metavar="NAME", help="Reviewer recorded (default cli:<OS user>).")
    @_data_dir_option
    def edit_cmd(record_id, answer, approve, by, data_dir):
        """Replace the answer an export writes; the original is kept beside it."""
        text = answer if answer is not None else sys.stdin.read().rstrip("\n")
        if not text.strip():
            raise click.ClickException("the edited answer is empty")
        with open_store(data_dir) as store:
            one(store, record_id)
            store.edit(record_id, text, by or _cli_user())
            if approve:
                store.review(record_id, "approved", by or _cli_user())
        click.echo(f"edited {record_id}" + (" and approved" if approve else ""))

    @shared_group.command("import")
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--persona", default=None, metavar="ID", help="Persona of rows without a persona column value.")
    @click.option("--source", default=None, metavar="NAME", help="Source name recorded (default: the file name).")
    @click.option("--as-knowledge", "as_knowledge", default=None, metavar="NAME",
                  help="Also index each pair as one passage of knowledge base NAME (cited as file, row N).")
    @click.option("--by", default=None, metavar="NAME", help="Importing admin recorded (default cli:<OS user>).")
    @_data_dir_option
    def import_cmd(file, persona, source, as_knowledge, by, data_dir):
        """Import a QA sheet (.xlsx, .csv, .json, .jsonl) as approved records; one line per rejected row."""
        from kbchat.sharing.sheets import SheetError, import_sheet

        settings = get_settings()
        if data_dir is not None:
            settings = settings.model_copy(update={"data_dir": Path(data_dir)})
        prompt = _persona_system_prompt(settings, persona) if persona else ""
        if as_knowledge is not None:
            from kbchat.errors import KbchatError
            from kbchat.knowledge import get_base

            try:  # only a known base: a persona can be bound to it (a typo would index pairs nobody searches)
                collection = get_base(settings, as_knowledge).collection
            except (ValueError, KbchatError) as err:
                raise click.ClickException(f"--as-knowledge: {err}") from None
        with open_store(data_dir) as store:
            try:
                result = import_sheet(file, store, by=by or _cli_user(), persona=persona or "",
                                      persona_prompt=prompt, source=source or "")
            except SheetError as err:
                raise click.ClickException(str(err)) from None
            except Exception as err:  # the database refused: the transaction stored none of the rows
                raise click.ClickException(f"{file.name}: not imported ({' '.join(str(err).split())}); "
                                           "nothing was stored") from None
        for line in result.sheet.problems:
            click.echo(line, err=True)
        click.echo(result.summary())
        if as_knowledge is not None and result.sheet.rows:
            n = _index_sheet(settings, result.sheet, collection, added_by=by or _cli_user())
            click.echo(f"{result.sheet.name}: {n} pair(s) indexed in knowledge base {as_knowledge} "
                       f"(cited as {result.sheet.name}, row N)")
        if result.sheet.problems:
            sys.exit(1)

    @shared_group.command("stats")
    @_data_dir_option
    def stats_cmd(data_dir):
        """Records by status, origin, persona and language; duplicates skipped; the token-length
        histogram of approved pairs (what a fine-tuning run would get)."""
        from kbchat.sharing.stats import dataset_stats, format_stats

        records = load(data_dir, None, None)
        skipped = 0
        if not nothing_stored(data_dir):
            with open_store(data_dir) as store:
                skipped = store.duplicates_skipped()
        click.echo(format_stats(dataset_stats(records, skipped)), nl=False)

    @shared_group.command("delete")
    @click.argument("record_id", metavar="ID")
    @_data_dir_option
    def delete_cmd(record_id, data_dir):
        """Delete one shared record by id."""
        with open_store(data_dir) as store:
            deleted = store.delete(record_id)
        if not deleted:
            raise click.ClickException(f"no shared record with id {record_id}")
        click.echo(f"deleted {record_id}")


def _cli_user() -> str:
    import getpass

    try:
        return "cli:" + getpass.getuser()
    except Exception:
        return "cli"


def _persona_system_prompt(settings: Any, persona: str) -> str:
    from kbchat.errors import KbchatError
    from kbchat.personas import load_personas

    try:
        personas = load_personas(settings.personas_dir)
    except (KbchatError, OSError) as err:
        raise click.ClickException(str(err)) from None
    if persona not in personas:
        raise click.ClickException(f"unknown persona '{persona}'; known: {', '.join(personas) or 'none'}")
    return personas[persona].system_prompt()


def _index_sheet(settings: Any, sheet, collection: str, *, added_by: str = "") -> int:
    """Index a sheet's rows as passages of a store collection; the number of passages."""
    from kbchat.errors import KbchatError
    from kbchat.sharing.sheets import sheet_document
    from kbchat.search.store import load_embedder, open_store

    try:
        doc = sheet_document(sheet, Path(settings.data_dir) / "qa-sheets")
        store = open_store(settings, load_embedder(settings))
        try:
            store.collection(collection).add(doc, source_key=f"sheet/{sheet.name}", origin="qa-sheet",
                                              added_by=added_by)
        finally:
            store.close()
    except KbchatError as err:
        raise click.ClickException(str(err)) from None
    return len(doc.passages)


def describe(r: SharedQA) -> str:
    """A record as the CLI shows it: question, answer (original and edit), passages, persona, review."""
    lines = [f"id:        {r.id}", f"status:    {r.status}" + (f" by {r.reviewed_by} at {r.reviewed_at}"
                                                             if r.reviewed_by else ""),
             f"origin:    {r.origin}" + (f" ({r.source})" if r.source else ""),
             f"shared:    {r.shared_at} by {r.user or '-'}", f"persona:   {r.persona_id or '-'}", "",
             "Question:", r.question, ""]
    if r.edited_answer is not None:
        lines += ["Answer (edited; exported):", r.edited_answer, "", "Original answer:", r.answer]
    else:
        lines += ["Answer:", r.answer]
    if r.context:
        lines += ["", "Input:", r.context]
    if r.sources:
        lines += ["", "Cited passages:"]
        for i, src in enumerate(r.sources, 1):
            text = " ".join(str(src.get("text", "")).split())
            lines.append(f"  [{src.get('n') or i}] {_source_ref(src)}" + (f": {text[:200]}" if text else ""))
    return "\n".join(lines)


__all__ = ["COLUMNS", "EXPORT_STATUSES", "FORMATS", "describe", "export_records", "format_context", "format_output", "parse_since",
           "redact", "redact_record", "register_cli"]
