"""The one database (SQLite in the data dir, or PostgreSQL for replicas): the engine and its Alembic
migrations (database.py, migrations/), accounts and sign-in limits (accounts.py), chat history with its
uploads (history.py). Knows nothing of passages or the UI.
"""

from __future__ import annotations

# name -> the module that owns it
_PUBLIC = {
    "Database": "kbchat.records.database",
    "open_database": "kbchat.records.database",
    "close_databases": "kbchat.records.database",
    "database_url": "kbchat.records.database",
    "Accounts": "kbchat.records.accounts",
    "Account": "kbchat.records.accounts",
    "AccountError": "kbchat.records.accounts",
    "LOCAL_USER": "kbchat.records.accounts",
    "History": "kbchat.records.history",
}


def __getattr__(name: str):
    """Import the owning module on first use, so importing the package loads nothing heavy."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = sorted(_PUBLIC)
