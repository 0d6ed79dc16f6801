"""A small reader of classic libpcap captures: the UDP datagrams in them, with addresses.

File format: pcap-savefile(5) / draft-ietf-opsawg-pcap: a 24-octet file header
whose magic number gives the byte order and the time-stamp resolution
(0xA1B2C3D4 microseconds, 0xA1B23C4D nanoseconds), then records of a 16-octet
header and the captured octets. Link types read (tcpdump.org link-layer header
types): NULL (0, BSD loopback), ETHERNET (1, with 802.1Q tags), RAW (101, and
the platform values 12 and 14), LINUX_SLL (113) and LINUX_SLL2 (276). Network
layer: IPv4 (RFC 791; fragments are skipped, not reassembled) and IPv6 without
extension headers (RFC 8200); transport: UDP (RFC 768). Everything else in a
capture is skipped.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["PcapError", "UdpDatagram", "read_udp_datagrams"]

_MICROSECOND_MAGIC: Final = 0xA1B2C3D4
_NANOSECOND_MAGIC: Final = 0xA1B23C4D
_FILE_HEADER_SIZE: Final = 24
_RECORD_HEADER_SIZE: Final = 16

LINKTYPE_NULL: Final = 0
LINKTYPE_ETHERNET: Final = 1
LINKTYPE_RAW: Final = 101
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_LINUX_SLL2: Final = 276
_RAW_PLATFORM_VALUES: Final = (12, 14)  # DLT_RAW on some BSDs

ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_IPV6: Final = 0x86DD
_VLAN_ETHERTYPES: Final = (0x8100, 0x88A8)
_BSD_INET6_FAMILIES: Final = (24, 28, 30)  # AF_INET6 on NetBSD/OpenBSD, FreeBSD, macOS
IPPROTO_UDP: Final = 17


class PcapError(ValueError):
    """A file that is not a readable classic pcap capture (the message says why)."""


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    """One UDP datagram of a capture; ``time_s`` is the capture time in seconds."""

    time_s: float
    source: tuple[str, int]
    destination: tuple[str, int]
    payload: bytes


def read_udp_datagrams(path: Path | str) -> list[UdpDatagram]:
    """Every UDP datagram in the capture at ``path``, in file order."""
    data = Path(path).read_bytes()
    if len(data) < _FILE_HEADER_SIZE:
        raise PcapError(f"{path}: {len(data)} octets is shorter than a pcap file header")
    endian, fraction_per_second = _byte_order(data, path)
    link_type = struct.unpack_from(f"{endian}I", data, 20)[0] & 0xFFFF  # upper bits: FCS
    record_header = struct.Struct(f"{endian}IIII")
    datagrams: list[UdpDatagram] = []
    offset = _FILE_HEADER_SIZE
    while offset < len(data):
        if offset + _RECORD_HEADER_SIZE > len(data):
            raise PcapError(f"{path}: truncated record header at octet {offset}")
        seconds, fraction, captured, _ = record_header.unpack_from(data, offset)
        offset += _RECORD_HEADER_SIZE
        if offset + captured > len(data):
            raise PcapError(f"{path}: truncated record at octet {offset}")
        frame = data[offset : offset + captured]
        offset += captured
        datagram = _udp(frame, link_type, seconds + fraction / fraction_per_second)
        if datagram is not None:
            datagrams.append(datagram)
    return datagrams


def _byte_order(data: bytes, path: Path | str) -> tuple[str, int]:
    """The struct byte order and the time-stamp fraction unit of a capture."""
    for endian in ("<", ">"):
        magic = struct.unpack_from(f"{endian}I", data)[0]
        if magic == _MICROSECOND_MAGIC:
            return endian, 1_000_000
        if magic == _NANOSECOND_MAGIC:
            return endian, 1_000_000_000
    raise PcapError(f"{path}: magic {data[:4].hex()} is not a classic pcap file")


def _network_layer(frame: bytes, link_type: int) -> tuple[int, bytes] | None:
    """(IP version, packet) of a link-layer frame, None for anything but IPv4/IPv6."""
    if link_type == LINKTYPE_ETHERNET:
        if len(frame) < 14:
            return None
        ethertype = struct.unpack_from("!H", frame, 12)[0]
        offset = 14
        while ethertype in _VLAN_ETHERTYPES and len(frame) >= offset + 4:
            ethertype = struct.unpack_from("!H", frame, offset + 2)[0]
            offset += 4
        packet = frame[offset:]
    elif link_type == LINKTYPE_LINUX_SLL:
        if len(frame) < 16:
            return None
        ethertype = struct.unpack_from("!H", frame, 14)[0]
        packet = frame[16:]
    elif link_type == LINKTYPE_LINUX_SLL2:
        if len(frame) < 20:
            return None
        ethertype = struct.unpack_from("!H", frame, 0)[0]
        packet = frame[20:]
    elif link_type == LINKTYPE_NULL:
        if len(frame) < 4:
            return None
        family = struct.unpack_from("<I", frame)[0]  # the capturing host's byte order
        if family > 0xFFFF:
            family = struct.unpack_from(">I", frame)[0]
        ethertype = ETHERTYPE_IPV6 if family in _BSD_INET6_FAMILIES else ETHERTYPE_IPV4
        packet = frame[4:]
    elif link_type == LINKTYPE_RAW or link_type in _RAW_PLATFORM_VALUES:
        if not frame:
            return None
        ethertype = ETHERTYPE_IPV6 if frame[0] >> 4 == 6 else ETHERTYPE_IPV4
        packet = frame
    else:
        raise PcapError(f"link type {link_type} is not one this reader knows")
    version = {ETHERTYPE_IPV4: 4, ETHERTYPE_IPV6: 6}.get(ethertype)
    if version is None or not packet or packet[0] >> 4 != version:
        return None
    return version, packet


def _udp(frame: bytes, link_type: int, time_s: float) -> UdpDatagram | None:
    """The UDP datagram in a frame, None when the frame holds none."""
    network = _network_layer(frame, link_type)
    if network is None:
        return None
    version, packet = network
    if version == 4:
        if len(packet) < 20 or packet[9] != IPPROTO_UDP:
            return None
        flags_fragment = struct.unpack_from("!H", packet, 6)[0]
        if flags_fragment & 0x3FFF:  # more-fragments bit or a fragment offset
            return None
        header_length = (packet[0] & 0x0F) * 4
        total_length = struct.unpack_from("!H", packet, 2)[0]
        source = str(ipaddress.IPv4Address(packet[12:16]))
        destination = str(ipaddress.IPv4Address(packet[16:20]))
        udp = packet[header_length:total_length]
    else:
        if len(packet) < 40 or packet[6] != IPPROTO_UDP:
            return None
        payload_length = struct.unpack_from("!H", packet, 4)[0]
        source = str(ipaddress.IPv6Address(packet[8:24]))
        destination = str(ipaddress.IPv6Address(packet[24:40]))
        udp = packet[40 : 40 + payload_length]
    if len(udp) < 8:
        return None
    source_port, destination_port, udp_length = struct.unpack_from("!HHH", udp)
    if not 8 <= udp_length <= len(udp):
        return None
    return UdpDatagram(
        time_s=time_s,
        source=(source, source_port),
        destination=(destination, destination_port),
        payload=bytes(udp[8:udp_length]),
    )
