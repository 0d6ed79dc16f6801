"""Writer operations refuse malformed values when they are built, with a reason."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gateway.store.writer import CallEnd, CallUpdate, RecordingRecord
from tests.unit.store.records import NOTICE_SHA256, T0, consent_event, end, recording, start


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"record_id": ""}, "record_id"),
        ({"tenant": None}, "tenant"),
        ({"call_id": 17}, "call_id"),
        ({"direction": "sideways"}, "direction must be one of inbound, outbound"),
        ({"started_at": datetime(2026, 3, 1, 12, 0)}, "naive"),
        ({"started_at": "2026-03-01T12:00:00Z"}, "started_at must be a datetime"),
        ({"source_number": 14155550100}, "source_number"),
        ({"source_uri": None}, "source_uri"),
        ({"gateway_instance": ""}, "gateway_instance"),
    ],
)
def test_call_start_refuses(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        start(**fields)


def test_call_start_accepts_unparsed_numbers() -> None:
    op = start(source_number=None, destination_number=None)
    assert op.columns()["source_number"] is None


def test_call_update_sets_only_what_it_carries() -> None:
    when = T0 + timedelta(seconds=3)
    assert CallUpdate("r", answered_at=when).columns() == {"answered_at": when}
    assert CallUpdate("r", b_call_id="b@gw").columns() == {"b_call_id": "b@gw"}
    assert CallUpdate("r").columns() == {}


def test_call_update_refuses_naive_answer_time() -> None:
    with pytest.raises(ValueError, match=r"answered_at .* is naive"):
        CallUpdate("r", answered_at=datetime(2026, 3, 1, 12, 0, 5))


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"disposition": "hung_up"}, "disposition must be one of answered, busy"),
        ({"disposition": None}, "disposition"),
        ({"hangup_by": "operator"}, "hangup_by must be one of caller, callee, gateway"),
        ({"final_status": 99}, "final_status"),
        ({"final_status": 700}, "final_status"),
        ({"final_status": "200"}, "final_status"),
        ({"final_status": True}, "final_status"),
        ({"ended_at": datetime(2026, 3, 1, 12, 1)}, "ended_at .* is naive"),
        ({"media_stats": [1, 2]}, "media_stats must be a mapping"),
        ({"end_reason": 5}, "end_reason"),
    ],
)
def test_call_end_refuses(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        end("r", **fields)


def test_call_end_keeps_an_earlier_answer_when_it_repeats_none() -> None:
    without = CallEnd("r", ended_at=T0, disposition="answered", answered_at=None)
    assert "answered_at" not in without.columns()
    with_answer = CallEnd("r", ended_at=T0, disposition="answered", answered_at=T0)
    assert with_answer.columns()["answered_at"] == T0


def test_call_end_gateway_restart_is_a_disposition() -> None:
    op = CallEnd("r", ended_at=datetime.now(UTC), disposition="gateway_restart")
    assert op.columns()["disposition"] == "gateway_restart"


# -- consent ---------------------------------------------------------------------


def test_call_start_carries_the_consent_rule() -> None:
    rules = [{"role": "callee", "jurisdiction": "DE", "mode": "opt_in", "known": True}]
    columns = start(
        consent_mode="opt_in", consent_parties="all", consent_rules=rules, policy_version="v7"
    ).columns()
    assert columns["consent_mode"] == "opt_in"
    assert columns["consent_parties"] == "all"
    assert columns["consent_rules"] == rules
    assert columns["consent_rules"][0] is not rules[0]
    assert columns["policy_version"] == "v7"
    assert start().columns()["consent_rules"] is None


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"consent_mode": "ask"}, "consent_mode must be one of notice, opt_out, opt_in, none"),
        ({"consent_parties": "both"}, "consent_parties must be one of one, all"),
        ({"consent_rules": {"role": "caller"}}, "consent_rules must be a list of mappings"),
        ({"consent_rules": "US-CA"}, "consent_rules must be a list of mappings"),
        ({"consent_rules": ["US-CA"]}, r"consent_rules\[0\] must be a mapping"),
        ({"consent_rules": [{1: "caller"}]}, r"consent_rules\[0\] has a key 1"),
        ({"consent_rules": [{"at": T0}]}, r"consent_rules\[0\]\.at holds a datetime"),
        ({"consent_rules": [{"x": float("nan")}]}, "JSON cannot represent"),
        (
            {"consent_rules": [{"a": [1, {"b": {2.5, 3}}]}]},
            r"^consent_rules\[0\]\.a\[1\]\.b holds a set, which is not JSON$",
        ),
        (
            {"consent_rules": [{"a": [{}, {"b": [{7: 1}]}]}]},
            r"^consent_rules\[0\]\.a\[1\]\.b\[0\] has a key 7",
        ),
        ({"policy_version": 3}, "policy_version"),
    ],
)
def test_call_start_refuses_a_malformed_consent_rule(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        start(**fields)


def test_call_update_sets_the_outcome_only_when_given() -> None:
    update = CallUpdate("r", consent_outcome="declined", notice_sha256=NOTICE_SHA256)
    assert update.columns() == {"consent_outcome": "declined", "notice_sha256": NOTICE_SHA256}
    assert "consent_outcome" not in CallUpdate("r", b_call_id="b@gw").columns()


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"consent_outcome": "maybe"}, "consent_outcome must be one of granted, declined"),
        ({"notice_sha256": "abc"}, "notice_sha256 must be a SHA-256 digest"),
        ({"notice_sha256": NOTICE_SHA256.upper()}, "lowercase hex"),
    ],
)
def test_call_update_refuses(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        CallUpdate("r", **fields)


def test_call_end_sets_consent_fields_only_when_given() -> None:
    columns = end(
        "r", consent_outcome="timed_out", capture_s=0, notice_sha256=NOTICE_SHA256
    ).columns()
    assert columns["consent_outcome"] == "timed_out"
    assert columns["capture_s"] == 0.0
    assert isinstance(columns["capture_s"], float)
    assert columns["notice_sha256"] == NOTICE_SHA256
    plain = end("r").columns()
    assert not {"consent_outcome", "capture_s", "notice_sha256"} & set(plain)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"consent_outcome": "ok"}, "consent_outcome must be one of"),
        ({"capture_s": -0.5}, "capture_s must be a finite number of seconds >= 0"),
        ({"capture_s": float("inf")}, "capture_s"),
        ({"capture_s": "12"}, "capture_s"),
        ({"capture_s": True}, "capture_s"),
        ({"notice_sha256": 42}, "notice_sha256"),
    ],
)
def test_call_end_refuses_malformed_consent_fields(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        end("r", **fields)


def test_consent_event_row() -> None:
    op = consent_event("r", 4, state="declined", previous="notified", method="digit", digit="9")
    row = op.row()
    assert row["call_record_id"] == "r"
    assert (row["seq"], row["state"], row["previous"]) == (4, "declined", "notified")
    assert row["digit"] == "9"
    assert "id" not in row


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"record_id": ""}, "record_id must be a non-empty string"),
        ({"tenant": None}, "tenant"),
        ({"seq": 0}, "seq must be a whole number >= 1"),
        ({"seq": 1.0}, "seq"),
        ({"seq": True}, "seq"),
        ({"at": datetime(2026, 3, 1, 12, 0)}, "at .* is naive"),
        ({"party": "agent"}, "party must be one of caller, callee, call"),
        ({"state": "consented"}, "state must be one of pending, notified, granted"),
        ({"previous": "unknown"}, "previous must be one of"),
        ({"method": "dtmf"}, "method must be one of implied, digit, info"),
        ({"policy_version": ""}, "policy_version must be a non-empty string"),
        ({"digit": "12"}, "digit must be one of 0, 1"),
        ({"digit": 1}, "digit"),
        ({"notice_sha256": "0" * 63}, "notice_sha256"),
        ({"detail": ["pressed", "9"]}, "detail must be a string or None"),
    ],
)
def test_consent_event_refuses(fields: dict[str, Any], reason: str) -> None:
    values: dict[str, Any] = {"seq": 1, **fields}
    record_id = values.pop("record_id", "r")
    with pytest.raises(ValueError, match=reason):
        consent_event(record_id, **values)


def test_consent_event_of_the_whole_call_without_notice() -> None:
    op = consent_event("r", 2, party="call", state="paused", previous="granted",
                       method="info", notice_sha256=None, digit="*")  # fmt: skip
    assert op.row()["party"] == "call"
    assert op.row()["notice_sha256"] is None


def test_recording_defaults_to_a_fresh_id_wav_and_now() -> None:
    before = datetime.now(UTC)
    first = _recording_with_defaults()
    second = _recording_with_defaults()
    assert first.recording_id != second.recording_id
    assert uuid.UUID(first.recording_id).version == 4
    assert first.format == "wav"
    assert before <= first.created_at <= datetime.now(UTC)
    row = first.row()
    assert (row["id"], row["call_record_id"], row["format"]) == (first.recording_id, "r", "wav")


def _recording_with_defaults() -> RecordingRecord:
    return RecordingRecord(
        record_id="r",
        tenant="acme",
        path="/var/lib/callgate/recordings/r.wav",
        channels=2,
        sample_rate=8000,
        started_at=T0,
        ended_at=T0 + timedelta(seconds=2),
        duration_s=2.0,
        bytes=64044,
        sha256=NOTICE_SHA256,
    )


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"path": ""}, "path must be a non-empty string"),
        ({"format": "mp3"}, "format must be one of wav"),
        ({"channels": 0}, "channels must be a whole number >= 1"),
        ({"sample_rate": 8000.0}, "sample_rate"),
        ({"started_at": "2026-03-01T12:00:12Z"}, "started_at must be a datetime"),
        ({"ended_at": T0}, "ended_at .* is before started_at"),
        ({"duration_s": -1}, "duration_s must be a finite number of seconds >= 0"),
        ({"bytes": -1}, "bytes must be a whole number >= 0"),
        ({"sha256": "not-a-digest"}, "sha256 must be a SHA-256 digest"),
        ({"recording_id": ""}, "recording_id"),
        ({"created_at": datetime(2026, 3, 1, 12, 2)}, "created_at .* is naive"),
    ],
)
def test_recording_refuses(fields: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        recording("r", **fields)
