"""Bearer keys (RFC 6750): who is asking, for which tenant, with which role.

Every path under ``/v1/`` needs ``Authorization: Bearer <key>``. The key's
tenant becomes the request's :class:`~gateway.store.tenant_view.TenantView`,
the only door handlers have to the store, so a key reaches its own tenant's
data and nothing else. A check is remembered for ``api.key_cache_s`` so the
store is not asked on every request; a revoked key stops working within
that time on every instance.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.api.context import context_of
from gateway.api.problems import ApiProblem, Handler
from gateway.store.keys import KeyIdentity, hash_key, identify
from gateway.store.tenant_view import TenantView

IDENTITY: web.RequestKey[KeyIdentity] = web.RequestKey("identity", KeyIdentity)
VIEW: web.RequestKey[TenantView] = web.RequestKey("view", TenantView)

PROTECTED_PREFIX = "/v1/"
CACHE_LIMIT = 10_000


class KeyCache:
    """Recent key checks, valid or not, for a few seconds; one check of a key at a time.

    When an entry expires under load, every request with that key that arrives
    before the store answers would otherwise check it too (32 keep-alive clients
    of one key: 32 store reads at once, every ``ttl`` seconds); they wait for the
    one check instead.
    """

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, KeyIdentity | None]] = {}
        self._checks: dict[str, asyncio.Future[KeyIdentity | None]] = {}

    def get(self, digest: str) -> tuple[bool, KeyIdentity | None]:
        entry = self._entries.get(digest)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def put(self, digest: str, identity: KeyIdentity | None) -> None:
        if len(self._entries) >= CACHE_LIMIT:
            self._entries.clear()
        self._entries[digest] = (time.monotonic() + self.ttl, identity)

    async def identity(
        self, digest: str, check: Callable[[], Awaitable[KeyIdentity | None]]
    ) -> KeyIdentity | None:
        """The remembered identity of ``digest``, or what ``check()`` finds (one call for
        all who ask meanwhile; a caller that goes away does not stop it for the others)."""
        known, identity = self.get(digest)
        if known:
            return identity
        running = self._checks.get(digest)
        if running is None:
            running = asyncio.ensure_future(self._check(digest, check))
            self._checks[digest] = running
            running.add_done_callback(functools.partial(self._checked, digest))
        return await asyncio.shield(running)

    async def _check(
        self, digest: str, check: Callable[[], Awaitable[KeyIdentity | None]]
    ) -> KeyIdentity | None:
        identity = await check()
        self.put(digest, identity)
        return identity

    def _checked(self, digest: str, done: asyncio.Future[KeyIdentity | None]) -> None:
        """A check ended (answered, failed or cancelled, even before it ran): the next ask
        starts a new one. Its error is each waiter's; with none left it is dropped here."""
        if self._checks.get(digest) is done:
            del self._checks[digest]
        if not done.cancelled():
            done.exception()


KEY_CACHE: web.AppKey[KeyCache] = web.AppKey("key_cache", KeyCache)


def _unauthorized(detail: str, error: str = "invalid_token") -> ApiProblem:
    return ApiProblem(
        401,
        "unauthorized",
        detail,
        headers={"WWW-Authenticate": f'Bearer realm="callgate", error="{error}"'},
    )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith(PROTECTED_PREFIX):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if not header:
        raise ApiProblem(
            401,
            "unauthorized",
            "send the tenant's API key as Authorization: Bearer <key> "
            "(callgate keys create --tenant NAME --role reader)",
            headers={"WWW-Authenticate": 'Bearer realm="callgate"'},
        )
    if scheme.lower() != "bearer" or not key.strip():
        raise _unauthorized("the Authorization header must be: Bearer <key>", "invalid_request")
    key = key.strip()
    context = context_of(request)
    cache = request.app[KEY_CACHE]
    identity = await cache.identity(hash_key(key), lambda: identify(context.engine, key))
    if identity is None:
        raise _unauthorized("the API key is not valid (unknown or revoked)")
    request[IDENTITY] = identity
    request[VIEW] = TenantView(
        context.engine, identity.tenant, identity.key_id, context.reads, context.prepared
    )
    return await handler(request)


def admin_only(
    handler: Callable[[web.Request], Awaitable[Any]],
) -> Callable[[web.Request], Awaitable[Any]]:
    """Refuse (403) keys whose role is not ``admin``."""

    async def checked(request: web.Request) -> Any:
        if not request[IDENTITY].admin:
            raise ApiProblem(
                403, "forbidden", "this needs an admin key; the key given is a reader's"
            )
        return await handler(request)

    checked.__name__ = handler.__name__
    checked.__doc__ = handler.__doc__
    return checked
