"""RFC 4733 telephone-events: payload parsing and one digit per key press."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.media.rtp import RtpPacket
from gateway.media.telephone_event import (
    DIGIT_EVENTS,
    TelephoneEvent,
    TelephoneEventError,
    TelephoneEventReceiver,
    event_digit,
    parse_event,
)
from tests.support.pcap import PcapError, read_udp_datagrams

MEDIA_DIR = Path(__file__).resolve().parents[2] / "integration" / "media"
PT_TELEPHONE_EVENT = 101  # what the capture files use (see make_media.py)
SSRC = 0x1234ABCD
STEP = 160  # 20 ms at 8 kHz
MAX_DURATION = 0xFFFF

Packet = tuple[int, int, bool, bytes]  # ssrc, timestamp, marker, payload


def payload(event: int, duration: int, end: bool = False, volume: int = 10) -> bytes:
    return struct.pack("!BBH", event, (0x80 if end else 0) | volume, duration)


def press(
    event: int,
    timestamp: int,
    steps: int = 5,
    ssrc: int = SSRC,
    end_repeats: int = 3,
) -> list[Packet]:
    """A sender's packets for one press (RFC 4733 2.5.1): a marked first packet, updates
    every 20 ms, then the end packet ``end_repeats`` times (2.5.1.4)."""
    packets: list[Packet] = [
        (ssrc, timestamp, step == 1, payload(event, step * STEP)) for step in range(1, steps)
    ]
    final = payload(event, steps * STEP, end=True)
    packets += [(ssrc, timestamp, steps == 1, final)] * end_repeats
    return packets


def feed_all(receiver: TelephoneEventReceiver, packets: list[Packet]) -> str:
    return "".join(digit for packet in packets if (digit := receiver.feed(*packet)) is not None)


# ------------------------------------------------------------------ parse_event


def test_parse_event_reads_every_field() -> None:
    assert parse_event(bytes([11, 0x80 | 0x40 | 37, 0x12, 0x34])) == TelephoneEvent(
        event=11, end=True, volume=37, duration=0x1234
    )
    assert parse_event(bytes([5, 0x3F, 0, 0])) == TelephoneEvent(5, False, 63, 0)


def test_parse_event_ignores_the_reserved_bit_and_trailing_octets() -> None:
    with_reserved = parse_event(bytes([7, 0x40 | 10, 0x01, 0x40]) + b"\xff" * 5)
    assert with_reserved == TelephoneEvent(event=7, end=False, volume=10, duration=320)


@pytest.mark.parametrize("length", [0, 1, 2, 3])
def test_parse_event_rejects_short_payloads(length: int) -> None:
    with pytest.raises(TelephoneEventError, match="shorter"):
        parse_event(bytes(length))
    assert issubclass(TelephoneEventError, ValueError)


def test_digit_of_each_event_code() -> None:
    assert [event_digit(code) for code in range(16)] == list("0123456789*#ABCD")
    assert event_digit(16) is None  # flash
    assert event_digit(255) is None
    assert parse_event(payload(10, 160)).digit == "*"
    assert parse_event(payload(16, 160)).digit is None


# ------------------------------------------------------------------ one press, once


def test_a_normal_press_is_one_digit_reported_on_its_first_packet() -> None:
    receiver = TelephoneEventReceiver()
    packets = press(5, timestamp=8000, steps=5)
    assert receiver.feed(*packets[0]) == "5"
    assert [receiver.feed(*packet) for packet in packets[1:]] == [None] * (len(packets) - 1)
    assert receiver.presses == 1
    assert receiver.last_digit == "5"


def test_the_marked_first_packet_lost() -> None:
    receiver = TelephoneEventReceiver()
    assert feed_all(receiver, press(3, timestamp=1000)[1:]) == "3"


def test_only_the_end_packets_arrive() -> None:
    receiver = TelephoneEventReceiver()
    only_ends = [packet for packet in press(7, timestamp=1000) if packet[3][1] & 0x80]
    assert len(only_ends) == 3
    assert feed_all(receiver, only_ends) == "7"
    assert receiver.presses == 1


def test_a_single_packet_press_with_marker_and_end() -> None:
    receiver = TelephoneEventReceiver()
    assert feed_all(receiver, press(0, timestamp=1000, steps=1)) == "0"


def test_the_same_digit_twice_back_to_back_is_two_presses() -> None:
    receiver = TelephoneEventReceiver()
    first = press(1, timestamp=16000, steps=5)
    second = press(1, timestamp=16000 + 5 * STEP + 2 * STEP, steps=5)  # 40 ms pause
    assert feed_all(receiver, first + second) == "11"
    assert receiver.presses == 2


def test_the_next_press_may_start_where_the_last_ended() -> None:
    receiver = TelephoneEventReceiver()
    first = press(4, timestamp=16000, steps=5)
    second = press(4, timestamp=16000 + 5 * STEP, steps=5)
    assert feed_all(receiver, first + second) == "44"


def test_an_ended_press_is_never_continued() -> None:
    receiver = TelephoneEventReceiver()
    first = press(4, timestamp=16000, steps=5)
    second_marker_lost = press(4, timestamp=16000 + 5 * STEP, steps=5)[1:]
    assert feed_all(receiver, first + second_marker_lost) == "44"


def long_event(event: int, timestamp: int, last_seen_duration: int = MAX_DURATION) -> list[Packet]:
    """A press longer than the 16-bit duration (RFC 4733 2.5.1.3): a first segment that
    reaches the maximum duration without an end bit, then a segment whose timestamp is
    the first's plus its duration, without marker, that ends. ``last_seen_duration``
    cuts off the first segment's last packets, as if they were lost."""
    first = [
        (SSRC, timestamp, duration == STEP, payload(event, duration))
        for duration in range(STEP, MAX_DURATION, STEP)
        if duration <= last_seen_duration
    ]
    if last_seen_duration == MAX_DURATION:
        first.append((SSRC, timestamp, False, payload(event, MAX_DURATION)))
    second_start = (timestamp + MAX_DURATION) % (1 << 32)
    second = [(SSRC, second_start, False, payload(event, step * STEP)) for step in range(1, 4)]
    second += [(SSRC, second_start, False, payload(event, 4 * STEP, end=True))] * 3
    return first + second


