"""Alembic environment: kbchat runs migrations on the connection Database.migrate() hands over."""

from alembic import context

from kbchat.records.database import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic` run by hand: open the configured URL
    from sqlalchemy import create_engine

    connection = create_engine(context.config.get_main_option("sqlalchemy.url")).connect()

context.configure(connection=connection, target_metadata=metadata,
                  render_as_batch=connection.dialect.name == "sqlite")
with context.begin_transaction():
    context.run_migrations()
