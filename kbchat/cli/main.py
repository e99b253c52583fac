"""The `kbchat` group and its document commands: ingest, search, ask, eval, doctor, sync. The other commands
live beside it (kb, shared + export, users + threads, migrate) and are added here."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from kbchat.cli import access, kb, keys, migrate, personas, shared, users
from kbchat.cli.context import State as _State
from kbchat.cli.context import as_option as _as_option
from kbchat.cli.context import data_dir_option as _data_dir_option
from kbchat.cli.context import fail as _fail
from kbchat.errors import KbchatError
from kbchat.settings import Settings, offline_model_env


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kbchat")
def main() -> None:
    """Talk to your internal knowledge base: index PDFs, search them, ask with citations."""
    offline_model_env()


def _iter_documents(paths: tuple[Path, ...]):
    from kbchat.documents.reader import is_supported

    for p in paths:
        if p.is_dir():
            yield from sorted(q for q in p.rglob("*") if q.is_file() and is_supported(q))
        else:
            yield p


@main.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--kb", "kb", default=None, metavar="NAME",
              help="Knowledge base to ingest into (see `kbchat kb list`; default: the default base).")
@click.option("--collection", default=None, help="Raw store collection to ingest into (kb-NAME is base NAME).")
@_data_dir_option
def ingest(paths: tuple[Path, ...], kb: str | None, collection: str | None, data_dir: Path | None) -> None:
    """Index PDF, Office (.docx .pptx .xlsx .odt), Markdown and text files, or folders of them.

    One line per file (and one per note, e.g. scanned pages OCR could not read); exit 1 if any file failed.
    """
    from kbchat.cli.context import cli_user
    from kbchat.cli.kb import ingest_target
    from kbchat.uploads import FileToAdd, Outcome, add_files

    state = _State(data_dir)
    s = state.settings
    target = ingest_target(s, kb, collection)
    try:
        coll = state.store.collection(target)
    except KbchatError as err:
        raise _fail(err) from None
    totals = {"pages": 0, "passages": 0, "failed": 0}
    t_all = time.perf_counter()
    ocr_line = _ocr_progress()

    files_seen: list[str] = []

    def show(event) -> None:
        if not isinstance(event, Outcome):
            ocr_line(event)
            return
        doc, secs = event.doc, event.seconds
        if event.error is None and event.status not in ("unchanged", "duplicate"):
            files_seen.append(doc.source)
        if event.error is not None:
            totals["failed"] += 1
            click.echo(f"FAILED {event.error}", err=True)
            return
        for warning in doc.warnings:
            click.echo(f"WARNING {doc.source}: {warning}", err=True)
        totals["pages"] += doc.pages
        if event.status in ("unchanged", "duplicate"):
            note = "unchanged, skipped" if event.status == "unchanged" else (
                f"same content already indexed as {event.other}, skipped")
            click.echo(f"{doc.source}: {doc.pages} pages, {note} ({secs:.1f} s)")
        else:
            totals["passages"] += len(doc.passages)
            ocr = f" ({len(doc.ocr_pages)} by OCR)" if doc.ocr_pages else ""
            click.echo(f"{doc.source}: {doc.pages} pages{ocr}, {len(doc.passages)} passages, "
                       f"{event.status} in {secs:.1f} s")

    # Passages of several files are embedded together (pooled); a file's line comes once it is stored.
    files = (FileToAdd(p, p.name, key=str(p.resolve())) for p in _iter_documents(paths))
    add_files(state.store, target, files, settings=s, origin="cli", added_by=cli_user(), progress=show,
              pooled=True)
    state.store.close()  # release the keyword-index lock (in-process callers may ingest again)
    failed = totals["failed"]
    _audit_ingest(state, target, totals, files_seen)
    click.echo(f"done: {totals['pages']} pages, {totals['passages']} new passages in "
               f"{time.perf_counter() - t_all:.1f} s into '{coll.name}'"
               + (f"; {failed} file(s) failed" if failed else ""))
    if failed:
        sys.exit(1)


def _audit_ingest(state, target: str, totals: dict, files: list[str]) -> None:
    """kb.add in the audit log when documents went into a knowledge base (not a raw collection)."""
    from kbchat.cli.context import audit
    from kbchat.knowledge import base_of_collection

    base = base_of_collection(target, state.settings)
    if base is not None and files:
        audit(state.access.db, "kb.add", base, {"documents": files[:50], "count": len(files),
                                                "passages": totals["passages"]})


def _ocr_progress():
    """Progress callback: 'name: page 12 of 40 (OCR)' on stderr, rewritten in place on a terminal."""
    tty = sys.stderr.isatty()

    def show(event) -> None:
        if tty and event.stage == "reading_ocr":
            click.echo(f"\r{event.name}: page {event.done} of {event.total} (OCR)\x1b[K", nl=False, err=True)

    return show


def _hit_dict(hit) -> dict:
    return {"source": hit.source, "page": hit.page, "text": hit.text, "score": round(float(hit.score), 6),
            "ocr": bool(getattr(hit.passage, "ocr", False))}


def _print_hits(hits) -> None:
    from kbchat.messages import place_ref

    for i, h in enumerate(hits, 1):
        snippet = " ".join(h.text.split())
        where = place_ref("en", h.page, h.page_label, scanned=bool(getattr(h.passage, "ocr", False)))
        click.echo(f"[{i}] {h.source}, {where}  score {h.score:.4f}")
        click.echo(f"    {snippet[:300]}{'…' if len(snippet) > 300 else ''}")


def _kb_option(f):
    return click.option("--kb", "kbs", multiple=True, metavar="NAME",
                        help="Knowledge base(s) to search (repeatable; see `kbchat kb list`).")(f)


def _targets(state, reader, kbs=(), collections=(), persona=None) -> list:
    """The collections a question searches, however they are named: --kb NAME, --collection (kb-NAME,
    thread-<id>, ...), the persona's bases, else the default base; those ``reader`` may not read left out
    (one line each on stderr; none left: exit 1)."""
    from kbchat.knowledge import collection_name, get_base

    s = state.settings
    names = [get_base(s, b).collection for b in kbs] + list(collections)
    if not names and persona is not None and persona.knowledge:
        names = [collection_name(b, s) for b in persona.knowledge]
    names = state.readable_collections(reader, list(dict.fromkeys(names or [s.shared_collection])))
    return [state.store.collection(n) for n in names]


def _load_persona(s: Settings, persona_id: str | None, reader=None):
    """The persona ``persona_id`` (None: none given), refused when ``reader`` may not use it (visible_to)."""
    if not persona_id:
        return None
    from kbchat.cli.context import persona_catalog, pick_persona
    from kbchat.knowledge import OPERATOR

    try:
        p = pick_persona(persona_catalog(s), persona_id)
    except (KbchatError, OSError) as err:
        raise _fail(err) from None
    if reader is not None and reader is not OPERATOR and p.visible_to:
        from kbchat.records.access import Access
        from kbchat.records.database import open_database

        groups = Access(open_database(s)).user_groups(reader.name) if reader.name else set()
        if not p.visible(groups, reader.is_admin):
            raise click.ClickException(f"{reader.name} may not use persona {persona_id} "
                                       f"(visible to {', '.join(p.visible_to)})")
    return p


@main.command()
@click.argument("question", required=False)
@_kb_option
@click.option("--collection", "collections", multiple=True, help="Collection(s) to search (repeatable).")
@click.option("--persona", default=None, metavar="ID", help="Search this persona's knowledge bases.")
@click.option("--k", type=int, default=None, help="Number of passages (default KBCHAT_FINAL_K).")
@click.option("--json", "as_json", is_flag=True, help="Print hits as JSON.")
@click.option("--jsonl", is_flag=True, help='Batch: read {"id", "question"} lines on stdin, write one line each.')
@_as_option
@_data_dir_option
def search(question, kbs, collections, persona, k, as_json, jsonl, as_user, data_dir) -> None:
    """Hybrid (dense + BM25) search; best passages first."""
    from kbchat.search.retrieve import search as run_search

    if not question and not jsonl:
        raise click.UsageError("give a QUESTION or --jsonl")
    state = _State(data_dir)
    s = state.settings
    k = k or s.final_k
    reader = state.reader(as_user)
    try:
        colls = _targets(state, reader, kbs, collections, _load_persona(s, persona, reader))
        if jsonl:
            for line in sys.stdin:
                if not line.strip():
                    continue
                item = json.loads(line)
                hits = run_search(colls, state.embedder, item["question"], k=k, candidate_k=s.candidate_k,
                                  reranker=state.reranker)
                click.echo(json.dumps({"id": item.get("id"), "hits": [_hit_dict(h) for h in hits]},
                                      ensure_ascii=False))
            return
        hits = run_search(colls, state.embedder, question, k=k, candidate_k=s.candidate_k,
                          reranker=state.reranker)
    except KbchatError as err:
        raise _fail(err) from None
    if as_json:
        click.echo(json.dumps([_hit_dict(h) for h in hits], ensure_ascii=False, indent=2))
    elif not hits:
        click.echo("No passages found. Ingest PDFs first: kbchat ingest PATH")
    else:
        if hits[0].covered is False:
            click.echo(NOT_COVERED)
        _print_hits(hits)


# Below the relevance floor (search.retrieve.is_covered), before the closest passages.
NOT_COVERED = "The documents do not cover this question; the closest passages (not an answer):"


@main.command()
@click.argument("question")
@_kb_option
@click.option("--collection", "collections", multiple=True, help="Collection(s) to search (repeatable).")
@click.option("--k", type=int, default=None, help="Number of passages given to the LLM.")
@click.option("--reasoning", type=click.Choice(["on", "off"]), default=None,
              help="Ask a reasoning model to think (style: KBCHAT_REASONING_STYLE).")
@click.option("--persona", default=None,
              help="Persona id from the personas folder (default persona if omitted); searches its knowledge bases.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer and its sources as JSON at the end.")
@_as_option
@_data_dir_option
def ask(question, kbs, collections, k, reasoning, persona, as_json, as_user, data_dir) -> None:
    """Answer QUESTION from the indexed PDFs with numbered citations (streams the answer)."""
    from kbchat import answer as ans
    from kbchat.messages import place_ref
    from kbchat.search.retrieve import search as run_search

    state = _State(data_dir)
    s = state.settings
    reader = state.reader(as_user)
    chosen = _load_persona(s, persona, reader)  # its bases, as in the app, unless --kb / --collection
    system_prompt, few_shot, temperature = _persona_prompt(s, persona)
    if chosen is not None:  # the persona's own model (its `llm:` block) instead of the global one, as in the chat
        s = ans.llm_settings(s, chosen)
    try:
        colls = _targets(state, reader, kbs, collections, chosen)
        hits = run_search(colls, state.embedder, question,
                          k=k or s.final_k, candidate_k=s.candidate_k, reranker=state.reranker)
    except KbchatError as err:
        raise _fail(err) from None
    if not hits:
        click.echo("No passages found. Ingest PDFs first: kbchat ingest PATH", err=True)
    elif hits[0].covered is False and not as_json:
        click.echo(NOT_COVERED.split(";")[0] + ".", err=True)
    flag = None if reasoning is None else reasoning == "on"
    messages = ans.build_messages(question, hits, system_prompt=system_prompt, few_shot=few_shot,
                                  reasoning=flag, style=s.reasoning_style)
    text_parts: list[str] = []
    reasoning_parts: list[str] = []
    try:
        llm = ans.make_llm(s, temperature=temperature)
        in_reasoning = False
        for chunk in ans.stream(llm, messages):
            if chunk.kind == "reasoning":
                reasoning_parts.append(chunk.text)
                if not as_json:
                    if not in_reasoning:
                        click.secho("thinking: ", dim=True, nl=False, err=True)
                        in_reasoning = True
                    click.secho(chunk.text, dim=True, nl=False, err=True)
                continue
            if in_reasoning:
                click.echo("", err=True)
                in_reasoning = False
            text_parts.append(chunk.text)
            if not as_json:
                click.echo(chunk.text, nl=False)
    except KbchatError as err:
        click.echo("", err=True)
        click.echo("Passages found (search-only answer):")
        _print_hits(hits)
        raise _fail(err) from None
    text = "".join(text_parts)
    citations = ans.cite(text, hits)
    if as_json:
        click.echo(json.dumps({
            "question": question, "answer": text, "reasoning": "".join(reasoning_parts),
            "not_covered": not hits or hits[0].covered is False,
            "citations": [{"n": c.n, **_hit_dict(c.hit)} for c in citations],
            "hits": [_hit_dict(h) for h in hits],
        }, ensure_ascii=False, indent=2))
        return
    click.echo("\n\nSources:")
    cited = {c.n for c in citations}
    for i, h in enumerate(hits, 1):
        mark = "*" if i in cited else " "
        click.echo(f"{mark}[{i}] {h.source}, {place_ref('en', h.page, h.page_label, scanned=bool(h.passage.ocr))}")


def _persona_prompt(s: Settings, persona_id: str | None):
    """(system prompt, few-shot turns, temperature) of a persona, or a plain default."""
    default = ("You are a careful assistant answering from the organisation's documents.", [], None)
    try:
        from kbchat.cli.context import persona_catalog, pick_persona

        catalog = persona_catalog(s)
    except (ImportError, KbchatError, OSError) as err:
        if persona_id:
            raise _fail(err) from None
        return default
    if not catalog.personas and not persona_id:
        return default
    p = pick_persona(catalog, persona_id) if persona_id else next(iter(catalog.personas.values()))
    return p.system_prompt(), p.few_shot(), p.temperature


@main.command("eval")
@click.argument("questions", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--shared", "from_shared", is_flag=True,
              help="Score on the approved shared Q&A whose answers cite passages (the cited file and page are "
                   "the gold), instead of a questions file.")
@click.option("--persona", default=None, help="With --shared: only this persona's records.")
@click.option("--k", type=int, default=5, show_default=True)
@click.option("--collection", "collections", multiple=True, help="Collection(s) to search (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--results", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the hits per question as JSONL (the format score.py reads).")
@_data_dir_option
def eval_cmd(questions, from_shared, persona, k, collections, as_json, results, data_dir) -> None:
    """Measure retrieval on your own questions (a JSONL file) or, with --shared, on the reviewed shared
    answers: hit@1, hit@k, MRR@k overall and per language. Every approved share then guards search quality
    after a change of model or settings."""
    from kbchat.evaluate import format_table, load_questions, score
    from kbchat.search.retrieve import search as run_search

    if bool(questions) == bool(from_shared):
        raise click.UsageError("give a QUESTIONS file or --shared (not both)")
    state = _State(data_dir)
    s = state.settings
    qs = _shared_questions(state, persona) if from_shared else load_questions(questions)
    if from_shared and not qs:
        raise click.ClickException("no approved shared answer cites a passage" +
                                   (f" for persona {persona}" if persona else "") + ": nothing to score")
    out: dict[str, list[dict]] = {}
    try:
        default = state.collections(collections)
        existing = set(state.store.names()) if from_shared else set()
        for q in qs:
            colls = default
            if from_shared and not collections:  # where the cited passages came from, if still there
                names = [n for n in q["collections"] if n in existing] or _persona_collections(s, q["persona"])
                colls = [state.store.collection(n) for n in names]
            hits = run_search(colls, state.embedder, q["question"], k=k, candidate_k=s.candidate_k)
            out[q["id"]] = [_hit_dict(h) for h in hits]
    except KbchatError as err:
        raise _fail(err) from None
    if results:
        results.write_text("".join(json.dumps({"id": i, "hits": h}, ensure_ascii=False) + "\n"
                                   for i, h in out.items()), encoding="utf-8")
    report = score(qs, out, k)
    click.echo(json.dumps(report, ensure_ascii=False) if as_json else format_table(report))


def _shared_questions(state, persona: str | None) -> list[dict]:
    """Eval questions from the approved shared records (kbchat.evaluate.shared_questions)."""
    from kbchat.evaluate import shared_questions
    from kbchat.records.database import open_database
    from kbchat.sharing.stats import language_of
    from kbchat.sharing.store import ShareStore

    try:
        records = ShareStore(open_database(state.settings)).list(persona=persona, status="approved")
    except KbchatError as err:
        raise _fail(err) from None
    return shared_questions(records, language_of)


def _persona_collections(s: Settings, persona_id: str) -> list[str]:
    """The collections of a persona's bases (the default base when the persona is unknown now)."""
    from kbchat.cli.context import published_personas
    from kbchat.knowledge import collection_name

    try:
        p = published_personas(s).get(persona_id)
    except (KbchatError, OSError):
        p = None
    return [collection_name(b, s) for b in (p.knowledge if p else ["default"])]


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--remeasure", is_flag=True, help="Measure the embedder's variants again on this CPU.")
@_data_dir_option
def doctor(as_json, remeasure, data_dir) -> None:
    """Check what kbchat runs on: CPU, embedder variant and speed, LLM endpoint, data dir, versions.
    Exit 1 if a check failed."""
    from kbchat.doctor import format_report, run

    try:
        report = run(_State(data_dir).settings, remeasure=remeasure)
    except Exception as err:  # bad settings (pydantic): one line, no traceback
        raise click.ClickException(" ".join(str(err).split())) from None
    click.echo(json.dumps(report, ensure_ascii=False, indent=2) if as_json else format_report(report))
    if not report["ok"]:
        sys.exit(1)




@main.command("sync")
@_data_dir_option
def sync_cmd(data_dir) -> None:
    """Index new and changed PDFs of the knowledge folder (KBCHAT_KNOWLEDGE_DIR) into the shared base and
    drop the removed ones, as the app does at start-up."""
    from kbchat.knowledge import sync_knowledge

    state = _State(data_dir)
    try:
        report = sync_knowledge(state.store, state.settings,
                                on_file=lambda key, status: click.echo(f"{key}: {status}"))
    except KbchatError as err:
        raise _fail(err) from None
    finally:
        state.store.close()
    click.echo(f"done: {report}")
    if report.failed:
        sys.exit(1)

for _module in (kb, shared, users, access, migrate, personas, keys):  # each holds its commands in a `commands` group
    for _cmd in _module.commands.commands.values():
        main.add_command(_cmd)

from kbchat.cli import finetune as _finetune  # noqa: E402  (kbchat finetune ...: kbchat.finetune)

for _cmd in _finetune.commands.commands.values():
    main.add_command(_cmd)

if __name__ == "__main__":
    main()