def test_a_long_event_continued_in_a_new_segment_is_one_press() -> None:
    receiver = TelephoneEventReceiver()
    assert feed_all(receiver, long_event(9, timestamp=50_000)) == "9"
    assert receiver.presses == 1


def test_a_long_event_whose_segment_end_was_lost_is_one_press() -> None:
    receiver = TelephoneEventReceiver()
    packets = long_event(2, timestamp=50_000, last_seen_duration=MAX_DURATION - 4 * STEP)
    assert feed_all(receiver, packets) == "2"


def test_a_long_event_across_timestamp_wrap_around_is_one_press() -> None:
    receiver = TelephoneEventReceiver()
    assert feed_all(receiver, long_event(6, timestamp=0xFFFF_F000)) == "6"


def test_three_segments_are_one_press() -> None:
    receiver = TelephoneEventReceiver()
    start = 1_000
    packets: list[Packet] = []
    for segment in range(3):
        timestamp = start + segment * MAX_DURATION
        packets.append((SSRC, timestamp, segment == 0, payload(8, STEP)))
        packets.append((SSRC, timestamp, False, payload(8, MAX_DURATION, end=segment == 2)))
    assert feed_all(receiver, packets) == "8"


def test_a_new_timestamp_far_from_an_unended_segment_is_a_new_press() -> None:
    receiver = TelephoneEventReceiver()
    no_end = press(5, timestamp=1000, steps=5, end_repeats=0)  # end packets all lost
    later = press(5, timestamp=1000 + 4 * STEP + 2000, steps=5)
    assert feed_all(receiver, no_end + later) == "55"


def test_a_marked_packet_starts_a_new_press_even_where_a_segment_would_continue() -> None:
    receiver = TelephoneEventReceiver()
    first = [(SSRC, 1000, True, payload(5, 800))]
    second = [(SSRC, 1800, True, payload(5, 160))]
    assert feed_all(receiver, first + second) == "55"


