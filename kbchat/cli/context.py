"""What every command shares: the one --data-dir option, the settings and heavy objects a command opens
lazily (State), the CLI user's name, and domain errors turned into one line and exit 1."""

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


__all__ = ["State", "audit", "cli_user", "data_dir_option", "fail", "settings_for"]
