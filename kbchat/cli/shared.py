"""`kbchat export` (the dataset for fine-tuning) and `kbchat shared ...` (list, show, approve, reject, edit,
delete, import, stats): the command line of kbchat.sharing. Exports, review decisions and sheet imports go to
the audit log."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from kbchat.cli.context import as_option as _as_option
from kbchat.cli.context import audit as _audit
from kbchat.cli.context import cli_user
from kbchat.cli.context import data_dir_option as _data_dir_option
from kbchat.settings import Settings
from kbchat.sharing.export import EXPORT_STATUSES, FORMATS, export_records, source_ref
from kbchat.sharing.store import SharedQA, ShareStore, utc_iso


@click.group()
def commands() -> None:
    """Holder of this module's commands (kbchat.cli.main adds them to `kbchat`)."""


def parse_since(value: str | None) -> str | None:
    """A --since value (YYYY-MM-DD or ISO date-time, UTC when no offset) as a UTC ISO string."""
    if value is None or not value.strip():
        return None
    try:
        return utc_iso(value)
    except ValueError:
        raise click.ClickException(f"--since: {value!r} is not a date (use YYYY-MM-DD)") from None


def open_store(data_dir: Path | None) -> ShareStore:
    from kbchat.records.database import open_database

    try:
        settings = Settings()
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

    s = Settings()
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

@commands.command("export")
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
@_as_option
@_data_dir_option
def export_cmd(fmt, with_context, with_reasoning, persona, since, do_redact, status, output, as_user, data_dir):
    """Export shared Q&A pairs for fine-tuning (approved ones unless --status says otherwise; an
    admin's edited answer replaces the original). With --as USER, records citing a knowledge base USER
    may not read are left out."""
    if fmt == "xlsx" and output is None:
        raise click.ClickException("xlsx is a binary format: give an output file with -o FILE.xlsx")
    records = load(data_dir, persona, parse_since(since), status=status)
    left_out = 0
    if as_user is not None:
        records, left_out = _readable_records(data_dir, as_user, records)
        if left_out:
            click.echo(f"{left_out} record(s) left out: they cite a knowledge base {as_user} may not read "
                       "(or one not recorded)", err=True)
    if status == "approved" and not nothing_stored(data_dir):
        with open_store(data_dir) as store:
            pending = store.count("pending")
        if pending:
            click.echo(f"{pending} pending record(s) not exported: review them "
                       "(kbchat shared list --status pending) or export with --status all", err=True)
    if not nothing_stored(data_dir):
        with open_store(data_dir) as store:
            _audit(store.db, "export", output.name if output else "stdout",
                   {k: v for k, v in {"format": fmt, "status": status, "persona": persona, "since": since,
                                      "as": as_user, "redact": do_redact or None, "records": len(records),
                                      "left_out": left_out or None}.items() if v is not None})
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

@commands.group("shared")
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
                store.review(record_id, status, by or cli_user())
                _audit(store.db, "review." + {"approved": "approve", "rejected": "reject"}[status], record_id,
                       {"by": by} if by else None)
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
        store.edit(record_id, text, by or cli_user())
        _audit(store.db, "review.edit", record_id, {"by": by} if by else None)
        if approve:
            store.review(record_id, "approved", by or cli_user())
            _audit(store.db, "review.approve", record_id, {"by": by} if by else None)
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

    settings = Settings()
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
            result = import_sheet(file, store, by=by or cli_user(), persona=persona or "",
                                  persona_prompt=prompt, source=source or "")
        except SheetError as err:
            raise click.ClickException(str(err)) from None
        except Exception as err:  # the database refused: the transaction stored none of the rows
            raise click.ClickException(f"{file.name}: not imported ({' '.join(str(err).split())}); "
                                       "nothing was stored") from None
        _audit(store.db, "sheet.import", result.sheet.name,
               {k: v for k, v in {"imported": len(result.added), "duplicates": result.duplicates,
                                  "rejected": len(result.sheet.problems), "persona": persona,
                                  "as_knowledge": as_knowledge, "by": by}.items() if v is not None})
    for line in result.sheet.problems:
        click.echo(line, err=True)
    click.echo(result.summary())
    if as_knowledge is not None and result.sheet.rows:
        n = _index_sheet(settings, result.sheet, collection, added_by=by or cli_user())
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
        if deleted:
            _audit(store.db, "review.delete", record_id)
    if not deleted:
        raise click.ClickException(f"no shared record with id {record_id}")
    click.echo(f"deleted {record_id}")


def _readable_records(data_dir: Path | None, as_user: str, records: list[SharedQA]) -> tuple[list[SharedQA], int]:
    """The records whose every cited passage ``as_user`` may read (a source's ``collection``; a source
    without one is of an unknown base: left out unless the user is an admin), and how many were left out."""
    from kbchat.cli.context import State
    from kbchat.knowledge import may_read_collection
    from kbchat.records.history import History

    state = State(data_dir)
    reader = state.reader(as_user)
    if reader.is_admin:
        return records, 0
    owner = History(state.access.db).thread_owner
    seen: dict[str, bool] = {}

    def ok(src: dict) -> bool:
        coll = src.get("collection") if isinstance(src, dict) else None
        if not isinstance(coll, str) or not coll:
            return False
        if coll not in seen:
            seen[coll] = may_read_collection(state.settings, state.access, reader, coll, thread_owner=owner)
        return seen[coll]

    kept = [r for r in records if all(ok(src) for src in (r.sources or []))]
    return kept, len(records) - len(kept)


def _persona_system_prompt(settings: Any, persona: str) -> str:
    from kbchat.cli.context import published_personas
    from kbchat.errors import KbchatError

    try:
        personas = published_personas(settings)
    except (KbchatError, OSError) as err:
        raise click.ClickException(str(err)) from None
    if persona not in personas:
        raise click.ClickException(f"unknown persona '{persona}'; known: {', '.join(personas) or 'none'}")
    return personas[persona].system_prompt()


def _index_sheet(settings: Any, sheet, collection: str, *, added_by: str = "") -> int:
    """Index a sheet's rows as passages of a store collection; the number of passages."""
    from kbchat.errors import KbchatError
    from kbchat.search.loaders import load_embedder, open_store
    from kbchat.sharing.sheets import sheet_document

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
            lines.append(f"  [{src.get('n') or i}] {source_ref(src)}" + (f": {text[:200]}" if text else ""))
    return "\n".join(lines)
