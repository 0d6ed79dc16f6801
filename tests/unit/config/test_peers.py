"""Which sender is a peer: host, IP, CIDR, IP:port and [IPv6]:port sources."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.config import PeerSettings, parse_source


def peer(host: str = "192.0.2.10", sources: list[str] | None = None) -> PeerSettings:
    return PeerSettings(host=host, sources=sources or [])


def test_without_sources_the_host_matches_on_any_port() -> None:
    pbx = peer()
    assert pbx.matches("192.0.2.10", 5060)
    assert pbx.matches("192.0.2.10", 41234)
    assert not pbx.matches("192.0.2.11", 5060)
    assert pbx.address == ("192.0.2.10", 5060)


def test_ip_source() -> None:
    trunk = peer(sources=["198.51.100.7"])
    assert trunk.matches("198.51.100.7", 5060)
    assert not trunk.matches("192.0.2.10", 5060), "host no longer matches once sources are set"


def test_cidr_source() -> None:
    trunk = peer(sources=["198.51.100.0/28"])
    assert trunk.matches("198.51.100.0", 5060)
    assert trunk.matches("198.51.100.15", 5060)
    assert not trunk.matches("198.51.100.16", 5060)


def test_ip_port_source() -> None:
    trunk = peer(sources=["198.51.100.7:5080", "198.51.100.8"])
    assert trunk.matches("198.51.100.7", 5080)
    assert not trunk.matches("198.51.100.7", 5060)
    assert trunk.matches("198.51.100.8", 1)


def test_ipv6_sources() -> None:
    trunk = peer(sources=["[2001:db8::1]:5060", "2001:db8:1::/48", "[2001:db8:2::5]"])
    assert trunk.matches("2001:db8::1", 5060)
    assert not trunk.matches("2001:db8::1", 5061)
    assert trunk.matches("2001:db8:1:ffff::9", 7000)
    assert trunk.matches("2001:db8:2::5", 7000)
    assert not trunk.matches("2001:db8:3::1", 5060)


def test_ipv6_host_and_bracketed_sender() -> None:
    pbx = peer(host="2001:db8::10")
    assert pbx.matches("2001:db8::10", 5060)
    assert pbx.matches("[2001:db8:0::10]", 5060)
    assert not pbx.matches("2001:db8::11", 5060)


def test_ipv4_mapped_sender_matches_the_ipv4_rule() -> None:
    """A dual-stack socket reports IPv4 senders as ::ffff:a.b.c.d."""
    assert peer().matches("::ffff:192.0.2.10", 5060)
    assert peer(sources=["192.0.2.0/24:5060"]).matches("::ffff:192.0.2.99", 5060)


def test_name_host_is_resolved_for_matching() -> None:
    local = peer(host="localhost")
    assert local.host == "localhost"
    assert local.matches("127.0.0.1", 5060) or local.matches("::1", 5060)
    assert not local.matches("192.0.2.1", 5060)


def test_sender_that_is_not_an_ip_matches_nothing() -> None:
    assert not peer().matches("not-an-ip", 5060)
    assert not peer(sources=["0.0.0.0/0"]).matches("", 5060)


@pytest.mark.parametrize(
    "text",
    ["example.com", "10.0.0.1:0", "10.0.0.1:70000", "10.0.0.1:x", "[2001:db8::1", "[::1]5060", ""],
)
def test_malformed_sources_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match="source"):
        parse_source(text)
    with pytest.raises(ValidationError):
        peer(sources=["10.0.0.1", text])


@pytest.mark.parametrize("host", ["", "bad host", "-x.example", "a" * 64 + ".example"])
def test_malformed_hosts_are_refused(host: str) -> None:
    with pytest.raises(ValidationError, match="neither an IP address nor a host name"):
        peer(host=host)


def test_ports_and_transports_are_checked() -> None:
    with pytest.raises(ValidationError):
        PeerSettings(host="192.0.2.1", port=0)
    with pytest.raises(ValidationError):
        PeerSettings(host="192.0.2.1", port=65536)
    with pytest.raises(ValidationError):
        PeerSettings(host="192.0.2.1", transport="sctp")  # type: ignore[arg-type]
    assert PeerSettings(host="192.0.2.1", transport="tcp").transport == "tcp"


def test_copied_peer_with_other_sources_matches_its_own() -> None:
    trunk = peer(sources=["198.51.100.7"])
    assert trunk.matches("198.51.100.7", 5060)
    moved = trunk.model_copy(update={"sources": ["203.0.113.0/24"]})
    assert moved.matches("203.0.113.9", 5060)
    assert not moved.matches("198.51.100.7", 5060)
    assert trunk.matches("198.51.100.7", 5060)
