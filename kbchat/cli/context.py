"""What every command shares: the one --data-dir option, the settings and heavy objects a command opens
lazily (State), the CLI user's name, --as USER (whose access a command applies), and domain errors turned
into one line and exit 1."""

from __future__ import annotations

import getpass
from pathlib import Path

import click

from kbchat.settings import Settings


class State:
    """Settings and heavy objects, created once per command and only when needed."""

    def __init__(self, data_dir: Path | None):
        overrides = {"data_dir": data_dir} if data_dir else {}
        self.settings = Settings(**overrides)
        self._store = None
        self._embedder = None

    @property
    def embedder(self):
        if self._embedder is None:
            from kbchat.search.loaders import load_embedder

            self._embedder = load_embedder(self.settings)
        return self._embedder

    @property
    def reranker(self):
        """The configured reranker (model server or local CrossEncoder), or None."""
        if not hasattr(self, "_reranker"):
            from kbchat.search.loaders import load_reranker

            self._reranker = load_reranker(self.settings)
        return self._reranker

    @property
    def store(self):
        if self._store is None:
            from kbchat.search.loaders import open_store

            self._store = open_store(self.settings, self.embedder)
        return self._store

    @property
    def access(self):
        """Groups, base access, audit log and quotas in the settings' database."""
        if getattr(self, "_access", None) is None:
            from kbchat.records.access import Access
            from kbchat.records.database import open_database

            self._access = Access(open_database(self.settings))
        return self._access

    def collections(self, names: tuple[str, ...]):
        return [self.store.collection(n) for n in (names or (self.settings.shared_collection,))]

    def reader(self, as_user: str | None):
        """Whose access applies: ``--as USER`` as the database has them now, else the operator (reads
        everything). An unknown user is one line and exit 1."""
        from kbchat.knowledge import OPERATOR, Reader
        from kbchat.records.accounts import Accounts

        if as_user is None:
            return OPERATOR
        acct = Accounts(self.access.db).get(as_user)
        if acct is None:
            raise click.ClickException(f"--as: no user named {as_user}")
        return Reader(acct.identifier, acct.is_admin)

    def readable_collections(self, reader, names: list[str]) -> list[str]:
        """The store collections of ``names`` that ``reader`` may read, in order; each one left out is one
        line on stderr ("bob may not read knowledge base hr: left out"); none left is exit 1."""
        from kbchat.knowledge import OPERATOR, base_of_collection, may_read_collection
        from kbchat.records.history import History

        if reader is OPERATOR:
            return names
        owner = History(self.access.db).thread_owner
        ok = []
        for name in names:
            if may_read_collection(self.settings, self.access, reader, name, thread_owner=owner):
                ok.append(name)
                continue
            base = base_of_collection(name, self.settings)
            what = f"knowledge base {base}" if base is not None else f"collection {name}"
            click.echo(f"{reader.name} may not read {what}: left out", err=True)
        if not ok:
            raise click.ClickException(f"nothing left to search: {reader.name} may read none of "
                                       f"{', '.join(names)}")
        return ok


def as_option(f):
    """--as USER: apply that user's access (for admins and scripts); without it the CLI reads everything."""
    return click.option("--as", "as_user", default=None, metavar="USER",
                        help="Apply USER's access: the knowledge bases USER may not read are left out "
                             "(default: the operator, who reads everything).")(f)


def data_dir_option(f):
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        envvar="KBCHAT_DATA_DIR",
        help="Data folder (default .kbchat/, or KBCHAT_DATA_DIR): indexes, uploads and, unless "
        "KBCHAT_DATABASE_URL names another, the database.",
    )(f)


def fail(err: Exception) -> click.ClickException:
    return click.ClickException(str(err))


def settings_for(data_dir: Path | None) -> Settings:
    """Settings with --data-dir applied; a bad setting is one line, not a traceback."""
    try:
        return Settings(**({"data_dir": data_dir} if data_dir else {}))
    except Exception as err:  # pydantic ValidationError: one line
        raise click.ClickException(" ".join(str(err).split())) from None


def cli_user() -> str:
    """Who runs the CLI, as recorded in added_by / reviewed_by: "cli:<login>"."""
    try:
        return "cli:" + getpass.getuser()
    except Exception:
        return "cli"


def audit(db, action: str, target: str | None = None, detail: dict | None = None) -> None:
    """Write one line to the audit log as the CLI user (address "cli")."""
    from kbchat.records.access import Access

    Access(db).record(action, cli_user(), target, detail, address="cli")


def persona_records(settings: Settings):
    """The personas of the settings' database (seeded from the personas folder when none was ever stored,
    as the app does on its first start)."""
    from kbchat.records.database import open_database
    from kbchat.records.personas import PersonaRecords

    records = PersonaRecords(open_database(settings))
    records.seed(settings.personas_dir)
    return records


def persona_catalog(settings: Settings):
    """What the chat offers now: the working published personas (default first) and the broken ones."""
    from kbchat.knowledge import base_names

    return persona_records(settings).catalog(base_names(settings))


def published_personas(settings: Settings) -> dict:
    """Every published persona that validates (also one naming a missing base), default first: for the
    system prompts of records and datasets."""
    from kbchat.personas import default_first

    return default_first({r.id: r.persona for r in persona_records(settings).records()
                          if r.status == "published" and r.persona is not None})


def pick_persona(catalog, persona_id: str):
    """``persona_id`` from the catalog; an unknown or broken one is one line (the broken one with why)."""
    if persona_id in catalog.personas:
        return catalog.personas[persona_id]
    if persona_id in catalog.broken:
        raise click.ClickException(f"persona '{persona_id}' cannot be used: {catalog.broken[persona_id]}")
    raise click.ClickException(f"unknown persona '{persona_id}'; known: {', '.join(catalog.personas) or 'none'}")


__all__ = ["State", "as_option", "audit", "cli_user", "data_dir_option", "fail", "persona_catalog", "persona_records",
           "pick_persona", "published_personas", "settings_for"]
