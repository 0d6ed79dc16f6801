"""The kernel forwarder's program on crafted frames (BPF_PROG_TEST_RUN): what it relays,
drops or leaves to the stack, what it counts, and the headers it writes.

The kernel runs the loaded program on each frame as the tc hook would and returns its
verdict and the frame as the program left it; nothing is sent. The lanes' map is filled
by the same packing as the forwarder's (gateway/media/kernel.py).
"""

from __future__ import annotations

import ctypes
import socket
import struct
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from gateway.media import bpf, kernel
from gateway.media.stats import StreamStats
from tests.unit.media.conftest import require_kernel_forwarder
from tests.unit.media.udp_phone import rtcp_rr, rtp

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the forwarder is Linux's")

TC_ACT_UNSPEC, TC_ACT_OK, TC_ACT_SHOT, TC_ACT_REDIRECT = -1, 0, 2, 7
GATEWAY, PARTY, OTHER = "10.0.0.1", "10.0.0.2", "10.0.1.9"
LANE_PORT, PARTY_PORT, OUT_PORT, OTHER_PORT, RTCP_OUT_PORT = 5000, 6000, 5002, 7000, 5003


class _TestRunOpts(ctypes.Structure):
    """``struct bpf_test_run_opts`` of libbpf 1.1."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p),
        ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p),
        ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32),
        ("batch_size", ctypes.c_uint32),
    ]


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(
    payload: bytes,
    *,
    source: str = PARTY,
    source_port: int = PARTY_PORT,
    udp_len: int | None = None,
    ip_options: bytes = b"",
    fragment: int = 0x4000,
    padding: int = 0,
    ip_extra: int = 0,
) -> bytes:
    """An Ethernet frame with an IPv4/UDP datagram to the lane's port (TTL 30, as after
    some hops), checksums complete."""
    ihl = 5 + len(ip_options) // 4
    total = ihl * 4 + 8 + len(payload) + ip_extra
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 1, fragment, 30, 17, 0,
        socket.inet_aton(source), socket.inet_aton(GATEWAY),
    ) + ip_options  # fmt: skip
    header = header[:10] + struct.pack("!H", checksum(header)) + header[12:]
    length = 8 + len(payload) if udp_len is None else udp_len
    udp = struct.pack("!HHHH", source_port, LANE_PORT, length, 0)
    pseudo = socket.inet_aton(source) + socket.inet_aton(GATEWAY)
    pseudo += struct.pack("!BBH", 0, 17, 8 + len(payload))
    udp = udp[:6] + struct.pack("!H", checksum(pseudo + udp + payload) or 0xFFFF)
    # to lo's link address (all zeros), where test runs take place: a frame for this host
    ethernet = b"\x00" * 6 + b"\x04" * 6 + b"\x08\x00"
    return ethernet + header + udp + payload + b"\0" * padding


@dataclass
class Verdict:
    action: int
    frame: bytes


class Program:
    """The loaded program with one lane: the party's flow, routed to OTHER."""

    def __init__(self, rtcp_route: bool = True, local: bool = False) -> None:
        self.loaded = bpf.LoadedProgram(
            str(kernel.PROGRAM_PATH), kernel.PROGRAM_NAME, kernel.MAP_NAME
        )
        self.key = kernel._KEY.pack(
            socket.inet_aton(GATEWAY), socket.inet_aton(PARTY),
            LANE_PORT.to_bytes(2, "big"), PARTY_PORT.to_bytes(2, "big"),
        )  # fmt: skip
        rtp_route = (
            socket.inet_aton(GATEWAY), socket.inet_aton(OTHER),
            OUT_PORT.to_bytes(2, "big"), OTHER_PORT.to_bytes(2, "big"), 1, int(local),
        )  # fmt: skip
        rtcp = (
            (socket.inet_aton(GATEWAY), socket.inet_aton(OTHER),
             RTCP_OUT_PORT.to_bytes(2, "big"), (OTHER_PORT + 1).to_bytes(2, "big"), 1, 0)
            if rtcp_route else kernel._NO_ROUTE
        )  # fmt: skip
        state = kernel._state_in(StreamStats().export_state())
        self.loaded.insert(
            self.key,
            kernel._LANE.pack(
                0, 8000, *kernel._KEY.unpack(self.key), 0, *rtp_route, *rtcp, *state, 0, 0, 0
            ),
        )
        self._run = bpf.library().bpf_prog_test_run_opts
        self._run.argtypes = [ctypes.c_int, ctypes.POINTER(_TestRunOpts)]
        self._run.restype = ctypes.c_int

    def run(self, data: bytes) -> Verdict:
        out = ctypes.create_string_buffer(len(data) + 256)
        opts = _TestRunOpts(
            sz=ctypes.sizeof(_TestRunOpts),
            data_in=ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p),
            data_out=ctypes.cast(out, ctypes.c_void_p),
            data_size_in=len(data),
            data_size_out=len(out),
            repeat=1,
        )
        assert self._run(self.loaded.program_fd, ctypes.byref(opts)) == 0
        action = ctypes.c_int32(opts.retval).value
        return Verdict(action, out.raw[: opts.data_size_out])

    def counts(self) -> dict[str, int]:
        value = self.loaded.read(self.key)
        assert value is not None
        fields = kernel._LANE.unpack(value)
        state, out = kernel._STATE_AT, kernel._OUT_AT
        return {
            "packets_in": fields[state],
            "bytes_in": fields[state + 1],
            "packets_out": fields[out],
            "bytes_out": fields[out + 1],
            "send_errors": fields[out + 2],
        }


