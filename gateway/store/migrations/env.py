"""Alembic environment for the call-record store.

:func:`gateway.store.engine.migrate` passes its own connection in
``config.attributes["connection"]``; the ``alembic`` command line (with
``migrations/alembic.ini``) opens one from ``-x url=...`` or ``sqlalchemy.url``.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from gateway.store.engine import make_engine
from gateway.store.models import Base, in_models

config = context.config
target_metadata = Base.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_object=in_models,
    )


def _run(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


def _command_line_url() -> str:
    """``-x url=...`` if given, else ``sqlalchemy.url`` of the ini file."""
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("no database: pass -x url=... or set sqlalchemy.url in alembic.ini")
    return url


def run_migrations_offline() -> None:
    """Emit the migration SQL for the database URL without connecting."""
    context.configure(
        url=_command_line_url(),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Migrate through the given connection, or one opened from ``sqlalchemy.url``."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    asyncio.run(_run_with_own_engine(_command_line_url()))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
