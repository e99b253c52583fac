"""`kbchat migrate`: copy an embedded deployment into PostgreSQL (kbchat.search.migrate does the copy)."""

from __future__ import annotations

import click

from kbchat.cli.context import data_dir_option
from kbchat.errors import KbchatError
from kbchat.search.migrate import migrate


@click.group()
def commands() -> None:
    """Holder of this module's commands (kbchat.cli.main adds them to `kbchat`)."""


@commands.command("migrate")
@click.option("--to", "to_url", required=True, metavar="URL",
              help="An empty PostgreSQL database (postgresql://user:password@host/db) with pgvector.")
@data_dir_option
def migrate_cmd(to_url, data_dir) -> None:
    """Copy an embedded data dir (accounts, chats, shared Q&A, documents, passages and their vectors,
    without re-embedding) into PostgreSQL and verify the counts. Then set KBCHAT_DATABASE_URL to it."""
    from kbchat.settings import Settings

    s = Settings(**({"data_dir": data_dir} if data_dir else {}))
    if s.database_url is not None:  # the source is the data dir's own SQLite database
        s = s.model_copy(update={"database_url": None})
    try:
        report = migrate(s, to_url, on_line=click.echo)
    except KbchatError as err:
        raise click.ClickException(str(err)) from None
    n = sum(p for _, p in report.collections.values())
    click.echo(f"verified: {sum(report.tables.values())} rows, {len(report.collections)} collection(s), "
               f"{n} passages with their vectors. Set KBCHAT_DATABASE_URL to the new database.")
