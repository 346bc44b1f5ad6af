"""Alembic environment for the state database.

The URL comes from the caller (`reconciler db upgrade` passes an open connection), else from
RECONCILER_STATE_URL, else the default local SQLite file.
"""

from __future__ import annotations

import os

from sqlalchemy import create_engine

from alembic import context
from reconciler.adapters.state.schema import metadata
from reconciler.config.settings import StateSettings

config = context.config


def run_migrations() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=metadata,
                          render_as_batch=connection.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
        return
    url = os.environ.get("RECONCILER_STATE_URL", StateSettings().url)
    engine = create_engine(url)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata,
                          render_as_batch=conn.dialect.name == "sqlite")
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    context.configure(url=os.environ.get("RECONCILER_STATE_URL", StateSettings().url),
                      target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations()
