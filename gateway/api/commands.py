"""``callgate api`` (the API alone, against a shared store) and ``callgate keys``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from typing import Any, TextIO

from gateway.config import Settings

log = logging.getLogger("gateway.cli")

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2


async def serve_api(
    settings: Settings, worker: int | None = None, parent: int | None = None
) -> int:
    """Serve the API (and run retention) until SIGTERM/SIGINT; no SIP, no media.

    With ``api.workers`` above 1, this process starts that many workers
    (:mod:`gateway.api.workers`) and watches them; ``worker`` is set in a worker
    (the store is migrated by then; only worker 0 runs retention), and ``parent``
    is the pid of the process that started it: a worker whose parent is gone (killed
    without a chance to stop it) stops too."""
    from gateway.api.server import ApiServer
    from gateway.app import API_GC_THRESHOLDS, settle_for_serving
    from gateway.store.engine import make_engine, migrate, refresh_statistics

    if worker is None and settings.api.workers > 1:
        from gateway.api.workers import serve_workers

        return await serve_workers(settings, settings.api.workers)
    engine = make_engine(settings.store.url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, stop.set)
    server = ApiServer(
        settings, engine, reuse_port=worker is not None, retention=worker in (None, 0)
    )
    orphaned = None
    if parent is not None:
        orphaned = asyncio.create_task(_stop_when_orphaned(parent, stop), name="callgate-parent")
    try:
        if worker is None:
            await migrate(engine)
            await refresh_statistics(engine)
        await server.start()
        settle_for_serving(API_GC_THRESHOLDS)
        every = settings.api.retention_interval_s
        log.info(
            "API ready (no SIP in this process)%s%s",
            "" if worker is None else f", worker {worker}",
            f", retention every {every:g} s" if server.retention else "",
        )
        await stop.wait()
    finally:
        if orphaned is not None:
            orphaned.cancel()
        await server.stop()
        await engine.dispose()
    return EXIT_OK


PARENT_CHECK_S = 1.0
"""How often a worker looks whether the process that started it is still there."""


async def _stop_when_orphaned(parent: int, stop: asyncio.Event) -> None:
    while os.getppid() == parent:
        await asyncio.sleep(PARENT_CHECK_S)
    log.error("the API's parent process (pid %d) is gone: this worker stops", parent)
    stop.set()


def keys_command(settings: Settings, args: Any, out: TextIO = sys.stdout) -> int:
    """create / list / revoke; a tenant not in the settings is a usage error."""
    from sqlalchemy.exc import SQLAlchemyError

    if args.keys_command == "create":
        names = [tenant.name for tenant in settings.tenants]
        if args.tenant not in names:
            print(
                f"callgate: no tenant {args.tenant!r} in the settings "
                f"(tenants: {', '.join(names) or 'none'})",
                file=sys.stderr,
            )
            return EXIT_CONFIG
    try:
        return asyncio.run(_keys(settings, args, out))
    except (OSError, SQLAlchemyError) as error:
        print(f"callgate: cannot reach the store: {error}", file=sys.stderr)
        return EXIT_FAILURE
    except ValueError as error:
        print(f"callgate: {error}", file=sys.stderr)
        return EXIT_CONFIG


async def _keys(settings: Settings, args: Any, out: TextIO) -> int:
    from gateway.store.engine import make_engine, migrate
    from gateway.store.keys import create_key, list_keys, revoke_key

    engine = make_engine(settings.store.url)
    try:
        await migrate(engine)
        if args.keys_command == "create":
            key, row = await create_key(engine, args.tenant, args.role, args.name)
            out.write(
                f"{key}\n"
                f"  id {row['id']}, tenant {row['tenant']}, role {row['role']}: "
                "shown once, keep it now (only its hash is stored)\n"
            )
            return EXIT_OK
        if args.keys_command == "list":
            rows = await list_keys(engine, args.tenant)
            if args.json:
                for row in rows:
                    out.write(json.dumps(row, default=str, sort_keys=True) + "\n")
            elif not rows:
                out.write("no API keys\n")
            for row in rows if not args.json else ():
                state = f"revoked {row['revoked_at']:%Y-%m-%d}" if row["revoked_at"] else "active"
                out.write(
                    f"{row['prefix']}...  {row['id']}  {row['tenant']}  {row['role']}  "
                    f"{row['name'] or '-'}  created {row['created_at']:%Y-%m-%d}  {state}\n"
                )
            return EXIT_OK
        count = await revoke_key(engine, args.key)
        if not count:
            print(f"callgate: no active key {args.key!r}", file=sys.stderr)
            return EXIT_FAILURE
        out.write(f"revoked {args.key}\n")
        return EXIT_OK
    finally:
        await engine.dispose()
