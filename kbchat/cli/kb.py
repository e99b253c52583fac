"""The ``kbchat kb`` commands (list, docs, create, add, remove) that kbchat.cli registers."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any, Callable

import click

from kbchat.errors import KbchatError


def cli_user() -> str:
    """Who a CLI change is recorded under: ``cli:<login name>``."""
    try:
        return "cli:" + getpass.getuser()
    except Exception:  # no login name (some containers)
        return "cli"


def register_cli(group: click.Group, state_cls: Callable[[Path | None], Any], data_dir_option) -> None:
    """Add the ``kb`` group to ``group``; ``state_cls(data_dir)`` gives settings and store (kbchat.cli._State)."""

    def fail(err: Exception) -> click.ClickException:
        return click.ClickException(str(err))

    @group.group("kb")
    def kb_group() -> None:
        """Knowledge bases: knowledge/ is the base 'default', each sub-folder knowledge/NAME/ the base NAME."""

    @kb_group.command("list")
    @data_dir_option
    def kb_list(data_dir) -> None:
        """Bases with their description, documents and passages."""
        from kbchat.knowledge import list_bases

        state = state_cls(data_dir)
        try:
            rows = []
            for kb in list_bases(state.settings):
                coll = state.store.collection(kb.collection)
                rows.append((kb, len(coll.documents()), len(coll)))
        except KbchatError as err:
            raise fail(err) from None
        finally:
            state.store.close()
        for kb, docs, passages in rows:
            click.echo(f"{kb.name}\t{docs} documents\t{passages} passages\t{kb.description or '-'}")
        click.echo(f"{len(rows)} knowledge base(s) in {state.settings.knowledge_dir}", err=True)

    @kb_group.command("docs")
    @click.argument("name")
    @data_dir_option
    def kb_docs(name, data_dir) -> None:
        """The documents of base NAME: file, pages, passages, added by, when, key."""
        from kbchat.knowledge import added_by_label, get_base, when

        state = state_cls(data_dir)
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
        from kbchat.knowledge import create_base

        state = state_cls(data_dir)
        try:
            kb = create_base(state.settings, name, description)
        except KbchatError as err:
            raise fail(err) from None
        click.echo(f"created knowledge base '{kb.name}' ({kb.folder}); bind a persona to it with "
                   f"`knowledge: [{kb.name}]`")

    @kb_group.command("remove")
    @click.argument("name")
    @click.argument("file")
    @data_dir_option
    def kb_remove(name, file, data_dir) -> None:
        """Remove document FILE (its file name or key, see `kb docs`) from base NAME."""
        from kbchat.knowledge import remove_document

        state = state_cls(data_dir)
        try:
            doc = remove_document(state.store, state.settings, name, file)
        except KbchatError as err:
            raise fail(err) from None
        finally:
            state.store.close()
        click.echo(f"removed {doc.source} ({doc.passages} passages) from '{name}'")


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


__all__ = ["cli_user", "ingest_target", "register_cli"]
