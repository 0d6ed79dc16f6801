"""DTMF digits in SIP INFO bodies: application/dtmf-relay and application/dtmf."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sip.dtmf_info import DtmfInfo, DtmfInfoError, parse_dtmf_info
from gateway.sip.message import SipRequest, parse_message

RELAY = "application/dtmf-relay"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"Signal=5\r\nDuration=160\r\n", DtmfInfo("5", 160)),
        (b"Signal=5\nDuration=160\n", DtmfInfo("5", 160)),
        (b"Signal= 5\r\nDuration= 250\r\n", DtmfInfo("5", 250)),  # Cisco's spacing
        (b"signal = #\r\nduration = 100", DtmfInfo("#", 100)),
        (b"SIGNAL=*", DtmfInfo("*")),
        (b"Signal=10\r\nDuration=160\r\n", DtmfInfo("*", 160)),
        (b"Signal=11\r\nDuration=160\r\n", DtmfInfo("#", 160)),
        (b"Signal=a\r\n", DtmfInfo("A")),
        (b"Signal=D\r\n", DtmfInfo("D")),
        (b"\r\nSignal=0\r\n\r\nDuration=0\r\n\r\n", DtmfInfo("0", 0)),
        (b"Duration=160\r\nSignal=9\r\n", DtmfInfo("9", 160)),
        (b"Signal=\t3\t\r\nDuration=\t80\r\nVolume=10\r\n", DtmfInfo("3", 80)),
    ],
)
def test_dtmf_relay_bodies(body: bytes, expected: DtmfInfo) -> None:
    assert parse_dtmf_info(RELAY, body) == expected


@pytest.mark.parametrize("digit", list("0123456789*#ABCD"))
def test_every_digit_in_dtmf_relay(digit: str) -> None:
    assert parse_dtmf_info(RELAY, f"Signal={digit}\r\n".encode()) == DtmfInfo(digit)
    lower = digit.lower()
    assert parse_dtmf_info(RELAY, f"Signal={lower}\r\n".encode()) == DtmfInfo(digit)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"", "no Signal"),
        (b"Duration=160\r\n", "no Signal"),
        (b"Signal=\r\n", "not a DTMF digit"),
        (b"Signal=E\r\n", "not a DTMF digit"),
        (b"Signal=12\r\n", "not a DTMF digit"),
        (b"Signal=55\r\n", "not a DTMF digit"),
        (b"Signal=!\r\n", "not a DTMF digit"),  # hook flash
        (b"Signal=5\r\nDuration=-1\r\n", "Duration"),
        (b"Signal=5\r\nDuration=1.5\r\n", "Duration"),
        (b"Signal=5\r\nDuration=9999999999\r\n", "Duration"),
        (b"Signal=5\r\nDuration=\xd9\xa1\r\n", "ASCII"),
        (b"Signal=5\r\nDuration=\r\n", "Duration"),
        (b"Signal 5\r\n", "without '='"),
        (b"Signal=5\r\nSignal=6\r\n", "repeats"),
        (b"Signal=\xff\r\n", "ASCII"),
    ],
)
def test_bad_dtmf_relay_bodies(body: bytes, reason: str) -> None:
    with pytest.raises(DtmfInfoError, match=reason):
        parse_dtmf_info(RELAY, body)


@pytest.mark.parametrize(
    ("body", "digit"),
    [(b"5", "5"), (b"#\r\n", "#"), (b"  *  ", "*"), (b"\tb\n", "B"), (b"11", "#")],
)
def test_application_dtmf_bodies(body: bytes, digit: str) -> None:
    assert parse_dtmf_info("application/dtmf", body) == DtmfInfo(digit, None)


@pytest.mark.parametrize("body", [b"", b"  \r\n", b"55", b"Signal=5", b"x", b"\x00"])
def test_bad_application_dtmf_bodies(body: bytes) -> None:
    with pytest.raises(DtmfInfoError):
        parse_dtmf_info("application/dtmf", body)


@pytest.mark.parametrize(
    "content_type",
    [
        "Application/DTMF-Relay",
        "application/dtmf-relay; charset=us-ascii",
        " application/dtmf-relay ;x=y",
    ],
)
def test_content_type_case_and_parameters_are_ignored(content_type: str) -> None:
    assert parse_dtmf_info(content_type, b"Signal=7\r\n") == DtmfInfo("7")


@pytest.mark.parametrize(
    "content_type",
    [None, "", "application/sdp", "text/plain", "application/dtmf-relayx", "audio/dtmf"],
)
def test_other_content_types_are_not_dtmf(content_type: str | None) -> None:
    assert parse_dtmf_info(content_type, b"Signal=7\r\n") is None
    assert parse_dtmf_info(content_type, b"\xff\xfe garbage") is None


def test_from_a_parsed_info_request() -> None:
    body = b"Signal=8\r\nDuration=200\r\n"
    raw = (
        b"INFO sip:gw@127.0.0.1:5060 SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-info-1\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:alice@127.0.0.1>;tag=a1\r\n"
        b"To: <sip:gw@127.0.0.1>;tag=g1\r\n"
        b"Call-ID: dtmf-info-1@127.0.0.1\r\n"
        b"CSeq: 3 INFO\r\n"
        b"Content-Type: application/dtmf-relay\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )
    request = parse_message(raw)
    assert isinstance(request, SipRequest)
    assert parse_dtmf_info(request.headers.get("Content-Type"), request.body) == DtmfInfo("8", 200)
    assert parse_dtmf_info(request.content_type, request.body) == DtmfInfo("8", 200)


@given(
    st.sampled_from([RELAY, "application/dtmf", "APPLICATION/DTMF; a=b"]),
    st.binary(max_size=200),
)
def test_random_bodies_raise_nothing_but_dtmf_info_error(content_type: str, body: bytes) -> None:
    try:
        result = parse_dtmf_info(content_type, body)
    except DtmfInfoError:
        return
    assert result is not None
    assert result.digit in "0123456789*#ABCD" and len(result.digit) == 1


relay_lines = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["Signal", "signal", "Duration", "DURATION"]), st.text()),
        st.tuples(st.text(), st.text()),
    ),
    max_size=6,
)


@given(relay_lines, st.sampled_from(["\r\n", "\n"]), st.sampled_from(["=", " = ", "= "]))
def test_random_relay_text_raises_nothing_but_dtmf_info_error(
    lines: list[tuple[str, str]], newline: str, equals: str
) -> None:
    body = newline.join(key + equals + value for key, value in lines).encode("utf-8")
    try:
        result = parse_dtmf_info(RELAY, body)
    except DtmfInfoError:
        return
    assert result is not None
    assert result.digit in "0123456789*#ABCD" and len(result.digit) == 1
    assert result.duration_ms is None or result.duration_ms >= 0
