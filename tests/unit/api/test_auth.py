"""Bearer keys: missing, malformed, unknown and revoked keys; roles."""

from __future__ import annotations

from gateway.store.keys import create_key, revoke_key
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
