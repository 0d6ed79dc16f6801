"""RTP packets (RFC 3550 5.1) and telling them apart from what shares their port.

A media port can carry RTP, RTCP (multiplexed, RFC 5761), STUN, DTLS, ZRTP
and TURN channel data; RFC 7983 7 sorts them by the first octet, and RFC 5761
4 separates RTCP from RTP by the second (RTCP packet types 192-223, which no
RTP payload type in use collides with). :class:`RtpPacket` parses and builds
whole packets for the media code that needs more than the relay's fixed
header fields (players, capture).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

RTP_VERSION = 2
RTP_HEADER_SIZE = 12

RTP = "rtp"
RTCP = "rtcp"
STUN = "stun"
ZRTP = "zrtp"
DTLS = "dtls"
TURN_CHANNEL = "turn-channel"
UNKNOWN = "unknown"

_FIXED_HEADER = struct.Struct("!BBHII")
_EXTENSION_HEADER = struct.Struct("!HH")


class RtpParseError(ValueError):
    """A datagram that is not a well-formed RTP packet; the message says why."""


def is_rtcp_packet_type(second_octet: int) -> bool:
    """RTCP packet types 192-223 occupy the RTP marker+payload-type octet (RFC 5761 4)."""
    return 192 <= second_octet <= 223


def classify(packet: bytes) -> str:
    """What a datagram on a media port is, by its first octets (RFC 7983 7, RFC 5761 4)."""
    if not packet:
        return UNKNOWN
    first = packet[0]
    if 128 <= first <= 191:
        if len(packet) > 1 and is_rtcp_packet_type(packet[1]):
            return RTCP
        return RTP
    if first <= 3:
        return STUN
    if 16 <= first <= 19:
        return ZRTP
    if 20 <= first <= 63:
        return DTLS
    if 64 <= first <= 79:
        return TURN_CHANNEL
    return UNKNOWN


@dataclass(frozen=True, slots=True)
class RtpPacket:
    """One RTP packet (RFC 3550 5.1); a header extension (5.3.1) is kept as raw words."""

    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension_profile: int | None = None
    extension: bytes = b""
    padding: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.payload_type <= 127:
            raise ValueError(f"RTP payload type out of range: {self.payload_type}")
        if not 0 <= self.sequence_number <= 0xFFFF:
            raise ValueError(f"RTP sequence number out of range: {self.sequence_number}")
        if not 0 <= self.timestamp <= 0xFFFFFFFF or not 0 <= self.ssrc <= 0xFFFFFFFF:
            raise ValueError("RTP timestamp and SSRC are 32-bit unsigned")
        if len(self.csrcs) > 15:
            raise ValueError(f"at most 15 CSRCs fit the CC field, got {len(self.csrcs)}")
        if self.extension_profile is not None and not 0 <= self.extension_profile <= 0xFFFF:
            raise ValueError(f"extension profile is 16 bits, got {self.extension_profile}")
        if len(self.extension) % 4 or len(self.extension) > 4 * 0xFFFF:
            raise ValueError("an RTP header extension is up to 65535 whole 32-bit words")
        if not 0 <= self.padding <= 255:
            raise ValueError(f"RTP padding must be 0-255 octets, got {self.padding}")

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse ``data``; RtpParseError with the reason when it is not RTP."""
        if len(data) < RTP_HEADER_SIZE:
            raise RtpParseError(f"{len(data)} octets is shorter than the RTP fixed header")
        first, second, sequence_number, timestamp, ssrc = _FIXED_HEADER.unpack_from(data)
        if first >> 6 != RTP_VERSION:
            raise RtpParseError(f"RTP version must be 2, got {first >> 6}")
        if is_rtcp_packet_type(second):
            raise RtpParseError(f"packet type {second} is RTCP (RFC 5761 4)")
        offset = RTP_HEADER_SIZE
        csrc_count = first & 0x0F
        end_of_csrcs = offset + 4 * csrc_count
        if len(data) < end_of_csrcs:
            raise RtpParseError(f"CSRC count {csrc_count} runs past the packet end")
        csrcs = struct.unpack_from(f"!{csrc_count}I", data, offset)
        offset = end_of_csrcs
        extension_profile = None
        extension = b""
        if first & 0x10:
            if len(data) < offset + 4:
                raise RtpParseError("header extension flag set but no extension header")
            extension_profile, words = _EXTENSION_HEADER.unpack_from(data, offset)
            offset += 4
            if len(data) < offset + 4 * words:
                raise RtpParseError(f"header extension of {words} words runs past the end")
            extension = bytes(data[offset : offset + 4 * words])
            offset += 4 * words
        end = len(data)
        padding = 0
        if first & 0x20:
            padding = data[-1]
            if padding == 0 or end - padding < offset:
                raise RtpParseError(f"padding count {padding} does not fit the packet")
            end -= padding
        return cls(
            payload_type=second & 0x7F,
            sequence_number=sequence_number,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
            marker=bool(second & 0x80),
            csrcs=tuple(csrcs),
            extension_profile=extension_profile,
            extension=extension,
            padding=padding,
        )

    def __bytes__(self) -> bytes:
        first = RTP_VERSION << 6 | len(self.csrcs)
        if self.padding:
            first |= 0x20
        if self.extension_profile is not None:
            first |= 0x10
        second = self.payload_type | (0x80 if self.marker else 0)
        parts = [
            _FIXED_HEADER.pack(first, second, self.sequence_number, self.timestamp, self.ssrc),
            struct.pack(f"!{len(self.csrcs)}I", *self.csrcs),
        ]
        if self.extension_profile is not None:
            parts.append(_EXTENSION_HEADER.pack(self.extension_profile, len(self.extension) // 4))
            parts.append(self.extension)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)
