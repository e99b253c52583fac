"""SQLite helpers shared by the catalog (store.py) and the share store (share.py)."""

from __future__ import annotations

import sqlite3
import time


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
