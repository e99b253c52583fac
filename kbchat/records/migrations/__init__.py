"""Alembic migrations of the kbchat database (run by kbchat.records.database.Database.migrate)."""
