"""``/v1/calls``: list (JSON pages or CSV), one call with its consent trail, capture control,
and the call's recording."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from gateway.api.auth import IDENTITY, VIEW
from gateway.api.bodies import json_body
from gateway.api.context import context_of
from gateway.api.cursor import decode_cursor, encode_cursor, fingerprint
from gateway.api.numbers import e164_of
from gateway.api.params import QueryParams, is_record_id
from gateway.api.problems import ApiProblem, bad_request, json_response, not_found
from gateway.store.capture_bus import CaptureBusError
from gateway.store.export import csv_chunks
from gateway.store.models import CONSENT_OUTCOMES, DIRECTIONS, DISPOSITIONS
from gateway.store.tenant_view import CallFilter, Order

LIST_PARAMS = (
    "from",
    "to",
    "number",
    "direction",
    "disposition",
    "consent",
    "min_duration",
    "order",
    "limit",
    "cursor",
    "format",
)
DEFAULT_LIMIT = 100
CSV_TYPE = "text/csv"
CAPTURE_ACTIONS = ("pause", "resume", "stop")


def _filter(request: web.Request, params: QueryParams) -> tuple[CallFilter, dict[str, Any]]:
    """The filter, and the normalised parameters that decide the rows (for the cursor)."""
    since, until = params.instant("from"), params.instant("to")
    if since is not None and until is not None and since >= until:
        raise bad_request("from must be before to")
    typed = params.text("number", 40)
    numbers: tuple[str, ...] = ()
    if typed is not None:
        numbers = (e164_of(context_of(request).settings, request[VIEW].tenant, typed),)
    where = CallFilter(
        since=since,
        until=until,
        numbers=numbers,
        direction=params.choice("direction", DIRECTIONS),
        dispositions=params.choices("disposition", DISPOSITIONS),
        consent_outcomes=params.choices("consent", CONSENT_OUTCOMES),
        min_duration_s=params.seconds("min_duration"),
    )
    shape = {
        "from": since,
        "to": until,
        "numbers": numbers,
        "direction": where.direction,
        "dispositions": where.dispositions,
        "consent": where.consent_outcomes,
        "min": where.min_duration_s,
    }
    return where, shape


def record_id_of(request: web.Request) -> str:
    """The call id in the path; a 404 for text that cannot be one (never a store error)."""
    record_id = request.match_info["call_id"]
    if not is_record_id(record_id):
        raise not_found(f"no call {record_id[:60]!r}: call ids are UUIDs, as /v1/calls lists them")
    return record_id


def _shown(where: CallFilter) -> dict[str, Any]:
    """The export's filter for its audit entry (numbers as the count of them, not the numbers)."""
    return {
        "from": where.since.isoformat() if where.since else None,
        "to": where.until.isoformat() if where.until else None,
        "numbers": len(where.numbers),
        "direction": where.direction,
        "dispositions": list(where.dispositions),
        "consent": list(where.consent_outcomes),
        "min_duration_s": where.min_duration_s,
    }


def _wants_csv(request: web.Request, params: QueryParams) -> bool:
    fmt = params.choice("format", ("json", "csv"))
    if fmt is not None:
        return fmt == "csv"
    accept = request.headers.get("Accept", "")
    return CSV_TYPE in accept and "application/json" not in accept


async def list_calls(request: web.Request) -> web.StreamResponse:
    """Calls of the key's tenant, newest first, filtered; keyset pages or CSV."""
    params = QueryParams(request.query, LIST_PARAMS)
    where, shape = _filter(request, params)
    order: Order = params.choice("order", ("desc", "asc")) or "desc"  # type: ignore[assignment]
    shape["order"] = order
    view = request[VIEW]
    if _wants_csv(request, params):
        if "cursor" in params.values or "limit" in params.values:
            raise bad_request("CSV export streams every matching call: drop cursor and limit")
        return await _stream_csv(request, view, where, order)
    limit = params.integer("limit", DEFAULT_LIMIT, 1, context_of(request).settings.api.page_max)
    query_print = fingerprint(shape)
    cursor = params.text("cursor", 1000)
    after = decode_cursor(cursor, query_print) if cursor is not None else None
    page = await view.list_calls_json(where, limit=limit, order=order, after=after)
    body: dict[str, Any] = {"calls": orjson.Fragment(page.json), "next_cursor": None, "next": None}
    if page.next_key is not None:
        token = encode_cursor(page.next_key, query_print)
        follow = {k: v for k, v in params.values.items() if k != "cursor"}
        follow["cursor"] = token
        body["next_cursor"] = token
        body["next"] = f"{request.path}?{urlencode(follow)}"
    return json_response(body)


async def _stream_csv(
    request: web.Request, view: Any, where: CallFilter, order: Order
) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": f"{CSV_TYPE}; charset=utf-8",
            "Content-Disposition": 'attachment; filename="calls.csv"',
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    await view.audit_read(None, "calls.export", detail={"order": order, **_shown(where)})
    async for chunk in csv_chunks(view, where, order):
        await response.write(chunk)
    await response.write_eof()
    return response


async def get_call(request: web.Request) -> web.Response:
    """One call: the record, both legs' media statistics, the consent trail, recordings."""
    QueryParams(request.query, ())
    record_id = record_id_of(request)
    found = await request[VIEW].get_call(record_id)
    if found is None:
        raise not_found(f"no call {record_id} for this tenant")
    for recording in found["recordings"]:
        recording["href"] = f"/v1/calls/{record_id}/recording?id={recording['id']}"
        recording.pop("path", None)
    return json_response(found)


async def capture(request: web.Request) -> web.Response:
    """Pause, resume or stop capture on a live call (an agent desktop around card entry).

    ``pause`` and ``stop`` only ever take capture away, so any key may send
    them; ``resume`` gives it back and needs an admin key.
    """
    QueryParams(request.query, ())
    record_id = record_id_of(request)
    body = await json_body(request)
    action = body.get("action") if isinstance(body, dict) else None
    if action not in CAPTURE_ACTIONS or set(body) - {"action"}:
        raise bad_request(
            'the body must be {"action": "pause" | "resume" | "stop"}', allowed=CAPTURE_ACTIONS
        )
    if action == "resume" and not request[IDENTITY].admin:
        raise ApiProblem(403, "forbidden", "resume gives capture back: it needs an admin key")
    view = request[VIEW]
    state = await view.call_state(record_id)
    if state is None:
        raise not_found(f"no call {record_id} for this tenant")
    if state["ended_at"] is not None:
        raise ApiProblem(409, "call-ended", f"call {record_id} has ended")
    context = context_of(request)
    live = context.live
    applied = None if live is None else live.consent.capture_command(record_id, view.tenant, action)
    instance = state["gateway_instance"]
    if applied is None and context.bus is not None:
        try:
            applied = await context.bus.request(record_id, view.tenant, action, instance)
        except CaptureBusError as error:
            raise ApiProblem(
                503,
                "bus-unavailable",
                f"the command could not be sent to instance {instance!r}: {error}; try again",
                headers={"Retry-After": "1"},
            ) from None
    if applied is None:
        raise ApiProblem(
            409,
            "call-not-reachable",
            f"call {record_id} is not live on gateway instance {instance!r} as far as this "
            "API can reach: it may have just ended, or that instance shares no PostgreSQL "
            "store with this one",
            instance_id=instance,
        )
    async with view.engine.begin() as connection:
        await view.audit(connection, "call.capture", target=record_id, detail={"action": action})
    return json_response({"call": record_id, "action": action, "applied": True})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/calls", list_calls, name="calls")
    app.router.add_get("/v1/calls/{call_id}", get_call, name="call")
    app.router.add_post("/v1/calls/{call_id}/capture", capture, name="capture")
