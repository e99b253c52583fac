"""kbchat's one SQL database: accounts, chat history (threads, steps, elements, feedback), answers,
thread uploads and the shared Q&A records, behind one SQLAlchemy URL (``KBCHAT_DATABASE_URL``).

The default is a SQLite file in the data dir (WAL). SQL stays portable (SQLAlchemy Core, JSON columns,
no SQLite-only statements) so PostgreSQL can hold the same schema. The schema is created and upgraded
by Alembic migrations (``kbchat/records/migrations``) when a Database opens, under a lock so that two processes
opening one new database do not both create it.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from sqlalchemy import (
    JSON,
    Column,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import Connection, make_url

from kbchat.errors import KbchatError

log = logging.getLogger("kbchat")

DB_FILE = "kbchat.sqlite"
MIGRATIONS = Path(__file__).with_name("migrations")

metadata = MetaData()

# One row per account. password_hash is NULL for users who sign in through a proxy header, OAuth or
# the single-user local mode; login by password is on as soon as one row has a hash.
users = Table(
    "users", metadata,
    Column("id", String(36), primary_key=True),
    Column("identifier", String(255), nullable=False, unique=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", Text),
    Column("source", String(16), nullable=False),     # password | header | oauth | local
    Column("display_name", String(255)),
    Column("created_at", String(40), nullable=False),
    Column("disabled_at", String(40)),                # set: the account may not sign in (migration 0008)
)

threads = Table(
    "threads", metadata,
    Column("id", String(64), primary_key=True),
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    Column("name", Text),
    Column("user_id", String(36)),
    Column("user_identifier", String(255)),
    Column("tags", JSON),
    Column("meta", JSON),
    Index("threads_by_user", "user_identifier", "updated_at"),
)

# Steps and elements keep Chainlit's whole dict as JSON beside the columns we query: a key Chainlit
# adds in a later version is stored too, instead of failing an INSERT (the stock layer's silent loss).
steps = Table(
    "steps", metadata,
    Column("id", String(64), primary_key=True),
    Column("thread_id", String(64), nullable=False),
    Column("parent_id", String(64)),
    Column("type", String(40)),
    Column("created_at", String(40)),
    Column("seq", Integer, nullable=False),
    Column("data", JSON, nullable=False),
    Index("steps_by_thread", "thread_id", "seq"),
)

elements = Table(
    "elements", metadata,
    Column("id", String(64), primary_key=True),
    Column("thread_id", String(64)),
    Column("for_id", String(64)),
    Column("data", JSON, nullable=False),
    Index("elements_by_thread", "thread_id"),
)

feedbacks = Table(
    "feedbacks", metadata,
    Column("id", String(64), primary_key=True),
    Column("for_id", String(64), nullable=False, unique=True),
    Column("thread_id", String(64)),
    Column("value", Integer, nullable=False),
    Column("comment", Text),
    Index("feedbacks_by_thread", "thread_id"),
)

# What an answer was made of (question, answer text, reasoning, sources, persona, settings): the
# follow-up history and the Share button of a resumed thread are rebuilt from it.
answers = Table(
    "answers", metadata,
    Column("id", String(64), primary_key=True),        # the answer message (step) id
    Column("thread_id", String(64), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("record", JSON, nullable=False),
    Index("answers_by_thread", "thread_id", "created_at"),
)

# A chat's uploaded files: they belong to the thread and its owner.
uploads = Table(
    "uploads", metadata,
    Column("thread_id", String(64), primary_key=True),
    Column("doc_hash", String(64), primary_key=True),
    Column("name", Text, nullable=False),
    Column("path", Text, nullable=False),
    Column("owner", String(255)),
    Column("created_at", String(40), nullable=False),
    Index("uploads_by_owner", "owner"),
)

shared = Table(
    "shared", metadata,
    Column("id", String(64), primary_key=True),
    Column("answer_key", String(128), nullable=False, unique=True),
    Column("shared_at", String(40), nullable=False),
    Column("persona_id", String(128), nullable=False, server_default=""),
    Column("shared_by", String(255)),
    Column("record", Text, nullable=False),            # the SharedQA as JSON, exactly as exported
    # review (migration 0002): pending | approved | rejected; an admin's edit kept beside the original
    Column("status", String(16), nullable=False, server_default="pending"),
    Column("origin", String(16), nullable=False, server_default="share"),   # share | import
    Column("source", Text),                            # an import's --source name or file name
    Column("reviewed_by", String(255)),
    Column("reviewed_at", String(40)),
    Column("edited_answer", Text),
    Column("qa_hash", String(64)),                     # question + input + answer: exact duplicates
    Index("shared_by_time", "shared_at"),
    Index("shared_by_status", "status", "shared_at"),
    Index("shared_by_hash", "qa_hash"),
)

# Access control (migration 0004). A user's groups: set by an admin (source "admin") or brought by the
# identity provider at each sign-in (source "idp", replaced then); one never removes the other.
groups = Table(
    "groups", metadata,
    Column("name", String(64), primary_key=True),
    Column("quota_per_day", Integer),                  # questions a member may ask per UTC day; NULL: default
    Column("created_at", String(40), nullable=False),
)

memberships = Table(
    "memberships", metadata,
    Column("user_identifier", String(255), primary_key=True),
    Column("group_name", String(64), primary_key=True),
    Column("source", String(16), primary_key=True),   # admin | idp
    Index("memberships_by_group", "group_name"),
)

# Who may read / manage a knowledge base. read NULL: everyone signed in (the default); a JSON list of
# principals ("group:NAME", "user:NAME") otherwise, [] meaning admins only. manage: besides admins.
kb_access = Table(
    "kb_access", metadata,
    Column("base", String(64), primary_key=True),
    Column("read", JSON),
    Column("manage", JSON),
    Column("updated_at", String(40), nullable=False),
    Column("updated_by", String(255)),
)

# The audit log: appended by the app and the CLI, never updated; no password and no passage text.
audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(40), nullable=False),
    Column("user_identifier", String(255)),
    Column("action", String(64), nullable=False),
    Column("target", Text),
    Column("detail", JSON),
    Column("address", String(64)),
    Index("audit_by_time", "at"),
    Index("audit_by_user", "user_identifier", "at"),
    Index("audit_by_action", "action", "at"),
)

# Questions asked per user and UTC day (the quota), counted in the database so every replica agrees.
question_counts = Table(
    "question_counts", metadata,
    Column("user_identifier", String(255), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("n", Integer, nullable=False),
)

# API keys (migration 0005): only the SHA-256 of a key is stored; the key itself is shown once.
api_keys = Table(
    "api_keys", metadata,
    Column("id", String(16), primary_key=True),        # public id (list, revoke), never the key
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),      # the key's first characters, to recognise it
    Column("user_identifier", String(255), nullable=False),
    Column("label", Text),
    Column("scopes", JSON, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(255)),
    Column("expires_at", String(40)),
    Column("revoked_at", String(40)),
    Column("last_used_at", String(40)),
    Index("api_keys_by_user", "user_identifier"),
)

# Personas (migration 0006): the current record of each (its YAML fields as JSON, draft | published) and
# every version of it, appended on each change (create, update, import, seed, restore, publish, delete).
personas = Table(
    "personas", metadata,
    Column("id", String(64), primary_key=True),
    Column("data", JSON, nullable=False),
    Column("status", String(16), nullable=False, server_default="published"),   # draft | published
    Column("version", Integer, nullable=False),
    Column("updated_at", String(40), nullable=False),
    Column("updated_by", String(255)),
)

persona_versions = Table(
    "persona_versions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),  # max(id): the personas' revision
    Column("persona_id", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("action", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("data", JSON, nullable=False),
    Column("changed", JSON),                           # the top-level fields changed from the version before
    Column("changed_by", String(255)),
    Column("changed_at", String(40), nullable=False),
    Index("persona_versions_by_persona", "persona_id", "version"),
)

# Key/value facts about the database itself (e.g. that a legacy shared.sqlite was imported).
kv = Table(
    "kbchat_meta", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)


def now_iso() -> str:
    """UTC now as a sortable ISO string with microseconds."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def default_url(data_dir: Path) -> str:
    """The SQLite file in the data dir."""
    return f"sqlite:///{Path(data_dir).resolve() / DB_FILE}"


def redact_url(url: str) -> str:
    """The URL with its password hidden, for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable database URL>"


class Database:
    """An engine on the kbchat database, migrated to the newest schema when opened."""

    def __init__(self, url: str, *, migrate: bool = True):
        self.url = url
        try:
            u = make_url(url)
        except Exception as err:
            raise KbchatError(f"KBCHAT_DATABASE_URL is not a database URL: {err}") from None
        if u.drivername == "postgresql":  # plain postgresql://: psycopg 3 (the `postgresql` extra), not psycopg2
            u = u.set(drivername="postgresql+psycopg")
            url = self.url = u.render_as_string(hide_password=False)
        self.is_sqlite = u.get_backend_name() == "sqlite"
        kw: dict[str, Any] = {"pool_pre_ping": not self.is_sqlite, "future": True}
        if self.is_sqlite:
            if u.database and u.database != ":memory:":
                Path(u.database).parent.mkdir(parents=True, exist_ok=True)
            kw["connect_args"] = {"timeout": 30, "check_same_thread": False}
        try:
            self.engine: Engine = create_engine(url, **kw)
        except Exception as err:
            raise KbchatError(f"cannot use database {redact_url(url)}: {err}") from None
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        if migrate:
            self.migrate()

    def migrate(self) -> None:
        """Create or upgrade the schema to the newest migration (idempotent)."""
        from alembic import command
        from alembic.config import Config

        logging.getLogger("alembic").setLevel(logging.WARNING)
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self._migration_lock():
            try:
                with self.engine.begin() as conn:
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "head")
            except Exception as err:
                raise KbchatError(f"cannot open database {redact_url(self.url)}: {err}") from None

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """One migrating process at a time: a file lock beside a SQLite file, an advisory lock on
        PostgreSQL."""
        u = make_url(self.url)
        if self.is_sqlite and u.database and u.database != ":memory:":
            import fcntl

            with open(str(u.database) + ".lock", "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
        elif u.get_backend_name() == "postgresql":
            with self.engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(7312025)"))
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(7312025)"))
                    conn.commit()
        else:
            yield

    def begin(self) -> contextlib.AbstractContextManager[Connection]:
        """A connection in a transaction, committed at the end of the block."""
        return self.engine.begin()

    def connect(self) -> contextlib.AbstractContextManager[Connection]:
        """A connection for reads."""
        return self.engine.connect()

    def get_meta(self, key: str) -> str | None:
        """A value of the kbchat_meta table."""
        with self.connect() as c:
            row = c.execute(kv.select().where(kv.c.key == key)).mappings().first()
        return row["value"] if row else None

    def set_meta(self, conn: Connection, key: str, value: str) -> None:
        """Set a kbchat_meta value inside the caller's transaction."""
        conn.execute(kv.delete().where(kv.c.key == key))
        conn.execute(kv.insert().values(key=key, value=value))

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record) -> None:
    enable_wal(dbapi_conn)
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout = 30000")
    cur.execute("PRAGMA synchronous = NORMAL")
    cur.close()


_OPEN: dict[str, Database] = {}
_OPEN_LOCK = threading.Lock()


def database_url(settings: Any) -> str:
    """KBCHAT_DATABASE_URL, or the SQLite file in the settings' data dir."""
    url = getattr(settings, "database_url", None)
    if url is not None and hasattr(url, "get_secret_value"):
        url = url.get_secret_value()
    return url or default_url(settings.data_dir)


def open_database(settings: Any) -> Database:
    """The process's Database for these settings (one engine and pool per URL), migrated, with a
    legacy ``shared.sqlite`` of the data dir imported once."""
    url = database_url(settings)
    with _OPEN_LOCK:
        db = _OPEN.get(url)
        if db is None:
            db = Database(url)
            import_legacy_shared(db, Path(settings.data_dir))
            _OPEN[url] = db
        return db


def close_databases() -> None:
    """Dispose of every engine open_database made (tests, CLI exit)."""
    with _OPEN_LOCK:
        for db in _OPEN.values():
            db.close()
        _OPEN.clear()


LEGACY_SHARED = "shared.sqlite"


def import_legacy_shared(db: Database, data_dir: Path) -> int:
    """Copy the records of a data dir's ``shared.sqlite`` (kbchat before the one database) into the
    shared table, once. The old file is kept, renamed ``shared.sqlite.imported``. Returns rows copied."""
    old = Path(data_dir) / LEGACY_SHARED
    if not old.is_file():
        return 0
    src = sqlite3.connect(f"file:{old}?mode=ro", uri=True, timeout=30)
    try:
        rows = src.execute("SELECT id, answer_key, shared_at, persona_id, user, record FROM shared").fetchall()
    except sqlite3.DatabaseError as err:
        src.close()
        raise KbchatError(f"cannot read the old share store {old}: {err}") from None
    src.close()
    copied = 0
    with db.begin() as conn:
        have = {r[0] for r in conn.execute(shared.select().with_only_columns(shared.c.answer_key))}
        for id_, key, at, persona, user, record in rows:
            if key in have:
                continue
            conn.execute(shared.insert().values(id=id_, answer_key=key, shared_at=at, persona_id=persona or "",
                                                shared_by=user, record=record))
            copied += 1
        db.set_meta(conn, "legacy_shared_imported", f"{now_iso()} {len(rows)} rows from {old}")
    # Renamed only after the commit: a crash before it leaves the old file to import again.
    old.rename(old.with_name(LEGACY_SHARED + ".imported"))
    for suffix in ("-wal", "-shm"):
        side = old.with_name(LEGACY_SHARED + suffix)
        if side.exists():
            with contextlib.suppress(OSError):
                side.unlink()
    log.info("imported %d shared Q&A records from %s", copied, old)
    return copied


