"""RTP packets (RFC 3550 5.1) and the first-octet demultiplexing of media ports."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.media.rtp import (
    DTLS,
    RTCP,
    RTP,
    STUN,
    TURN_CHANNEL,
    UNKNOWN,
    ZRTP,
    RtpPacket,
    RtpParseError,
    classify,
)
from tests.unit.media.udp_phone import rtcp_rr, rtp


def test_parse_the_fixed_header() -> None:
    packet = RtpPacket.parse(rtp(513, timestamp=0xDEADBEEF, ssrc=0x01020304, payload=b"abc"))
    assert packet == RtpPacket(
        payload_type=0,
        sequence_number=513,
        timestamp=0xDEADBEEF,
        ssrc=0x01020304,
        payload=b"abc",
    )


def test_wire_format_of_a_full_packet() -> None:
    packet = RtpPacket(
        payload_type=101,
        sequence_number=1,
        timestamp=2,
        ssrc=3,
        payload=b"\x05",
        marker=True,
        csrcs=(7,),
        extension_profile=0xBEDE,
        extension=b"\x10\xaa\x00\x00",
        padding=3,
    )
    assert bytes(packet) == (
        b"\xb1\xe5\x00\x01\x00\x00\x00\x02\x00\x00\x00\x03"  # V=2 P X CC=1, M PT=101
        b"\x00\x00\x00\x07"  # CSRC
        b"\xbe\xde\x00\x01\x10\xaa\x00\x00"  # extension: profile, 1 word
        b"\x05"  # payload
        b"\x00\x00\x03"  # padding, last octet counts it
    )
    assert RtpPacket.parse(bytes(packet)) == packet


@given(
    payload_type=st.integers(0, 127).filter(lambda pt: not 64 <= pt <= 95),
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
    extension_words=st.one_of(st.none(), st.integers(0, 4)),
    padding=st.integers(0, 255),
)
def test_round_trip(
    payload_type: int,
    sequence_number: int,
    timestamp: int,
    ssrc: int,
    payload: bytes,
    marker: bool,
    csrcs: tuple[int, ...],
    extension_words: int | None,
    padding: int,
) -> None:
    packet = RtpPacket(
        payload_type=payload_type,
        sequence_number=sequence_number,
        timestamp=timestamp,
        ssrc=ssrc,
        payload=payload,
        marker=marker,
        csrcs=csrcs,
        extension_profile=None if extension_words is None else 0x1000,
        extension=b"\x01\x02\x03\x04" * (extension_words or 0),
        padding=padding,
    )
    assert RtpPacket.parse(bytes(packet)) == packet


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x80\x00\x00", "shorter than the RTP fixed header"),
        (b"\x40" + bytes(11), "version must be 2"),
        (b"\x80\xc8\x00\x06" + bytes(24), "is RTCP"),  # a sender report
        (b"\x82" + bytes(11) + bytes(4), "CSRC count 2 runs past"),
        (b"\x90" + bytes(11), "no extension header"),
        (b"\x90" + bytes(11) + b"\x00\x00\x00\x02" + bytes(4), "extension of 2 words"),
        (b"\xa0" + bytes(11) + b"\x00", "padding count 0"),
        (b"\xa0" + bytes(11) + b"\x00\x09", "padding count 9"),
    ],
)
def test_malformed_packets_are_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(RtpParseError, match=reason):
        RtpPacket.parse(data)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("payload_type", 128),
        ("sequence_number", 65536),
        ("timestamp", -1),
        ("csrcs", tuple(range(16))),
        ("extension", b"\x00"),
        ("padding", 256),
    ],
)
def test_out_of_range_fields_are_refused(field: str, value: object) -> None:
    fields: dict[str, object] = {
        "payload_type": 0,
        "sequence_number": 0,
        "timestamp": 0,
        "ssrc": 0,
    }
    fields[field] = value
    if field == "extension":
        fields["extension_profile"] = 1
    with pytest.raises(ValueError):
        RtpPacket(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (rtp(1), RTP),
        (rtcp_rr(), RTCP),
        (b"\x00\x01\x00\x00" + bytes(16), STUN),
        (b"\x10" + bytes(10), ZRTP),
        (b"\x16\xfe\xfd" + bytes(10), DTLS),
        (b"\x40\x00\x00\x04abcd", TURN_CHANNEL),
        (b"\xff\x00", UNKNOWN),
        (b"", UNKNOWN),
        (b"\x80", RTP),
    ],
)
def test_classify_by_first_octets(data: bytes, kind: str) -> None:
    assert classify(data) == kind
