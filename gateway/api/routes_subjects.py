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
from gateway.api.numbers import read_number
from gateway.api.params import QueryParams
from gateway.api.problems import bad_request, json_response
from gateway.calls.numbers import dialled_digits
from gateway.store.tenant_view import Subject, subject_token

log = logging.getLogger(__name__)


def _subject(request: web.Request) -> tuple[Subject, str, str]:
    """Whom the request is about, the number as it is shown back, and its erasure token.

    A valid number is read as the records hold it (E.164, national numbers in the
    tenant's region); digits that are no valid number (an extension, a short
    code: the records hold no number for them) are looked for in the parties'
    URIs as they are.
    """
    context = context_of(request)
    view = request[VIEW]
    typed = request.match_info["number"]
    number = read_number(context.settings, view.tenant, typed)
    if number is not None:
        subject = Subject(numbers=(number,))
    else:
        number = dialled_digits(typed)
        if number is None:
            raise bad_request(
                f"number={typed!r} is not a telephone number (E.164 such as +14045550100, "
                "national in the tenant's region, or the digits of an extension)"
            )
        subject = Subject(dialled=(number,))
    return subject, number, subject_token(context.subject_hash_key, view.tenant, number)


@admin_only
async def export_subject(request: web.Request) -> web.Response:
    QueryParams(request.query, ())
    subject, number, token = _subject(request)
    found = await request[VIEW].subject_export(subject, token)
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
    subject, _, token = _subject(request)
    erasure = await request[VIEW].erase_subject(subject, token)
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
