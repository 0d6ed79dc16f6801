"""Data subjects: export everything about a number, erase it, end to end in the store."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from gateway.store.audit import audit_entries
from tests.unit.api.conftest import Api, add_transcript
from tests.unit.store.records import T0, consent_event, end, new_id, recording, start

SUBJECT = "+14045550123"


async def _subject_calls(api: Api, tmp_path: Path) -> tuple[str, str, str, Path]:
    """Two acme calls with the subject (one each way, one recorded), one without, and a
    globex call from the same number."""
    first, second, other, theirs = new_id(), new_id(), new_id(), new_id()
    wav = tmp_path / "recordings" / f"{first}.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    wav.write_bytes(b"RIFF....WAVE")
    await api.write(
        start(first, source_number=SUBJECT, source_uri=f"sip:{SUBJECT}@trunk.example"),
        consent_event(first, 1),
        recording(first, path=str(wav)),
        end(first, answered_after_s=5),
        start(
            second,
            at=T0 + timedelta(hours=1),
            destination_number=SUBJECT,
            destination_uri=f"sip:{SUBJECT}@trunk.example",
        ),
        start(other, at=T0 + timedelta(hours=2)),
        start(theirs, tenant="globex", source_number=SUBJECT),
    )
    return first, second, theirs, wav


async def test_export_holds_the_subjects_calls_of_this_tenant_only(
    api: Api, tmp_path: Path
) -> None:
    first, second, _theirs, _ = await _subject_calls(api, tmp_path)
    status, body = await api.json("GET", "/v1/subjects/(404)%20555-0123/export", who="acme-admin")
    assert status == 200, body
    assert body["number"] == SUBJECT
    assert [call["id"] for call in body["calls"]] == [first, second]
    assert body["calls"][0]["consent_events"][0]["seq"] == 1
    assert body["calls"][0]["recordings"][0]["href"].startswith(f"/v1/calls/{first}/recording")


async def test_erasure_removes_recordings_and_the_number_but_keeps_counts(
    api: Api, tmp_path: Path
) -> None:
    first, second, theirs, wav = await _subject_calls(api, tmp_path)
    await add_transcript(api.engine, first, T0 + timedelta(minutes=5))
    await add_transcript(api.engine, second, T0 + timedelta(hours=1), live=True)
    _, stats_before = await api.json(
        "GET", "/v1/stats?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z"
    )

    status, body = await api.json("DELETE", f"/v1/subjects/{SUBJECT}", who="acme-admin")
    assert status == 200, body
    assert body["calls"] == 2 and body["recordings"] == 1 and body["files_removed"] == 1
    token = body["erased_as"]
    assert token.startswith("erased:") and SUBJECT not in token
    assert not wav.exists()

    _, found = await api.json("GET", f"/v1/calls?number={SUBJECT}".replace("+", "%2B"))
    assert found["calls"] == []
    status, call = await api.json("GET", f"/v1/calls/{first}")
    assert call["source_number"] == token and call["source_uri"] == token
    assert call["recordings"] == []
    for erased in (first, second):  # what the subject said goes, live pieces too
        _, said = await api.json("GET", f"/v1/calls/{erased}/transcript")
        assert said["transcripts"] == [] and said["redactions"] == []
    status, call = await api.json("GET", f"/v1/calls/{second}")
    assert call["destination_number"] == token and SUBJECT not in str(call)
    _, stats_after = await api.json(
        "GET", "/v1/stats?from=2026-03-01T00:00:00Z&to=2026-03-02T00:00:00Z"
    )
    assert stats_after["totals"] == stats_before["totals"]
    # another tenant's record of the same person is that tenant's to erase
    _, theirs_call = await api.json("GET", f"/v1/calls/{theirs}", who="globex-admin")
    assert theirs_call["source_number"] == SUBJECT

    status, again = await api.json("DELETE", f"/v1/subjects/{SUBJECT}", who="acme-admin")
    # again: the same calls (found by the token now), nothing left to remove
    assert status == 200 and again["calls"] == 2 and again["recordings"] == 0
    assert again["erased_as"] == token
    entries = await audit_entries(api.engine, "acme")
    erasures = [e for e in entries if e["action"] == "subject.erase"]
    assert len(erasures) == 2 and all(e["target"] == token for e in erasures)
    assert not any(SUBJECT in str(e) for e in entries)  # the audit log does not undo it


async def test_a_subject_must_be_a_number(api: Api) -> None:
    status, body = await api.json("DELETE", "/v1/subjects/someone", who="acme-admin")
    assert status == 400 and "telephone number" in body["detail"]


async def test_an_extension_no_valid_number_names_is_found_by_its_uri_and_erased(
    api: Api,
) -> None:
    """An extension (or a short code) is no E.164 number: the records hold no number for
    it, only the parties' URIs; export and erasure find it there, and no longer number."""
    outgoing, incoming, longer = new_id(), new_id(), new_id()
    await api.write(
        start(outgoing, source_number=None, source_uri="sip:1234@pbx.example;user=phone"),
        start(
            incoming,
            at=T0 + timedelta(minutes=5),
            destination_number=None,
            destination_uri="sip:1234;phone-context=pbx@pbx.example",
        ),
        start(longer, at=T0 + timedelta(minutes=9), source_uri="sip:12345@pbx.example"),
    )
    status, body = await api.json("GET", "/v1/subjects/12-34/export", who="acme-admin")
    assert status == 200, body
    assert body["number"] == "1234"
    assert sorted(call["id"] for call in body["calls"]) == sorted([outgoing, incoming])

    status, erased = await api.json("DELETE", "/v1/subjects/1234", who="acme-admin")
    assert status == 200 and erased["calls"] == 2, erased
    token = erased["erased_as"]
    _, call = await api.json("GET", f"/v1/calls/{outgoing}")
    assert call["source_uri"] == token and call["source_number"] == token
    _, call = await api.json("GET", f"/v1/calls/{incoming}")
    assert call["destination_uri"] == token and "1234" not in str(call)
    _, call = await api.json("GET", f"/v1/calls/{longer}")
    assert call["source_uri"] == "sip:12345@pbx.example"  # another extension: untouched
    _, again = await api.json("GET", "/v1/subjects/1234/export", who="acme-admin")
    assert again["calls"] == []
