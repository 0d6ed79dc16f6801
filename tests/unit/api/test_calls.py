"""GET /v1/calls and /v1/calls/{id} over real HTTP: filters, keyset pages, CSV, isolation."""

from __future__ import annotations

import csv
import io
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert

from gateway.store import export
from gateway.store.audit import audit_entries
from gateway.store.models import CALLS
from gateway.store.prepared import PreparedReads
from gateway.store.tenant_view import PAGE_SIZES, fetched_rows
from tests.unit.api.conftest import Api
from tests.unit.store.records import T0, answer, consent_event, end, new_id, recording, start


async def _calls(api: Api, count: int, tenant: str = "acme", **fields: object) -> list[str]:
    ids = [new_id() for _ in range(count)]
    await api.write(
        *(
            start(i, at=T0 + timedelta(minutes=n), tenant=tenant, **fields)
            for n, i in enumerate(ids)
        )
    )
    return ids


async def test_pages_follow_the_keyset_and_see_every_call_once(api: Api) -> None:
    ids = await _calls(api, 25)
    seen: list[str] = []
    path = "/v1/calls?limit=10"
    pages = 0
    while path:
        status, body = await api.json("GET", path)
        assert status == 200, body
        seen += [row["id"] for row in body["calls"]]
        path = body["next"]
        pages += 1
        if pages == 1:  # a call that starts meanwhile is newer: it neither repeats nor shifts
            await api.write(start(at=T0 + timedelta(days=1)))
    assert pages == 3
    assert seen == list(reversed(ids))


@pytest.mark.parametrize("limit", [13, 20])
async def test_a_page_of_any_size_tells_whether_another_follows(api: Api, limit: int) -> None:
    """The store is asked for rows by page size (13 reads up to 21); pages still hold
    ``limit`` and a full last page has no next link."""
    ids = await _calls(api, 2 * limit)
    status, first = await api.json("GET", f"/v1/calls?limit={limit}")
    assert status == 200 and len(first["calls"]) == limit and first["next"]
    status, second = await api.json("GET", first["next"])
    assert status == 200 and len(second["calls"]) == limit and second["next"] is None
    assert [row["id"] for row in first["calls"] + second["calls"]] == list(reversed(ids))


def test_pages_are_read_in_a_few_sizes() -> None:
    assert [fetched_rows(n) for n in (1, 10, 11, 13, 100, 101, 999, 1000, 1001, 2500)] == [
        11,
        11,
        21,
        21,
        101,
        201,
        1001,
        1001,
        2001,
        3001,
    ]
    assert len({fetched_rows(n) for n in range(1, 1001)}) == len(PAGE_SIZES)
    with pytest.raises(ValueError):
        fetched_rows(0)


async def test_ascending_order_and_equal_start_times_page_by_id(api: Api) -> None:
    ids = [new_id() for _ in range(7)]
    await api.write(*(start(i, at=T0) for i in ids))
    status, first = await api.json("GET", "/v1/calls?limit=4&order=asc")
    status, second = await api.json("GET", first["next"])
    assert status == 200
    assert [r["id"] for r in first["calls"] + second["calls"]] == sorted(ids)
    assert second["next"] is None


async def test_filters_narrow_the_calls(api: Api) -> None:
    inbound = new_id()
    busy = new_id()
    long_call = new_id()
    await api.write(
        start(
            inbound, direction="inbound", source_number="+14045550111", at=T0 + timedelta(hours=1)
        ),
        start(busy, at=T0 + timedelta(hours=2)),
        end(busy, after_s=2 * 3600 + 10, disposition="busy"),
        start(long_call, at=T0 + timedelta(hours=3)),
        answer(long_call),
        end(long_call, after_s=3 * 3600 + 600, consent_outcome="granted"),
    )

    async def ids(query: str) -> set[str]:
        status, body = await api.json("GET", f"/v1/calls?{query}")
        assert status == 200, body
        return {row["id"] for row in body["calls"]}

    assert await ids("direction=inbound") == {inbound}
    assert await ids("number=%28404%29%20555-0111") == {inbound}  # as dialled in the US
    assert await ids("number=%2B14045550111") == {inbound}
    assert await ids("disposition=busy,answered") == {busy, long_call}
    assert await ids("consent=granted") == {long_call}
    assert await ids("min_duration=600") == {long_call}
    start_at = (T0 + timedelta(hours=1, minutes=30)).isoformat().replace("+00:00", "Z")
    end_at = (T0 + timedelta(hours=2, minutes=30)).isoformat()
    assert await ids(f"from={start_at}&to={end_at.replace('+', '%2B')}") == {busy}


