"""What the analysis made of a call: its redacted transcript, its talk-time cues, and its
recording (decrypted on the fly when sealed, redacted once analysed), all audited."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.analysis.pipeline import tenant_keys
from gateway.analysis.sealed import Keyring, SealedError, open_sealed
from gateway.api.auth import VIEW
from gateway.api.context import context_of
from gateway.api.params import QueryParams
from gateway.api.problems import ApiProblem, json_response, not_found
from gateway.api.ranges import byte_range, none_match, range_applies
from gateway.api.routes_calls import record_id_of

PIECE = 65536

log = logging.getLogger(__name__)


async def transcript(request: web.Request) -> web.Response:
    """Per party: the redacted text and words (with times); the spans taken out."""
    QueryParams(request.query, ())
    record_id = record_id_of(request)
    found = await request[VIEW].transcript(record_id)
    if found is None:
        raise not_found(f"no call {record_id} for this tenant")
    return json_response({"call": record_id, **found})


async def cues(request: web.Request) -> web.Response:
    """Talk time per party, talk-to-listen, longest monologue, interruptions, silence."""
    QueryParams(request.query, ())
    record_id = record_id_of(request)
    found = await request[VIEW].cues(record_id)
    if found is None:
        raise not_found(f"no call {record_id} for this tenant")
    return json_response({"call": record_id, "analyses": found})


async def recording(request: web.Request) -> web.StreamResponse:
    """The call's recording as WAV, with single byte ranges (RFC 9110 14)."""
    params = QueryParams(request.query, ("id",))
    record_id = record_id_of(request)
    view = request[VIEW]
    found = await view.recording(record_id, params.record_id("id"))
    if found is None:
        raise not_found(f"no recording of call {record_id} for this tenant")
    if found["redacted_at"] is None and _redaction_due(request, view.tenant):
        raise ApiProblem(
            409,
            "not-redacted",
            f"the recording of call {record_id} is not redacted yet (or its analysis failed: "
            "see the call's analysis); it is served once redacted",
        )
    path = Path(found["path"])
    if not path.is_file():
        raise ApiProblem(410, "gone", f"the recording of call {record_id} is no longer stored")
    headers = {
        "Content-Type": "audio/wav",
        "Content-Disposition": f'attachment; filename="{record_id}.wav"',
    }
    if found["key_id"] is None:
        return web.FileResponse(path, headers=headers)
    keyring = _keyring(request, view.tenant)
    try:
        reader = await asyncio.to_thread(open_sealed, path, keyring)
    except SealedError as error:
        log.error("call %s: recording %s cannot be decrypted: %s", record_id, found["id"], error)
        raise ApiProblem(
            500, "recording-unreadable", "the recording cannot be decrypted; the error is logged"
        ) from None
    try:
        size = reader.size
        etag = _etag(found)
        if etag is not None:
            headers["ETag"] = etag
            if none_match(request.headers.get("If-None-Match"), etag):
                return web.Response(status=304, headers={"ETag": etag})
        span = None
        if range_applies(request.headers.get("If-Range"), etag):
            span = byte_range(request.headers.get("Range"), size)
        start, end = span or (0, size)
        response = web.StreamResponse(status=206 if span else 200, headers=headers)
        response.headers["Accept-Ranges"] = "bytes"
        response.content_length = end - start
        if span:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        await response.prepare(request)
        for piece_start in range(start, end, PIECE):
            piece = await asyncio.to_thread(
                reader.read_range, piece_start, min(piece_start + PIECE, end)
            )
            await response.write(piece)
        await response.write_eof()
        return response
    finally:
        reader.close()


def _etag(found: dict[str, Any]) -> str | None:
    """The strong entity tag of a recording as served (decrypted): its row and the SHA-256
    of its audio, which the analysis updates when it mutes spans in it."""
    digest = found.get("sha256")
    return f'"{found["id"]}.{digest[:24]}"' if digest else None


def _redaction_due(request: web.Request, tenant: str) -> bool:
    """Whether the tenant's recordings are redacted before anyone hears them."""
    try:
        return context_of(request).settings.tenant_named(tenant).analysis.enabled
    except KeyError:
        return True


def _keyring(request: web.Request, tenant: str) -> Keyring:
    settings = context_of(request).settings
    try:
        keys, current = tenant_keys(settings.tenant_named(tenant))
    except KeyError:
        keys, current = {}, None
    if not keys:
        raise ApiProblem(
            503,
            "keys-missing",
            "the recording is sealed and this instance has no keys for the tenant",
        )
    return Keyring.from_base64(keys, current)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/calls/{call_id}/transcript", transcript, name="transcript")
    app.router.add_get("/v1/calls/{call_id}/cues", cues, name="cues")
    app.router.add_get("/v1/calls/{call_id}/recording", recording, name="recording")
