"""Bearer keys: missing, malformed, unknown and revoked keys; roles."""

from __future__ import annotations

import asyncio

import pytest

from gateway.api.auth import KeyCache
from gateway.store.keys import KeyIdentity, create_key, hash_key, identify, revoke_key
from tests.unit.api.conftest import Api


async def test_no_key_is_401_with_a_bearer_challenge(api: Api) -> None:
    async with api.session.get(api.url("/v1/calls")) as response:
        assert response.status == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        body = await response.json(content_type=None)
        assert "callgate keys create" in body["detail"]


async def test_wrong_scheme_unknown_and_revoked_keys_are_refused(api: Api) -> None:
    for header in ("Basic dXNlcjpwYXNz", "Bearer ", "Bearer cgk_nonsense", "Bearer x" * 100):
        async with api.session.get(api.url("/v1/calls"), headers={"Authorization": header}) as r:
            assert r.status == 401, header
    key, row = await create_key(api.engine, "acme", "reader")
    ok = {"Authorization": f"Bearer {key}"}
    async with api.session.get(api.url("/v1/calls"), headers=ok) as response:
        assert response.status == 200
    assert await revoke_key(api.engine, row["prefix"]) == 1
    async with api.session.get(api.url("/v1/calls"), headers=ok) as response:
        assert response.status == 401  # key_cache_s = 0 in these tests
    assert await revoke_key(api.engine, row["id"]) == 0


async def test_health_metrics_and_openapi_need_no_key(api: Api) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        async with api.session.get(api.url(path)) as response:
            assert response.status == 200, path


async def test_readers_cannot_change_or_erase(api: Api) -> None:
    status, body = await api.json("PUT", "/v1/policy", json={})
    assert status == 403 and "admin" in body["detail"]
    status, _ = await api.json("DELETE", "/v1/subjects/+14155550100")
    assert status == 403
    status, _ = await api.json("GET", "/v1/subjects/+14155550100/export")
    assert status == 403


async def test_unknown_paths_and_methods_are_problems_too(api: Api) -> None:
    status, body = await api.json("GET", "/v1/nothing")
    assert status == 404 and body["type"].endswith("not-found")
    status, body = await api.json("DELETE", "/v1/calls")
    assert status == 405 and body["type"].endswith("method-not-allowed")


async def test_requests_that_find_a_key_unchecked_share_one_store_read(api: Api) -> None:
    """32 requests of one key when its cache entry has expired: one read of the store, and
    a request that goes away meanwhile does not take the answer from the others."""
    key, row = await create_key(api.engine, "acme", "reader")
    cache = KeyCache(ttl=60)
    reads = 0
    store_may_answer = asyncio.Event()

    async def check() -> KeyIdentity | None:
        nonlocal reads
        reads += 1
        await store_may_answer.wait()
        return await identify(api.engine, key)

    waiting = [asyncio.create_task(cache.identity(hash_key(key), check)) for _ in range(32)]
    await asyncio.sleep(0.01)
    waiting[0].cancel()  # that client hung up
    store_may_answer.set()
    found = await asyncio.gather(*waiting[1:])
    assert reads == 1
    assert {identity.key_id for identity in found if identity is not None} == {row["id"]}
    assert len(found) == 31 and all(identity is not None for identity in found)
    assert waiting[0].cancelled()
    assert await cache.identity(hash_key(key), check) == found[0]
    assert reads == 1  # remembered for ttl seconds


async def test_an_expired_check_is_made_again(api: Api) -> None:
    key, _ = await create_key(api.engine, "acme", "reader")
    cache = KeyCache(ttl=0.05)
    reads = 0

    async def check() -> KeyIdentity | None:
        nonlocal reads
        reads += 1
        return await identify(api.engine, key)

    await cache.identity(hash_key(key), check)
    await cache.identity(hash_key(key), check)
    assert reads == 1
    await asyncio.sleep(0.1)
    await cache.identity(hash_key(key), check)
    assert reads == 2


async def test_a_check_that_failed_or_was_cancelled_is_asked_anew() -> None:
    """A store error reaches every waiter and is not remembered; a check cancelled before it
    ran (the server shutting down) does not leave later requests waiting on it."""
    cache = KeyCache(ttl=60)
    checks = 0

    async def store_down() -> KeyIdentity | None:
        nonlocal checks
        checks += 1
        raise ConnectionError("store down")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            await cache.identity("digest", store_down)
    assert checks == 2

    async def store_up() -> KeyIdentity | None:
        return KeyIdentity("k1", "acme", "reader")

    waiter = asyncio.create_task(cache.identity("other", store_up))
    await asyncio.sleep(0)  # the shared check exists now, not yet run
    for running in asyncio.all_tasks():
        if running is not asyncio.current_task() and running is not waiter:
            running.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert await cache.identity("other", store_up) == KeyIdentity("k1", "acme", "reader")