async def test_one_call_has_its_trail_recordings_and_media_stats(api: Api) -> None:
    call = new_id()
    await api.write(
        start(call),
        consent_event(call, 1, state="pending", previous=None, method="policy"),
        consent_event(call, 2, state="notified"),
        consent_event(call, 3, state="granted", previous="notified", method="digit", digit="1"),
        recording(call),
        end(call, answered_after_s=5),
    )
    status, body = await api.json("GET", f"/v1/calls/{call}")
    assert status == 200
    assert [e["state"] for e in body["consent_events"]] == ["pending", "notified", "granted"]
    assert body["media_stats"]["a"]["packets_in"] == 3000
    assert body["recordings"][0]["href"].startswith(f"/v1/calls/{call}/recording?id=")
    assert "path" not in body["recordings"][0]
    entries = await audit_entries(api.engine, "acme")
    assert [(e["action"], e["target"]) for e in entries] == [("call.read", call)]
    assert entries[0]["key_id"] is not None


async def test_another_tenants_calls_are_invisible(api: Api) -> None:
    theirs = (await _calls(api, 1, tenant="globex"))[0]
    ours = (await _calls(api, 1))[0]
    status, body = await api.json("GET", "/v1/calls")
    assert [row["id"] for row in body["calls"]] == [ours]
    status, body = await api.json("GET", f"/v1/calls/{theirs}")
    assert status == 404 and body["type"].endswith("not-found")
    status, body = await api.json("GET", f"/v1/calls/{theirs}/recording")
    assert status == 404
    status, body = await api.json("GET", "/v1/calls", who="globex-admin")
    assert [row["id"] for row in body["calls"]] == [theirs]


