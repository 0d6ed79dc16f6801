"""``/v1/subjects/{number}``: a data subject's export (GDPR art. 15, 20) and erasure (art. 17).

Export returns every call record of the tenant where the number is either
party, with consent trails and links to recordings. Erasure deletes the
recordings (rows, then files) and replaces the number in the records with a
keyed hash (:func:`~gateway.store.tenant_view.subject_token`): counts and
stats stay right, the person cannot be found by number again. Both are
audited under the hash, never the number, so the audit log does not undo
the erasure. Erasing again finds nothing and answers the same way.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from aiohttp import web

from gateway.api.auth import VIEW, admin_only
from gateway.api.context import context_of
from gateway.api.numbers import e164_of
from gateway.api.params import QueryParams
from gateway.api.problems import json_response
from gateway.store.tenant_view import subject_token

log = logging.getLogger(__name__)


def _subject(request: web.Request) -> tuple[list[str], str, str]:
    context = context_of(request)
    view = request[VIEW]
    number = e164_of(context.settings, view.tenant, request.match_info["number"])
    return [number], number, subject_token(context.subject_hash_key, view.tenant, number)


@admin_only
async def export_subject(request: web.Request) -> web.Response:
    QueryParams(request.query, ())
    numbers, number, token = _subject(request)
    found = await request[VIEW].subject_export(numbers, token)
    for call in found["calls"]:
        for recording in call["recordings"]:
            recording["href"] = f"/v1/calls/{call['id']}/recording?id={recording['id']}"
            recording.pop("path", None)
    transcripts = [
        {**item, "href": f"/v1/calls/{item['call']}/transcript"} for item in found["transcripts"]
    ]
    return json_response(
        {"number": number, "calls": found["calls"], "transcripts": transcripts},
        headers={"Content-Disposition": 'attachment; filename="subject-export.json"'},
    )


@admin_only
async def erase_subject(request: web.Request) -> web.Response:
    QueryParams(request.query, ())
    numbers, _, token = _subject(request)
    erasure = await request[VIEW].erase_subject(numbers, token)
    removed = await asyncio.to_thread(remove_files, erasure.files)
    return json_response(
        {
            "erased_as": token,
            "calls": erasure.calls,
            "recordings": erasure.recordings,
            "files_removed": removed,
        }
    )


def remove_files(paths: list[str]) -> int:
    """Delete recording files (and their unfinished ``.part``); missing ones are fine."""
    removed = 0
    for name in paths:
        original = Path(name)
        # the file, its unfinished copy, and what an interrupted analysis left beside it
        leftovers = [original, Path(name + ".part")]
        leftovers += sorted(original.parent.glob(f"{original.name}.*.redacted*"))
        leftovers += sorted(original.parent.glob(f"{original.name}.*.sealed.part"))
        for path in leftovers:
            try:
                path.unlink()
                removed += 1
            except FileNotFoundError:
                continue
            except OSError as error:
                log.error("cannot remove %s: %s", path, error)
    return removed


def add_routes(app: web.Application) -> None:
    app.router.add_get("/v1/subjects/{number}/export", export_subject, name="subject_export")
    app.router.add_delete("/v1/subjects/{number}", erase_subject, name="subject_erase")
