"""GET/PUT /v1/policy: the config's policy, validated new versions, optimistic concurrency."""

from __future__ import annotations

from pathlib import Path

from gateway.store.audit import audit_entries
from tests.unit.api.conftest import Api


async def test_the_settings_policy_is_revision_zero(api: Api) -> None:
    response = await api.get("/v1/policy")
    body = await response.json()
    assert response.headers["ETag"] == '"rev-0"'
    assert body["source"] == "config" and body["revision"] == 0
    assert body["version"].startswith("p-")
    assert body["policy"]["digits"]["consent"] == "1"


async def test_a_put_becomes_the_next_version_and_is_audited(api: Api) -> None:
    _, before = await api.json("GET", "/v1/policy")
    document = dict(before["policy"], home="US-CA", overrides={"US-TX": {"mode": "opt_in"}})
    status, body = await api.json("PUT", "/v1/policy", who="acme-admin", json=document)
    assert status == 200, body
    assert body["revision"] == 1 and body["source"] == "api"
    assert body["version"] != before["version"]
    _, again = await api.json("GET", "/v1/policy")
    assert again["policy"]["home"] == "US-CA" and again["version"] == body["version"]
    _, other = await api.json("GET", "/v1/policy", who="globex-admin")
    assert other["revision"] == 0  # another tenant's policy is untouched
    entries = await audit_entries(api.engine, "acme")
    assert [(e["action"], e["target"]) for e in entries] == [("policy.update", body["version"])]


async def test_an_invalid_policy_is_422_with_every_reason_and_changes_nothing(api: Api) -> None:
    bad = {"home": "XX", "minimum_mode": "sometimes", "digits": {"consent": "1", "decline": "1"}}
    status, body = await api.json("PUT", "/v1/policy", who="acme-admin", json=bad)
    assert status == 422
    locations = {error["location"] for error in body["errors"]}
    assert {"home", "minimum_mode"} <= locations
    status, body = await api.json("PUT", "/v1/policy", who="acme-admin", json={"unknown_key": 1})
    assert status == 422 and body["errors"][0]["location"] == "unknown_key"
    status, body = await api.json(
        "PUT", "/v1/policy", who="acme-admin", json={"overrides": {"unknown": {"mode": "notice"}}}
    )
    assert status == 422 and "unknown" in body["detail"]
    _, current = await api.json("GET", "/v1/policy")
    assert current["revision"] == 0


async def test_if_match_refuses_a_stale_write(api: Api) -> None:
    status, first = await api.json(
        "PUT",
        "/v1/policy",
        who="acme-admin",
        json={"home": "US-CA"},
        headers={"If-Match": '"rev-0"'},
    )
    assert status == 200 and first["revision"] == 1
    status, body = await api.json(
        "PUT",
        "/v1/policy",
        who="acme-admin",
        json={"home": "US-TX"},
        headers={"If-Match": '"rev-0"'},
    )
    assert status == 412 and "rev-1" in body["detail"]


async def test_bodies_must_be_small_json_objects(api: Api) -> None:
    status, body = await api.json(
        "PUT",
        "/v1/policy",
        who="acme-admin",
        data="home=US",
        headers={"Content-Type": "text/plain"},
    )
    assert status == 415
    status, body = await api.json(
        "PUT",
        "/v1/policy",
        who="acme-admin",
        data="{nope",
        headers={"Content-Type": "application/json"},
    )
    assert status == 400 and "JSON" in body["detail"]
    status, body = await api.json("PUT", "/v1/policy", who="acme-admin", json=[1, 2])
    assert status == 422
    huge = {"home": "US-CA", "pad": "x" * 100_000}
    status, body = await api.json("PUT", "/v1/policy", who="acme-admin", json=huge)
    assert status == 413 and body["type"].endswith("body-too-large")


async def test_a_policy_cannot_make_the_gateway_read_other_files(api: Api, tmp_path: Path) -> None:
    """Notices named through the API must be WAV files under the notices directories."""
    outside = tmp_path / "secret.wav"
    outside.write_bytes(b"RIFF" + b"\0" * 100)
    answers = set()
    for path in ("/dev/zero", "/etc/passwd", str(outside), "../../../etc/hostname", "/nowhere"):
        notices = {"en": {"notice": path, "opt_out": path, "opt_in": path}}
        status, body = await api.json(
            "PUT", "/v1/policy", who="acme-admin", json={"notices": notices}
        )
        assert status == 422, (path, body)
        assert "notices directory" in body["detail"], body
        answers.add(body["detail"].replace(Path(path).name, "NAME"))
    assert len(answers) == 1, answers  # the same words whether a file exists or not
