"""Alembic migrations of the kbchat database (run by kbchat.database.Database.migrate)."""
