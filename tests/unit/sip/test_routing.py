"""Request targets and response destinations (RFC 3261 18.2, 19.1.1; RFC 3581)."""

from __future__ import annotations

import pytest

from gateway.sip.headers import Via
from gateway.sip.routing import add_received, response_destination, uri_to_address
from gateway.sip.uri import SipUri


@pytest.mark.parametrize(
    ("uri", "default", "expected"),
    [
        ("sip:bob@192.0.2.1", "udp", ("192.0.2.1", 5060, "udp")),
        ("sip:bob@192.0.2.1:5080", "udp", ("192.0.2.1", 5080, "udp")),
        ("sip:bob@192.0.2.1", "tcp", ("192.0.2.1", 5060, "tcp")),
        ("sip:bob@192.0.2.1;transport=TCP", "udp", ("192.0.2.1", 5060, "tcp")),
        ("sip:bob@192.0.2.1;transport=tls", "udp", ("192.0.2.1", 5061, "tls")),
        ("sips:bob@192.0.2.1", "udp", ("192.0.2.1", 5061, "tls")),
        ("sips:bob@192.0.2.1:6000;transport=tcp", "udp", ("192.0.2.1", 6000, "tcp")),
        ("sip:bob@example.com;maddr=198.51.100.4", "udp", ("198.51.100.4", 5060, "udp")),
        ("sip:[2001:db8::5]:5070", "udp", ("2001:db8::5", 5070, "udp")),
        ("sip:proxy.example.com;lr", "udp", ("proxy.example.com", 5060, "udp")),
    ],
)
def test_uri_to_address(uri: str, default: str, expected: tuple[str, int, str]) -> None:
    assert uri_to_address(SipUri.parse(uri), default) == expected


@pytest.mark.parametrize(
    ("via", "source", "expected"),
    [
        # 18.2.2: sent-by, default port 5060
        ("SIP/2.0/UDP 192.0.2.1", ("192.0.2.1", 40000), ("192.0.2.1", 5060)),
        ("SIP/2.0/UDP 192.0.2.1:5070", ("192.0.2.1", 40000), ("192.0.2.1", 5070)),
        ("SIP/2.0/TLS 192.0.2.1", ("192.0.2.1", 40000), ("192.0.2.1", 5061)),
        # received overrides the host, not the port
        (
            "SIP/2.0/UDP pbx.example.com:5070;received=198.51.100.2",
            ("198.51.100.2", 40000),
            ("198.51.100.2", 5070),
        ),
        # RFC 3581: rport with value, with and without received
        (
            "SIP/2.0/UDP 10.0.0.5:5060;rport=40001;received=198.51.100.2",
            ("198.51.100.2", 40000),
            ("198.51.100.2", 40001),
        ),
        # rport without value: the packet's source
        ("SIP/2.0/UDP 10.0.0.5:5060;rport", ("198.51.100.2", 40000), ("198.51.100.2", 40000)),
        ("SIP/2.0/UDP [2001:db8::1]:5062", ("2001:db8::1", 1), ("2001:db8::1", 5062)),
    ],
)
def test_response_destination(via: str, source: tuple[str, int], expected: tuple[str, int]) -> None:
    assert response_destination(Via.parse(via), source) == expected


def test_add_received_when_sent_by_differs() -> None:
    via = Via.parse("SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKx")
    stamped = add_received(via, ("198.51.100.2", 5060))
    assert stamped is not via
    assert stamped.received == "198.51.100.2"
    assert stamped.branch == "z9hG4bKx"
    assert not stamped.has_rport
    assert via.received is None  # the original is untouched
    assert str(stamped) == "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKx;received=198.51.100.2"


def test_add_received_for_a_host_name() -> None:
    via = Via.parse("SIP/2.0/UDP pbx.example.com;branch=z9hG4bKx")
    assert add_received(via, ("198.51.100.2", 5060)).received == "198.51.100.2"


def test_add_received_leaves_a_matching_via_alone() -> None:
    via = Via.parse("SIP/2.0/UDP 198.51.100.2:5060;branch=z9hG4bKx")
    assert add_received(via, ("198.51.100.2", 5060)) is via
    ipv6 = Via.parse("SIP/2.0/UDP [2001:DB8::1];branch=z9hG4bKx")
    assert add_received(ipv6, ("2001:db8::1", 5060)) is ipv6


def test_add_received_fills_an_empty_rport_and_always_adds_received() -> None:
    via = Via.parse("SIP/2.0/UDP 198.51.100.2:5060;rport;branch=z9hG4bKx")
    stamped = add_received(via, ("198.51.100.2", 40123))
    assert stamped.rport == 40123
    assert stamped.received == "198.51.100.2"  # RFC 3581 4: even when equal to sent-by
    assert response_destination(stamped, ("0.0.0.0", 1)) == ("198.51.100.2", 40123)


def test_add_received_keeps_an_rport_that_has_a_value() -> None:
    via = Via.parse("SIP/2.0/UDP 10.0.0.5;rport=5999;branch=z9hG4bKx")
    stamped = add_received(via, ("198.51.100.2", 40123))
    assert stamped.rport == 5999
    assert stamped.received == "198.51.100.2"