def test_a_different_event_is_never_a_continuation() -> None:
    receiver = TelephoneEventReceiver()
    first = [(SSRC, 1000, True, payload(5, MAX_DURATION))]
    second = [(SSRC, 1000 + MAX_DURATION, False, payload(6, 160, end=True))]
    assert feed_all(receiver, first + second) == "56"


def test_reordered_packets_of_one_press() -> None:
    receiver = TelephoneEventReceiver()
    packets = press(3, timestamp=4000, steps=6)
    assert feed_all(receiver, packets[::-1]) == "3"
    shuffled = press(8, timestamp=9000, steps=6)
    shuffled = shuffled[3::2] + shuffled[0::2] + shuffled[1:3:2]
    assert feed_all(receiver, shuffled) == "8"
    assert receiver.presses == 2


def test_late_packets_of_a_press_after_the_next_press_started() -> None:
    receiver = TelephoneEventReceiver()
    first = press(1, timestamp=4000, steps=5)
    second = press(2, timestamp=4000 + 7 * STEP, steps=5)
    packets = first[:2] + second[:2] + first[2:] + second[2:]
    assert feed_all(receiver, packets) == "12"


def test_all_sixteen_digits() -> None:
    receiver = TelephoneEventReceiver()
    packets: list[Packet] = []
    for code in range(16):
        packets += press(code, timestamp=10_000 + code * 2000)
    assert feed_all(receiver, packets) == DIGIT_EVENTS == "0123456789*#ABCD"
    assert receiver.presses == 16
    assert receiver.last_digit == "D"


@pytest.mark.parametrize("code", [16, 17, 32, 255])
def test_flash_and_other_events_are_no_digits(code: int) -> None:
    receiver = TelephoneEventReceiver()
    assert feed_all(receiver, press(code, timestamp=1000)) == ""
    assert receiver.presses == 0
    assert receiver.last_digit is None


def test_a_new_ssrc_is_a_new_source_of_presses() -> None:
    receiver = TelephoneEventReceiver()
    first = press(5, timestamp=1000, ssrc=1)
    same_timestamp_new_ssrc = press(5, timestamp=1000, ssrc=2)
    assert feed_all(receiver, first + same_timestamp_new_ssrc) == "55"


def test_continuation_is_per_ssrc() -> None:
    receiver = TelephoneEventReceiver()
    first = [(1, 1000, True, payload(5, MAX_DURATION))]
    elsewhere = [(2, 1000 + MAX_DURATION, False, payload(5, 160, end=True))]
    assert feed_all(receiver, first + elsewhere) == "55"


def test_a_malformed_payload_is_counted_not_raised() -> None:
    receiver = TelephoneEventReceiver()
    assert receiver.feed(SSRC, 1000, True, b"\x05\x0a") is None
    assert receiver.feed(SSRC, 1000, True, b"") is None
    assert receiver.malformed == 2
    assert receiver.presses == 0
    assert feed_all(receiver, press(5, timestamp=1000)) == "5"


def test_memory_is_bounded() -> None:
    receiver = TelephoneEventReceiver(memory=2)
    presses = [press(digit, timestamp=1000 + digit * 2000) for digit in range(4)]
    assert feed_all(receiver, [packet for packets in presses for packet in packets]) == "0123"
    # press 3 is remembered, press 0 is not (two newer presses were seen since)
    assert feed_all(receiver, presses[3][-1:]) == ""
    assert feed_all(receiver, presses[0][-1:]) == "0"


def test_receiver_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="memory"):
        TelephoneEventReceiver(memory=0)
    with pytest.raises(ValueError, match="tolerance"):
        TelephoneEventReceiver(continuation_tolerance=-1)


@given(
    st.lists(
        st.tuples(
            st.integers(0, 0xFFFFFFFF),
            st.integers(0, 0xFFFFFFFF),
            st.booleans(),
            st.binary(max_size=12),
        ),
        max_size=60,
    )
)
def test_any_packets_give_digits_or_none(packets: list[Packet]) -> None:
    receiver = TelephoneEventReceiver(memory=4)
    digits = feed_all(receiver, packets)
    assert set(digits) <= set(DIGIT_EVENTS)
    assert len(digits) == receiver.presses
    assert receiver.malformed == sum(1 for packet in packets if len(packet[3]) < 4)