@pytest.fixture
def program() -> Iterator[Program]:
    require_kernel_forwarder()
    loaded = Program()
    yield loaded
    loaded.loaded.close()


def test_rtp_is_rewritten_to_the_route_with_valid_checksums_and_counted(
    program: Program,
) -> None:
    packet = rtp(1)
    verdict = program.run(frame(packet))
    assert verdict.action == TC_ACT_REDIRECT
    ip, udp, payload = verdict.frame[14:34], verdict.frame[34:42], verdict.frame[42:]
    assert checksum(ip) == 0
    assert (socket.inet_ntoa(ip[12:16]), socket.inet_ntoa(ip[16:20])) == (GATEWAY, OTHER)
    assert ip[8] == 64  # TTL as the gateway's own sendto sets it
    assert struct.unpack("!HH", udp[:4]) == (OUT_PORT, OTHER_PORT)
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, len(udp) + len(payload))
    assert checksum(pseudo + udp + payload) == 0
    assert payload == packet
    assert program.counts() == {
        "packets_in": 1, "bytes_in": len(packet), "packets_out": 1, "bytes_out": len(packet),
        "send_errors": 0,
    }  # fmt: skip


def test_other_protocols_and_rtcp_mux_are_forwarded_uncounted(program: Program) -> None:
    stun = b"\x00\x01\x00\x00" + b"\x21\x12\xa4\x42" + bytes(12)
    verdict = program.run(frame(stun))
    assert verdict.action == TC_ACT_REDIRECT
    assert struct.unpack("!HH", verdict.frame[34:38]) == (OUT_PORT, OTHER_PORT)
    verdict = program.run(frame(rtcp_rr()))
    assert verdict.action == TC_ACT_REDIRECT
    assert struct.unpack("!HH", verdict.frame[34:38]) == (RTCP_OUT_PORT, OTHER_PORT + 1)
    assert program.counts()["packets_in"] == 0 and program.counts()["packets_out"] == 0


def test_rtcp_without_a_route_and_empty_or_one_octet_datagrams_are_dropped() -> None:
    require_kernel_forwarder()
    program = Program(rtcp_route=False)
    try:
        assert program.run(frame(rtcp_rr())).action == TC_ACT_SHOT
        assert program.run(frame(b"")).action == TC_ACT_SHOT
        assert program.run(frame(b"\x80")).action == TC_ACT_SHOT
        assert program.counts()["packets_in"] == 0
    finally:
        program.loaded.close()


def test_a_short_rtp_packet_is_relayed_and_counted_out_but_not_in(program: Program) -> None:
    assert program.run(frame(rtp(1)[:8])).action == TC_ACT_REDIRECT
    counts = program.counts()
    assert (counts["packets_in"], counts["packets_out"]) == (0, 1)


@pytest.mark.parametrize(
    "broken",
    [
        {"udp_len": 8 + 172 + 14},  # longer than the frame holds
        {"udp_len": 8 + 172 + 10, "padding": 20},  # past the IP payload, into padding
        {"udp_len": 7},  # shorter than its own header
        {"ip_extra": 1},  # the IP length one octet past the frame
        {"ip_extra": 14},  # ... fourteen (the Ethernet header's length)
        {"ip_options": b"\x01\x01\x01\x00"},  # IP options: the stack's to parse
        {"fragment": 0x2000},  # a first fragment: the stack reassembles it
    ],
)
def test_what_does_not_add_up_goes_to_the_stack_uncounted(
    program: Program, broken: dict[str, int | bytes]
) -> None:
    verdict = program.run(frame(rtp(1), **broken))  # type: ignore[arg-type]
    assert verdict.action == TC_ACT_UNSPEC
    assert program.counts()["packets_in"] == 0


def test_another_flow_is_left_alone(program: Program) -> None:
    assert program.run(frame(rtp(1), source_port=PARTY_PORT + 2)).action == TC_ACT_UNSPEC
    assert program.run(frame(rtp(1), source="10.0.0.3")).action == TC_ACT_UNSPEC
    other_host = b"\x02" * 6 + frame(rtp(1))[6:]  # for another host's link address
    assert program.run(other_host).action == TC_ACT_UNSPEC
    assert program.counts()["packets_in"] == 0


def test_an_entry_whose_key_is_not_its_own_is_not_used(program: Program) -> None:
    """A lane's entry reused for another lane while a program held it: the key stored in
    the value is checked, so the packet is not sent by a route that is not its flow's."""
    value = bytearray(program.loaded.take(program.key) or b"")
    value[8:12] = socket.inet_aton("10.9.9.9")  # the stored key's local address
    program.loaded.insert(program.key, bytes(value))
    assert program.run(frame(rtp(1))).action == TC_ACT_UNSPEC
    assert program.counts()["packets_in"] == 0


def test_a_local_route_goes_up_the_stack_with_its_ttl() -> None:
    """A packet between two parties on this host: rewritten, then on up the stack
    (TC_ACT_OK), its TTL left as it was."""
    require_kernel_forwarder()
    program = Program(local=True)
    try:
        verdict = program.run(frame(rtp(1)))
        assert verdict.action == TC_ACT_OK
        ip = verdict.frame[14:34]
        assert checksum(ip) == 0 and ip[8] == 30
        assert socket.inet_ntoa(ip[16:20]) == OTHER
        assert program.counts()["packets_out"] == 1
    finally:
        program.loaded.close()
