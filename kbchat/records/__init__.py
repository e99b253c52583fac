"""The one database (SQLite in the data dir, or PostgreSQL for replicas): the engine and its Alembic
migrations (database.py, migrations/), accounts and sign-in limits (accounts.py), chat history with its
uploads (history.py), personas with their versions (personas.py), API keys (keys.py). Knows nothing of passages or
the UI.
"""

from __future__ import annotations

from kbchat import lazy_face

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
    "ApiKeys": "kbchat.records.keys",
    "ApiKey": "kbchat.records.keys",
    "PersonaRecords": "kbchat.records.personas",
    "PersonaCache": "kbchat.records.personas",
}

__getattr__ = lazy_face(__name__, _PUBLIC)


__all__ = sorted(_PUBLIC)
