"""Benchmark of the SIP message layer: messages/s for parse, serialize and typical use.

Run from the repository root::

    /work/main/.venv/bin/python -m tests.bench.bench_sip_parse
    /work/main/.venv/bin/python -m tests.bench.bench_sip_parse --messages 5000 --repeat 9

Method
------
``--messages`` distinct messages of each kind are built up front, every one
with its own branch, tags and Call-ID (as on the wire, so per-value parse
caches do not turn the run into a cache benchmark). Each measurement walks
the whole set once and is repeated ``--repeat`` times. Time is this
process's CPU time (``time.process_time``), so other load on the machine
counts less than in wall time; the best run is reported, as microseconds
of CPU per message and messages per second on one core.

Kinds: an INVITE with SDP (RFC 3665 3.1 shape, 13 header fields, 2 Vias), a
180 response to it, and an in-dialog BYE. Steps: ``parse`` is
parse_message alone; ``serialize`` is bytes() of an already parsed message;
``parse+serialize`` both; ``handle`` is what the stack does per received
request: parse, read the top Via, CSeq, Call-ID and both tags, then
serialize a response built with make_response.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from gateway.sip.message import make_response, parse_message

_SDP = (
    "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\ns=-\r\n"
    "c=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0 8 101\r\n"
    "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
)

_INVITE = (
    "INVITE sip:+14155550123@trunk.example.net SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{n}a8f;rport\r\n"
    "Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK{n}77;received=10.0.0.5\r\n"
    "Max-Forwards: 69\r\n"
    'From: "Front Desk" <sip:201@pbx.example.com>;tag={n}b1c2\r\n'
    "To: <sip:+14155550123@trunk.example.net>\r\n"
    "Call-ID: {n}f81d4fae7dec11d0a765@pbx.example.com\r\n"
    "CSeq: 102 INVITE\r\n"
    "Contact: <sip:201@192.0.2.10:5060;transport=udp>\r\n"
    "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE\r\n"
    "Supported: replaces, timer\r\n"
    "User-Agent: PBX/1.0\r\n"
    "Content-Type: application/sdp\r\n"
    "Content-Length: {length}\r\n\r\n"
)

_RINGING = (
    "SIP/2.0 180 Ringing\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{n}a8f;rport=5060\r\n"
    'From: "Front Desk" <sip:201@pbx.example.com>;tag={n}b1c2\r\n'
    "To: <sip:+14155550123@trunk.example.net>;tag={n}99aa\r\n"
    "Call-ID: {n}f81d4fae7dec11d0a765@pbx.example.com\r\n"
    "CSeq: 102 INVITE\r\n"
    "Contact: <sip:+14155550123@198.51.100.7:5060>\r\n"
    "Content-Length: 0\r\n\r\n"
)

_BYE = (
    "BYE sip:201@192.0.2.10:5060;transport=udp SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK{n}c3\r\n"
    "Max-Forwards: 70\r\n"
    "From: <sip:+14155550123@trunk.example.net>;tag={n}99aa\r\n"
    'To: "Front Desk" <sip:201@pbx.example.com>;tag={n}b1c2\r\n'
    "Call-ID: {n}f81d4fae7dec11d0a765@pbx.example.com\r\n"
    "CSeq: 7 BYE\r\n"
    "Content-Length: 0\r\n\r\n"
)


def _messages(template: str, count: int, body: str = "") -> list[bytes]:
    encoded = body.encode()
    return [
        template.format(n=f"{index:06d}", length=len(encoded)).encode() + encoded
        for index in range(count)
    ]


def _best(step: Callable[[], None], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        step()
        best = min(best, time.process_time() - started)
    return best


def _handle(data: bytes) -> bytes:
    request = parse_message(data)
    _ = (request.top_via.branch, request.cseq.seq, request.call_id)
    _ = (request.from_.tag, request.to.tag)
    return bytes(make_response(request, 200, to_tag="g1"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--messages", type=int, default=3000, help="distinct messages per kind")
    parser.add_argument("--repeat", type=int, default=7, help="runs per step; best is kept")
    args = parser.parse_args()

    kinds = {
        "INVITE+SDP": _messages(_INVITE, args.messages, _SDP),
        "180 Ringing": _messages(_RINGING, args.messages),
        "BYE": _messages(_BYE, args.messages),
    }
    print(f"{'message':<12} {'step':<16} {'us/msg':>8} {'msgs/s':>10}")
    for kind, wire in kinds.items():
        parsed = [parse_message(data) for data in wire]

        def parse_all(wire: list[bytes] = wire) -> None:
            for data in wire:
                parse_message(data)

        def serialize_all(parsed: list = parsed) -> None:  # type: ignore[type-arg]
            for message in parsed:
                bytes(message)

        def round_trip_all(wire: list[bytes] = wire) -> None:
            for data in wire:
                bytes(parse_message(data))

        def handle_all(wire: list[bytes] = wire) -> None:
            for data in wire:
                _handle(data)

        steps = {"parse": parse_all, "serialize": serialize_all, "parse+serialize": round_trip_all}
        if kind != "180 Ringing":
            steps["handle"] = handle_all
        for step, run in steps.items():
            seconds = _best(run, args.repeat) / len(wire)
            print(f"{kind:<12} {step:<16} {seconds * 1e6:>8.1f} {1 / seconds:>10,.0f}")


if __name__ == "__main__":
    main()
