"""``/healthz`` (the process answers), ``/readyz`` (store reachable, SIP listening) and
``/metrics`` (Prometheus text exposition format 0.0.4)."""

from __future__ import annotations

import math
import time

from aiohttp import web
from sqlalchemy import text

from gateway.api.context import context_of
from gateway.api.problems import json_response
from gateway.collector_pauses import PAUSES

STORE_TIMEOUT_S = 2.0
PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8"

HELP = {
    "callgate_active_calls": ("gauge", "Calls in progress on this instance."),
    "callgate_calls_total": ("counter", "Calls ended on this instance, by disposition."),
    "callgate_consent_outcomes_total": ("counter", "Calls ended, by consent outcome."),
    "callgate_relay_packets_total": ("counter", "RTP/RTCP packets the relay handled, by event."),
    "callgate_relay_native_lanes": (
        "gauge",
        "Parties' streams the native forwarder relays now, outside the interpreter.",
    ),
    "callgate_relay_native_packets_total": (
        "counter",
        "RTP packets the native forwarder relayed (also counted in the relay's packets_out).",
    ),
    "callgate_relay_kernel_lanes": (
        "gauge",
        "Parties' streams the kernel forwarder relays now, before they reach a socket.",
    ),
    "callgate_relay_kernel_packets_total": (
        "counter",
        "RTP packets the kernel forwarder relayed (also counted in the relay's packets_out).",
    ),
    "callgate_calls_shed_total": (
        "counter",
        "New calls refused with 503 because the event loop ran behind (overload control).",
    ),
    "callgate_shed_share": ("gauge", "Share of new calls overload control refuses now, 0 to 1."),
    "callgate_loop_lag_seconds": ("gauge", "How late the event loop ran its latest lag sample."),
    "callgate_loop_lag_max_seconds": ("gauge", "The event loop's largest lag since start."),
    "callgate_sip_wait_max_seconds": (
        "gauge",
        "Longest a SIP datagram waited in its socket's queue before it was read, since start.",
    ),
    "callgate_sip_send_drops_total": (
        "counter",
        "SIP datagrams dropped on a full UDP send buffer (the transactions retransmit).",
    ),
    "callgate_write_queue_depth": ("gauge", "Record writes waiting for the store."),
    "callgate_write_queue_oldest_seconds": ("gauge", "Age of the oldest waiting record write."),
    "callgate_records_written_total": ("counter", "Record writes committed to the store."),
    "callgate_store_write_failures_total": ("counter", "Failed store write attempts."),
    "callgate_analysis_jobs_total": ("counter", "Analysis jobs finished here, by result."),
    "callgate_api_requests_total": ("counter", "API requests answered, by route and status."),
    "callgate_up_seconds": ("gauge", "Seconds since the API started."),
}


async def healthz(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    context = context_of(request)
    checks: dict[str, str] = {}
    ready = True
    try:
        async with context.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
        checks["store"] = "ok"
    except Exception as error:  # any driver error means: not ready
        ready = False
        checks["store"] = f"unreachable: {type(error).__name__}"
    if context.live is not None:
        live_ready, why = context.live.ready()
        checks["sip"] = "ok" if live_ready else why
        ready = ready and live_ready
    return json_response(
        {"status": "ready" if ready else "not ready", "checks": checks},
        status=200 if ready else 503,
    )


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    inner = ",".join(
        f'{name}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for name, value in pairs
    )
    return "{" + inner + "}"


def sample_value(value: float) -> str:
    """A sample's value in the text format: a whole number in full (a counter past a
    million stays exact, where ``:g`` would round it to six digits), any other number as
    the shortest text that reads back to it; ``NaN``, ``+Inf`` and ``-Inf`` as the format
    spells them."""
    number = float(value)
    if number.is_integer() and abs(number) < 2**53:
        return str(int(number))
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    return repr(number)


async def metrics(request: web.Request) -> web.Response:
    context = context_of(request)
    values: dict[str, float | dict[tuple[tuple[str, str], ...], float]] = {}
    if context.live is not None:
        values.update(context.live.metrics())
    values["callgate_api_requests_total"] = {
        (("route", route), ("status", str(status))): float(count)
        for (route, status), count in sorted(context.requests.items())
    }
    values["callgate_up_seconds"] = time.monotonic() - request.app[STARTED]
    lines = []
    for name, value in values.items():
        kind, help_text = HELP.get(name, ("gauge", name))
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")
        if isinstance(value, dict):
            for labels, number in value.items():
                lines.append(f"{name}{_labels(labels)} {sample_value(number)}")
        else:
            lines.append(f"{name} {sample_value(value)}")
    if PAUSES.watching:
        lines += _pause_histogram()
    return web.Response(
        body=("\n".join(lines) + "\n").encode(), headers={"Content-Type": PROMETHEUS_TYPE}
    )


def _pause_histogram() -> list[str]:
    """The collector's pauses (:mod:`gateway.collector_pauses`) as a Prometheus histogram."""
    name = "callgate_gc_pause_seconds"
    lines = [
        f"# HELP {name} How long each collection of Python's cyclic garbage collector "
        "stopped the process (the event loop, SIP and the relay with it), by generation.",
        f"# TYPE {name} histogram",
    ]
    for labels, number in PAUSES.histogram().items():
        lines.append(f"{name}_bucket{_labels(labels)} {sample_value(number)}")
    for generation, (total, count) in enumerate(zip(PAUSES.seconds, PAUSES.count, strict=True)):
        lines.append(f'{name}_sum{{generation="{generation}"}} {sample_value(total)}')
        lines.append(f'{name}_count{{generation="{generation}"}} {sample_value(count)}')
    return lines


STARTED: web.AppKey[float] = web.AppKey("started", float)


def add_routes(app: web.Application) -> None:
    app[STARTED] = time.monotonic()
    app.router.add_get("/healthz", healthz, name="healthz")
    app.router.add_get("/readyz", readyz, name="readyz")
    app.router.add_get("/metrics", metrics, name="metrics")
