"""SDP connection addresses as the relay's sockets send to them."""

from __future__ import annotations

import socket

import pytest

from gateway.media.session import RemoteMedia, media_address


@pytest.mark.parametrize(
    ("address", "family", "dual_stack", "expected"),
    [
        ("192.0.2.1", socket.AF_INET, False, "192.0.2.1"),
        ("::ffff:192.0.2.1", socket.AF_INET, False, "192.0.2.1"),
        ("2001:db8::1", socket.AF_INET6, False, "2001:db8::1"),
        ("2001:DB8:0::1", socket.AF_INET6, False, "2001:db8::1"),
        ("192.0.2.1", socket.AF_INET6, True, "::ffff:192.0.2.1"),
        ("0.0.0.0", socket.AF_INET6, False, "0.0.0.0"),
        ("::", socket.AF_INET, False, "::"),
    ],
)
def test_addresses_the_sockets_can_reach(
    address: str, family: socket.AddressFamily, dual_stack: bool, expected: str
) -> None:
    assert media_address(address, family, dual_stack=dual_stack) == expected


@pytest.mark.parametrize(
    ("address", "family", "reason"),
    [
        ("pbx.example.com", socket.AF_INET, "IP literal"),
        ("", socket.AF_INET, "IP literal"),
        ("2001:db8::1", socket.AF_INET, "is IPv6; the relay runs on IPv4"),
        ("192.0.2.1", socket.AF_INET6, "is IPv4; the relay runs on IPv6"),
    ],
)
def test_addresses_the_sockets_cannot_reach(
    address: str, family: socket.AddressFamily, reason: str
) -> None:
    with pytest.raises(ValueError, match=reason):
        media_address(address, family)


def test_remote_media_states() -> None:
    active = RemoteMedia("192.0.2.1", 4000, None, False)
    assert not active.rejected and not active.hold
    assert active.rtcp_address() == ("192.0.2.1", 4001)  # RFC 3550 11: RTP port + 1
    assert RemoteMedia("192.0.2.1", 4000, 5005, False).rtcp_address() == ("192.0.2.1", 5005)
    assert RemoteMedia("192.0.2.1", 0, None, False).rejected
    assert RemoteMedia("0.0.0.0", 4000, None, False).hold
    assert RemoteMedia("::", 4000, None, False).hold