__all__ = [
    "Database", "answers", "close_databases", "database_url", "default_url", "elements", "feedbacks",
    "import_legacy_shared", "kv", "metadata", "now_iso", "open_database", "redact_url", "shared",
    "steps", "threads", "uploads", "users",
]


def drop_principal(conn: Connection, principal: str) -> list[str]:
    """Take ``principal`` ("group:NAME" / "user:NAME") out of every base's read and manage lists, in the
    caller's transaction; a read list left empty means admins only (never everybody). The bases changed."""
    changed = []
    for row in conn.execute(kb_access.select()).mappings().all():
        read, manage = row["read"], row["manage"] or []
        if principal in (read or []) or principal in manage:
            conn.execute(kb_access.update().where(kb_access.c.base == row["base"]).values(
                read=[x for x in read if x != principal] if read is not None else None,
                manage=[x for x in manage if x != principal], updated_at=now_iso()))
            changed.append(row["base"])
    return changed


def enable_wal(con: sqlite3.Connection, timeout: float = 30.0) -> None:
    """Put the database in WAL mode, waiting up to ``timeout`` seconds for other connections.

    Switching a new database to WAL needs an exclusive lock, and SQLite can answer "database is
    locked" at once, without its busy handler, when another process is opening the same file (seen
    in CI: two processes creating one share store). So the pragma is retried until the deadline.
    """
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        try:
            con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
