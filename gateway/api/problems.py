"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the API returns is one: ``type`` (a URN naming the kind of
problem), ``title`` (the same for every problem of that type), ``status``,
``detail`` (this occurrence, in words a client developer can act on) and,
where it helps, extension members such as ``errors`` (RFC 9457 3.2).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import orjson
from aiohttp import web
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as SqlTimeout

from gateway.store.prepared import ReadTimeout

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:callgate:problem:"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiProblem(Exception):
    """Raised by a handler to answer with a problem document."""

    def __init__(
        self,
        status: int,
        kind: str,
        detail: str,
        *,
        title: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.headers = headers or {}
        self.extensions = extensions

    def response(self, instance: str | None = None) -> web.Response:
        body: dict[str, Any] = {
            "type": TYPE_PREFIX + self.kind,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extensions)
        return web.Response(
            status=self.status,
            body=orjson.dumps(body),
            content_type=PROBLEM_JSON,
            headers=self.headers,
        )


def bad_request(detail: str, **extensions: Any) -> ApiProblem:
    return ApiProblem(400, "invalid-request", detail, **extensions)


def not_found(detail: str) -> ApiProblem:
    return ApiProblem(404, "not-found", detail)


_HTTP_KINDS = {
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    413: "body-too-large",
    415: "unsupported-media-type",
}


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn every error, ours or aiohttp's, into a problem document; never leak internals."""
    try:
        return await handler(request)
    except ApiProblem as problem:
        return problem.response(request.path)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        kind = _HTTP_KINDS.get(error.status, "http-error")
        detail = error.text if error.text and error.text != error.reason else _default(error)
        problem = ApiProblem(error.status, kind, detail)
        for name in ("Allow", "WWW-Authenticate"):
            if name in error.headers:
                problem.headers[name] = error.headers[name]
        return problem.response(request.path)
    except ReadTimeout as error:
        log.warning("API %s %s: %s", request.method, _route(request), error)
        return ApiProblem(
            503,
            "read-timeout",
            f"the read ran longer than the {error.timeout_s:g} s this API allows and was "
            "stopped: narrow it (a shorter from/to range, a number) and ask again",
            timeout_s=error.timeout_s,
        ).response(request.path)
    except (SqlTimeout, OperationalError) as error:
        log.warning(
            "API %s %s: store busy or unreachable: %s", request.method, _route(request), error
        )
        return ApiProblem(
            503,
            "store-unavailable",
            "the store is busy or unreachable; try again shortly",
            headers={"Retry-After": "1"},
        ).response(request.path)
    except Exception:
        log.exception("API %s %s failed", request.method, _route(request))
        return ApiProblem(
            500, "internal-error", "the server failed to answer; the error is logged"
        ).response(request.path)


def _route(request: web.Request) -> str:
    """The route's pattern, not the path: a path can hold a data subject's number."""
    info = request.match_info.route.resource.get_info() if request.match_info.route.resource else {}
    return str(info.get("formatter") or info.get("path") or "(no route)")


def _default(error: web.HTTPException) -> str:
    if error.status == 404:
        return "no such resource; see /openapi.json for what is served"
    if error.status == 405:
        return f"method not allowed here; allowed: {error.headers.get('Allow', '')}"
    if error.status == 413:
        return "the request body is too large"
    return error.reason


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """A JSON answer, encoded with orjson (datetimes as RFC 3339, several times faster)."""
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )
