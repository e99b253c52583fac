"""The ``kbchat kb`` commands (list, docs, create, remove, access) and the target of `kbchat ingest --kb`.
Changes go to the audit log (kb.create, kb.remove, kb.access)."""

from __future__ import annotations

from typing import Any

import click

from kbchat.cli.context import State, cli_user, data_dir_option, fail
from kbchat.errors import KbchatError


@click.group()
def commands() -> None:
    """Holder of this module's commands (kbchat.cli.main adds them to `kbchat`)."""


@commands.group("kb")
def kb_group() -> None:
    """Knowledge bases: knowledge/ is the base 'default', each sub-folder knowledge/NAME/ the base NAME."""


@kb_group.command("list")
@data_dir_option
def kb_list(data_dir) -> None:
    """Bases with their documents, passages, description and who may read and manage them."""
    from kbchat.knowledge import list_bases

    state = State(data_dir)
    try:
        rows = []
        access = state.access.all_access()
        for kb in list_bases(state.settings):
            coll = state.store.collection(kb.collection)
            rows.append((kb, len(coll.documents()), len(coll), access.get(kb.name)))
    except KbchatError as err:
        raise fail(err) from None
    finally:
        state.store.close()
    for kb, docs, passages, acc in rows:
        read = acc.describe() if acc else "everyone"
        manage = ", ".join(acc.manage) if acc and acc.manage else "admins"
        click.echo(f"{kb.name}\t{docs} documents\t{passages} passages\t{kb.description or '-'}\t"
                   f"read: {read}\tmanage: {manage}")
    click.echo(f"{len(rows)} knowledge base(s) in {state.settings.knowledge_dir}", err=True)


@kb_group.command("docs")
@click.argument("name")
@data_dir_option
def kb_docs(name, data_dir) -> None:
    """The documents of base NAME: file, pages, passages, added by, when, key."""
    from kbchat.knowledge import added_by_label, get_base, when

    state = State(data_dir)
    try:
        kb = get_base(state.settings, name)
        docs = state.store.collection(kb.collection).documents()
    except KbchatError as err:
        raise fail(err) from None
    finally:
        state.store.close()
    for d in docs:
        click.echo(f"{d.source}\t{d.pages} pages\t{d.passages} passages\t{added_by_label(d)}\t"
                   f"{when(d.added_at)}\t{d.source_key}")
    click.echo(f"{len(docs)} document(s) in '{name}'", err=True)


@kb_group.command("create")
@click.argument("name")
@click.option("--description", default="", help="One line saying what the base holds (its README.md).")
@data_dir_option
def kb_create(name, description, data_dir) -> None:
    """Create base NAME: the folder knowledge/NAME/ with a README.md holding the description."""
    from kbchat.cli.context import audit
    from kbchat.knowledge import create_base

    state = State(data_dir)
    try:
        kb = create_base(state.settings, name, description)
    except KbchatError as err:
        raise fail(err) from None
    audit(state.access.db, "kb.create", kb.name, {"description": description} if description else None)
    click.echo(f"created knowledge base '{kb.name}' ({kb.folder}); bind a persona to it with "
               f"`knowledge: [{kb.name}]`")


@kb_group.command("remove")
@click.argument("name")
@click.argument("file")
@data_dir_option
def kb_remove(name, file, data_dir) -> None:
    """Remove document FILE (its file name or key, see `kb docs`) from base NAME."""
    from kbchat.cli.context import audit
    from kbchat.knowledge import remove_document

    state = State(data_dir)
    try:
        doc = remove_document(state.store, state.settings, name, file)
    except KbchatError as err:
        raise fail(err) from None
    finally:
        state.store.close()
    audit(state.access.db, "kb.remove", name, {"document": doc.source, "key": doc.source_key,
                                               "passages": doc.passages})
    click.echo(f"removed {doc.source} ({doc.passages} passages) from '{name}'")


@kb_group.command("access")
@click.argument("name")
@click.option("--read", "read", default=None, metavar="WHO",
              help="Who may read it: 'everyone' (the default of every base), or groups and users, "
                   "comma-separated (hr,clinic-a,user:alice); an empty value means admins only.")
@click.option("--manage", "manage", default=None, metavar="WHO",
              help="Who may add and remove its documents besides admins: groups and users, comma-separated "
                   "(empty: admins only).")
@data_dir_option
def kb_access(name, read, manage, data_dir) -> None:
    """Show or set who may read and manage base NAME. Applies to the next question on every replica."""
    from kbchat.cli.context import audit
    from kbchat.knowledge import get_base
    from kbchat.records.access import parse_principals

    state = State(data_dir)
    try:
        get_base(state.settings, name)
        if read is not None or manage is not None:
            acc = state.access.set_base_access(
                name, read=parse_principals(read) if read is not None and read.strip() else
                ("unchanged" if read is None else []),
                manage=parse_principals(manage) or [] if manage is not None else "unchanged",
                by=cli_user())
            audit(state.access.db, "kb.access", name, {"read": acc.describe(), "manage": list(acc.manage)})
        else:
            acc = state.access.base_access(name)
    except KbchatError as err:
        raise fail(err) from None
    click.echo(f"{name}: read: {acc.describe()}; manage: {', '.join(acc.manage) or 'admins'}")


def ingest_target(settings: Any, kb: str | None, collection: str | None) -> str:
    """The collection `kbchat ingest` writes to: --kb NAME (a known base), --collection, or the default base."""
    from kbchat.knowledge import get_base

    if kb and collection:
        raise click.UsageError("give --kb or --collection, not both")
    if kb:
        try:
            return get_base(settings, kb).collection
        except KbchatError as err:
            raise click.ClickException(str(err)) from None
    return collection or settings.shared_collection


__all__ = ["commands", "ingest_target"]
