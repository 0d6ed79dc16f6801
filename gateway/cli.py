"""The ``callgate`` command: run the gateway (or its API alone), check a configuration,
list calls, manage API keys, a demo.

Exit status: 0 success, 1 a runtime failure (a socket that cannot be bound,
a store that cannot be read), 2 a configuration or usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from gateway.config import VERSION, ConfigError, Settings, config_path, load_settings
from gateway.logs import setup_logging

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2
MAX_API_WORKERS = 64
"""The most ``--workers`` of ``callgate api`` (``api.workers`` has the same bound)."""

log = logging.getLogger("gateway.cli")

TABLE_COLUMNS = (
    "started",
    "tenant",
    "direction",
    "from",
    "to",
    "duration",
    "disposition",
    "status",
    "hangup_by",
    "consent",
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="callgate",
        description="Call-recording privacy gateway: a SIP B2BUA between a PBX and its trunk.",
    )
    parser.add_argument("--version", action="version", version=f"callgate {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    config_help = "settings file (default: $CALLGATE_CONFIG, else the embedded config/gateway.toml)"

    run = commands.add_parser("run", help="run the gateway until SIGTERM or SIGINT")
    run.add_argument("--config", metavar="FILE", help=config_help)
    run.set_defaults(handler=_run)

    check = commands.add_parser("check-config", help="validate a settings file and summarise it")
    check.add_argument("--config", metavar="FILE", help=config_help)
    check.set_defaults(handler=_check_config)

    calls = commands.add_parser("calls", help="list the latest call records, newest first")
    calls.add_argument("--config", metavar="FILE", help=config_help)
    calls.add_argument("--json", action="store_true", help="one JSON object per line")
    calls.add_argument(
        "--limit", type=_positive_int, default=20, metavar="N", help="at most N calls (20)"
    )
    calls.add_argument("--tenant", metavar="NAME", help="only this tenant's calls")
    calls.set_defaults(handler=_calls)

    api = commands.add_parser(
        "api", help="serve the HTTP API alone (no SIP), against the configured store"
    )
    api.add_argument("--config", metavar="FILE", help=config_help)
    api.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="processes serving the API, one core each (api.workers; 1)",
    )
    api.set_defaults(handler=_api)

    keys = commands.add_parser("keys", help="create, list and revoke the API's bearer keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = key_commands.add_parser("create", help="make a key; it is printed once")
    create.add_argument("--tenant", required=True, metavar="NAME", help="the key's tenant")
    create.add_argument(
        "--role",
        choices=("reader", "admin"),
        default="reader",
        help="reader: read calls, stats, policy; admin: also change the policy, control "
        "capture, export and erase a data subject (default reader)",
    )
    create.add_argument("--name", metavar="TEXT", help="what the key is for, shown in listings")
    listing = key_commands.add_parser("list", help="every key (never the key itself)")
    listing.add_argument("--tenant", metavar="NAME", help="only this tenant's keys")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")
    revoke = key_commands.add_parser("revoke", help="revoke a key by its id or prefix")
    revoke.add_argument("key", metavar="ID_OR_PREFIX")
    for sub in (create, listing, revoke):
        sub.add_argument("--config", metavar="FILE", help=config_help)
    keys.set_defaults(handler=_keys)

    demo = commands.add_parser(
        "demo",
        help="place three example calls through a gateway started here and show their records",
        description=(
            "Start a gateway in this process on loopback (127.0.0.1, with built-in phones "
            "on 127.0.0.2 and 127.0.0.3), place three calls under opt-in, opt-out and "
            "notice rules with the shipped English notices, and print each call's record, "
            "consent trail and recording. Nothing else needs to be installed or running."
        ),
    )
    demo.add_argument(
        "--dir",
        metavar="DIR",
        help="write the configuration, store and recordings here (default: a temporary directory)",
    )
    demo.add_argument(
        "--keep", action="store_true", help="keep the directory to look at the calls afterwards"
    )
    demo.add_argument("--verbose", action="store_true", help="log at INFO (default: WARNING)")
    demo.set_defaults(handler=_demo)
    return parser


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive number")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``callgate`` console script and ``python -m gateway``."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_CONFIG
    return int(args.handler(args))


def _load(args: argparse.Namespace) -> Settings | None:
    """The settings, or None after printing every problem to stderr."""
    try:
        return load_settings(args.config)
    except ConfigError as error:
        for problem in error.all():
            print(f"callgate: {problem}", file=sys.stderr)
        return None


def _run(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return EXIT_CONFIG
    setup_logging(settings.log_level, settings.log_format)
    log.info(
        "callgate %s starting: config %s, instance %s",
        VERSION,
        config_path(args.config),
        settings.instance_id,
    )
    if not settings.tenants:
        log.warning("no tenants configured: every call will be refused with 403")
    from gateway.app import run
    from gateway.media.notice import NoticeError

    try:
        return run(settings)
    except NoticeError as error:
        print(f"callgate: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as error:
        log.error("gateway failed: %s", error)
        log.debug("failure", exc_info=True)
        return EXIT_FAILURE


def _api(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return EXIT_CONFIG
    setup_logging(settings.log_level, settings.log_format)
    from gateway.api.commands import serve_api
    from gateway.api.workers import WorkersUnavailable, check_workers_supported, pin_process
    from gateway.app import new_event_loop

    if args.workers is not None:
        if args.workers > MAX_API_WORKERS:
            print(f"callgate: --workers is at most {MAX_API_WORKERS}", file=sys.stderr)
            return EXIT_CONFIG
        api = settings.api.model_copy(update={"workers": args.workers})
        settings = settings.model_copy(update={"api": api})
    if settings.api.workers > 1:
        try:
            check_workers_supported()
        except WorkersUnavailable as error:
            print(f"callgate: {error}", file=sys.stderr)
            return EXIT_CONFIG
    else:
        pin_process(0)  # one worker: on one core, as each of several is
    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            return runner.run(serve_api(settings))
    except OSError as error:
        log.error("API failed: %s", error)
        return EXIT_FAILURE


def _keys(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return EXIT_CONFIG
    from gateway.api.commands import keys_command

    return keys_command(settings, args)


def _demo(args: argparse.Namespace) -> int:
    from pathlib import Path

    from gateway.demo.run import DemoOptions
    from gateway.demo.run import main as run_demo

    options = DemoOptions(
        directory=Path(args.dir) if args.dir else None, keep=args.keep, verbose=args.verbose
    )
    return EXIT_OK if run_demo(options, sys.stdout, sys.stderr) else EXIT_FAILURE


def describe(settings: Settings) -> list[str]:
    """A short summary of the settings: sockets, media range, store, then one line per tenant."""
    from sqlalchemy.engine import make_url

    listen = ", ".join(
        f"{item.transport} {_host_port(item.host, item.port)}" for item in settings.sip.listen
    )
    media = settings.media
    try:
        store = make_url(settings.store.url).render_as_string(hide_password=True)
    except Exception:  # the store rejects it at start-up with its own reason
        store = settings.store.url
    count = len(settings.tenants)
    lines = [
        f"{count} tenant{'' if count == 1 else 's'}, SIP {listen}, "
        f"media {media.host} ports {media.port_min}-{media.port_max}, store {store}"
    ]
    for tenant in settings.tenants:
        pbx, trunk = tenant.pbx, tenant.trunk
        lines.append(
            f"  tenant {tenant.name}: pbx {pbx.transport} {_host_port(pbx.host, pbx.port)}, "
            f"trunk {trunk.transport} {_host_port(trunk.host, trunk.port)}"
        )
    return lines


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _check_config(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return EXIT_CONFIG
    first, *rest = describe(settings)
    print(f"ok: {config_path(args.config)}: {first}")
    for line in rest:
        print(line)
    return EXIT_OK


def _calls(args: argparse.Namespace) -> int:
    settings = _load(args)
    if settings is None:
        return EXIT_CONFIG
    from sqlalchemy.exc import SQLAlchemyError

    try:
        rows = asyncio.run(_fetch_calls(settings.store.url, args.limit, args.tenant))
    except (OSError, ValueError, SQLAlchemyError) as error:
        print(f"callgate: cannot read call records: {error}", file=sys.stderr)
        return EXIT_FAILURE
    if args.json:
        write_json_lines(rows, sys.stdout)
    else:
        write_table(rows, sys.stdout)
    return EXIT_OK


async def _fetch_calls(url: str, limit: int, tenant: str | None) -> list[dict[str, Any]]:
    from gateway.store.engine import make_engine, migrate
    from gateway.store.queries import latest_calls

    engine = make_engine(url)
    try:
        await migrate(engine)
        return await latest_calls(engine, limit, tenant)
    finally:
        await engine.dispose()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def write_json_lines(rows: Iterable[dict[str, Any]], out: TextIO) -> None:
    """One JSON object per call, one call per line."""
    for row in rows:
        out.write(json.dumps(row, default=_json_default, sort_keys=True) + "\n")


def _when(value: Any) -> str:
    """An instant (datetime or ISO 8601 text) as ``YYYY-MM-DD HH:MM:SS`` in UTC."""
    if value is None:
        return "-"
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC)
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


def _duration(value: Any) -> str:
    if value is None:
        return "-"
    seconds = round(float(value))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _party(number: Any, uri: Any) -> str:
    return str(number or uri or "-")


def table_row(row: dict[str, Any]) -> tuple[str, ...]:
    """The cells an operator reads for one call (times in UTC); consent: the outcome."""
    ended = row.get("ended_at") is not None
    return (
        _when(row.get("started_at")),
        str(row.get("tenant") or "-"),
        str(row.get("direction") or "-"),
        _party(row.get("source_number"), row.get("source_uri")),
        _party(row.get("destination_number"), row.get("destination_uri")),
        _duration(row.get("duration_s")) if ended else "up",
        str(row.get("disposition") or ("-" if ended else "in progress")),
        str(row.get("final_status") if row.get("final_status") is not None else "-"),
        str(row.get("hangup_by") or "-"),
        str(row.get("consent_outcome") or "-"),
    )


def write_table(rows: Sequence[dict[str, Any]], out: TextIO) -> None:
    """Aligned columns, newest call first; a note instead when there are none."""
    if not rows:
        out.write("no call records\n")
        return
    cells = [TABLE_COLUMNS, *(table_row(row) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(TABLE_COLUMNS))]
    for line in cells:
        out.write("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() + "\n")