# ------------------------------------------------------------------ sipp's capture files


def telephone_events_in(path: Path) -> list[RtpPacket]:
    packets = [RtpPacket.parse(datagram.payload) for datagram in read_udp_datagrams(path)]
    return [packet for packet in packets if packet.payload_type == PT_TELEPHONE_EVENT]


@pytest.mark.parametrize(("name", "digit"), [("dtmf_1_rfc4733", "1"), ("dtmf_9_rfc4733", "9")])
def test_sipp_dtmf_captures_give_their_digit_once(name: str, digit: str) -> None:
    packets = telephone_events_in(MEDIA_DIR / f"{name}.pcap")
    assert len(packets) >= 4  # updates and three end packets
    receiver = TelephoneEventReceiver()
    digits = "".join(
        found
        for packet in packets
        if (found := receiver.feed(packet.ssrc, packet.timestamp, packet.marker, packet.payload))
        is not None
    )
    assert digits == digit
    assert receiver.malformed == 0


# ------------------------------------------------------------------ the capture reader


ETHERNET_HEADER = 14


def rewrap(
    path: Path, link_type: int, header: bytes, endian: str = "<", nano: bool = False
) -> bytes:
    """The Ethernet capture ``path`` rewritten with another link-layer header, byte order
    and time-stamp resolution."""
    data = path.read_bytes()
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = bytearray(struct.pack(f"{endian}IHHiIII", magic, 2, 4, 0, 0, 65535, link_type))
    offset = 24
    while offset < len(data):
        seconds, micros, captured, _ = struct.unpack_from("<IIII", data, offset)
        frame = data[offset + 16 : offset + 16 + captured]
        offset += 16 + captured
        new_frame = header + frame[ETHERNET_HEADER:]
        fraction = micros * 1000 if nano else micros
        out += struct.pack(f"{endian}IIII", seconds, fraction, len(new_frame), len(new_frame))
        out += new_frame
    return bytes(out)


LINUX_COOKED = bytes(14) + struct.pack("!H", 0x0800)
LINUX_COOKED_V2 = struct.pack("!H", 0x0800) + bytes(18)


@pytest.mark.parametrize(
    ("link_type", "header", "endian", "nano"),
    [
        (113, LINUX_COOKED, "<", False),
        (276, LINUX_COOKED_V2, "<", False),
        (101, b"", ">", False),
        (12, b"", "<", True),
        (0, struct.pack("<I", 2), ">", True),
        (1, bytes(12) + struct.pack("!HHH", 0x8100, 7, 0x0800), "<", False),
    ],
)
def test_capture_reader_link_types(
    tmp_path: Path, link_type: int, header: bytes, endian: str, nano: bool
) -> None:
    source = MEDIA_DIR / "dtmf_9_rfc4733.pcap"
    expected = read_udp_datagrams(source)
    rewritten = tmp_path / "rewritten.pcap"
    rewritten.write_bytes(rewrap(source, link_type, header, endian, nano))
    datagrams = read_udp_datagrams(rewritten)
    assert [datagram.payload for datagram in datagrams] == [d.payload for d in expected]
    assert [d.time_s for d in datagrams] == pytest.approx([d.time_s for d in expected])
    assert datagrams[0].source == ("127.0.0.2", 6000)
    assert datagrams[0].destination == ("127.0.0.1", 6002)


def test_capture_reader_rejects_what_is_not_a_capture(tmp_path: Path) -> None:
    not_pcap = tmp_path / "not.pcap"
    not_pcap.write_bytes(b"\x0a\x0d\x0d\x0a" + bytes(40))  # pcapng
    with pytest.raises(PcapError, match="magic"):
        read_udp_datagrams(not_pcap)
    truncated = tmp_path / "truncated.pcap"
    truncated.write_bytes((MEDIA_DIR / "dtmf_1_rfc4733.pcap").read_bytes()[:-3])
    with pytest.raises(PcapError, match="truncated"):
        read_udp_datagrams(truncated)
