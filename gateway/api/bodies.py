"""Request bodies: JSON only, within the size limit, else a clear 4xx."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.api.problems import ApiProblem, bad_request


async def json_body(request: web.Request) -> Any:
    """The request's JSON body; 415 for another media type, 400 for bad JSON, 413 if too big."""
    if request.content_type != "application/json":
        raise ApiProblem(
            415,
            "unsupported-media-type",
            f"send the body as application/json, not {request.content_type or 'nothing'}",
        )
    raw = await request.read()  # aiohttp answers 413 past client_max_size
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise bad_request(f"the body is not valid JSON: {error}") from None