@pytest.fixture(params=["sqlite-shell", "driver"])
def csv_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways SQLite's CSV is made: the ``sqlite3`` shell, and the driver and :mod:`csv`
    where the shell is not installed (PostgreSQL runs COPY either way)."""
    if request.param == "driver":
        monkeypatch.setattr(export, "SQLITE_SHELL", "callgate-test-no-such-shell")
    elif shutil.which(export.SQLITE_SHELL) is None:
        message = "the sqlite3 shell is missing: scripts/install-test-deps.sh installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return str(request.param)


@pytest.mark.usefixtures("csv_path")
async def test_csv_streams_every_matching_call(api: Api) -> None:
    ids = await _calls(api, 30, source_uri='=HYPERLINK("x")')
    await _calls(api, 3, tenant="globex")
    for query, headers in (("?format=csv", {}), ("", {"Accept": "text/csv"})):
        response = await api.get(f"/v1/calls{query}", headers=headers)
        assert response.status == 200
        assert response.content_type == "text/csv"
        rows = list(csv.DictReader(io.StringIO(await response.text())))
        assert [row["id"] for row in rows] == list(reversed(ids))
        assert rows[0]["source_uri"].startswith("'=")  # not a formula in a spreadsheet
    status, _body = await api.json("GET", "/v1/calls?format=csv&limit=5")
    assert status == 400


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # PostgreSQL has COPY alone
async def test_sqlite_csv_reads_the_same_with_the_shell_or_without(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    if shutil.which(export.SQLITE_SHELL) is None:
        message = "the sqlite3 shell is missing: scripts/install-test-deps.sh installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    ids = await _calls(api, 4, source_uri='sip:"a,b"\r\n@x.example')
    await api.write(end(ids[0], answered_after_s=5))
    """The two paths quote differently (the shell quotes more) and end lines differently
    (LF, CRLF); an RFC 4180 reader reads the same fields from both."""

    async def read() -> list[list[str]]:
        text = await (await api.get("/v1/calls?format=csv")).text()
        return list(csv.reader(io.StringIO(text, newline="")))

    by_shell = await read()
    monkeypatch.setattr(export, "SQLITE_SHELL", "callgate-test-no-such-shell")
    by_driver = await read()
    assert len(by_shell) == 5 and by_shell[1][by_shell[0].index("id")] in ids
    assert by_driver == by_shell


@pytest.mark.usefixtures("csv_path")
async def test_csv_fields_hold_what_the_listing_holds_however_they_must_be_quoted(
    api: Api,
) -> None:
    """RFC 4180: commas, quotes and line breaks inside fields survive, empty values are
    empty fields, and every field reads back as the JSON listing gives it."""
    tricky = {
        "comma": "sip:a,b@x.example",
        "quote": 'sip:"Bob" <b@x.example>',
        "newline": "sip:line\nbreak@x.example",
        "cr": "sip:carriage\rreturn@x.example",
        "plain": "sip:plain@x.example",
    }
    ids = [(await _calls(api, 1, source_uri=uri))[0] for uri in tricky.values()]
    await api.write(end(ids[0], answered_after_s=5))  # numbers and instants, some empty
    response = await api.get("/v1/calls?format=csv")
    assert response.status == 200
    text = await response.text()
    assert text.endswith("\n")  # LF from COPY and the shell, CRLF from the csv module
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(text, newline=""))}
    _, listing = await api.json("GET", "/v1/calls?limit=100")
    assert len(rows) == len(listing["calls"]) == len(tricky)
    for call in listing["calls"]:
        row = rows[call["id"]]
        assert list(row) == list(call)  # the same columns, in the same order
        for name, value in call.items():
            if value is None:
                assert row[name] == "", name
            elif name.endswith("_at"):
                assert datetime.fromisoformat(row[name]) == datetime.fromisoformat(value), name
            elif isinstance(value, float):
                assert float(row[name]) == value, name
            else:
                assert row[name] == str(value), name
    assert {rows[i]["source_uri"] for i in ids} == set(tricky.values())


async def test_bad_queries_get_problem_details(api: Api) -> None:
    cases = {
        "/v1/calls?dispositon=busy": "dispositon",
        "/v1/calls?from=yesterday": "RFC 3339",
        "/v1/calls?from=2026-03-01T00:00:00": "offset",
        "/v1/calls?limit=0": "between",
        "/v1/calls?limit=abc": "whole number",
        "/v1/calls?cursor=not-a-cursor": "cursor",
        "/v1/calls?disposition=busy,nope": "nope",
        "/v1/calls?number=hello": "telephone number",
        "/v1/calls?min_duration=-1": "seconds",
        "/v1/calls?limit=1&limit=2": "more than once",
        "/v1/calls?from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z": "before",
    }
    for path, words in cases.items():
        response = await api.get(path)
        assert response.status == 400, path
        assert response.content_type == "application/problem+json"
        body = await response.json(content_type=None)
        assert words in body["detail"], (path, body)
        assert body["status"] == 400 and body["type"].startswith("urn:callgate:problem:")


async def test_a_cursor_only_continues_its_own_query(api: Api) -> None:
    await _calls(api, 3)
    status, body = await api.json("GET", "/v1/calls?limit=1")
    cursor = body["next_cursor"]
    status, body = await api.json("GET", f"/v1/calls?limit=1&direction=inbound&cursor={cursor}")
    assert status == 400 and "another query" in body["detail"]
    status, body = await api.json("GET", f"/v1/calls?limit=2&cursor={cursor}")
    assert status == 200 and len(body["calls"]) == 2  # the page size may change


async def test_a_recording_is_served_only_once_redacted(api: Api, tmp_path: Path) -> None:
    from sqlalchemy import update

    from gateway.store.models import RECORDINGS

    call = new_id()
    wav = tmp_path / "call.wav"
    wav.write_bytes(b"RIFF" + bytes(60))
    await api.write(start(call), recording(call, path=str(wav)), end(call, answered_after_s=5))
    status, body = await api.json("GET", f"/v1/calls/{call}/recording")
    assert status == 409 and body["type"].endswith("not-redacted"), body
    async with api.engine.begin() as connection:
        await connection.execute(update(RECORDINGS).values(redacted_at=T0))
    response = await api.get(f"/v1/calls/{call}/recording", headers={"Range": "bytes=0-3"})
    assert response.status == 206 and await response.read() == b"RIFF"


async def test_a_sealed_recording_has_an_etag_that_guards_ranges(api: Api, tmp_path: Path) -> None:
    """RFC 9110 13.1.5: a resumed download gets the range only while its If-Range still names
    the recording as served; 13.1.2: If-None-Match with the current tag is 304."""
    import base64
    import hashlib
    import os

    from sqlalchemy import update

    from gateway.analysis.sealed import Keyring, seal_in_place
    from gateway.store.models import RECORDINGS
    from tests.unit.api.conftest import api_settings

    call = new_id()
    audio = b"RIFF" + bytes(range(200))
    wav = tmp_path / "call.wav"
    wav.write_bytes(audio)
    keys = {"k1": base64.b64encode(os.urandom(32)).decode()}
    sealed = seal_in_place(wav, Keyring.from_base64(keys))
    await api.write(start(call), recording(call, path=str(sealed)), end(call, answered_after_s=5))
    async with api.engine.begin() as connection:
        await connection.execute(
            update(RECORDINGS).values(
                key_id="k1", redacted_at=T0, sha256=hashlib.sha256(audio).hexdigest()
            )
        )
    settings = api_settings(tmp_path)
    settings.tenants[0].sealing.keys = keys
    api.context.settings = settings
    path = f"/v1/calls/{call}/recording"

    whole = await api.get(path)
    assert whole.status == 200 and await whole.read() == audio
    etag = whole.headers["ETag"]
    assert etag.startswith('"') and etag.endswith('"')

    resumed = await api.get(path, headers={"Range": "bytes=4-9", "If-Range": etag})
    assert resumed.status == 206 and await resumed.read() == audio[4:10]
    assert resumed.headers["Content-Range"] == f"bytes 4-9/{len(audio)}"

    changed = await api.get(path, headers={"Range": "bytes=4-9", "If-Range": '"an-older-one"'})
    assert changed.status == 200 and await changed.read() == audio  # the whole, new version

    cached = await api.get(path, headers={"If-None-Match": f'"other", W/{etag}'})
    assert cached.status == 304 and cached.headers["ETag"] == etag


async def test_a_listing_past_its_read_budget_gets_a_503_that_says_why(api: Api) -> None:
    """A filter that matches nothing makes the store walk every call of the tenant; past
    the read budget the read is stopped (the reader is shared) and the client told."""
    rows = [
        {
            "id": new_id(),
            "tenant": "acme",
            "call_id": f"c{n}@pbx.example",
            "direction": "inbound",
            "source_uri": "sip:a@pbx.example",
            "destination_uri": "sip:b@trunk.example",
            "source_addr": "127.0.0.1:5070",
            "started_at": T0 + timedelta(seconds=n),
            "duration_s": 30.0,
            "gateway_instance": "gw-test-1",
        }
        for n in range(50_000)
    ]
    async with api.engine.begin() as connection:
        await connection.execute(insert(CALLS), rows)
    await api.context.prepared.close()
    api.context.prepared = PreparedReads(api.engine, timeout_s=0.001)
    status, body = await api.json("GET", "/v1/calls?limit=10&min_duration=1000000")
    assert status == 503, body
    assert body["type"] == "urn:callgate:problem:read-timeout"
    assert "narrow it" in body["detail"] and body["timeout_s"] == 0.001
