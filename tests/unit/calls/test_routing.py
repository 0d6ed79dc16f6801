"""Tenant matching and direction (gateway/calls/routing.py)."""

from __future__ import annotations

import pytest

from gateway.calls.routing import INBOUND, OUTBOUND, NoRoute, RouteTable
from gateway.config import PeerSettings, TenantSettings
from gateway.sip.uri import SipUri


def tenant(name: str, pbx: str, trunk: str, **extra: object) -> TenantSettings:
    return TenantSettings(
        name=name,
        pbx=PeerSettings(host=pbx),
        trunk=PeerSettings(host=trunk),
        **extra,  # type: ignore[arg-type]
    )


def uri(text: str) -> SipUri:
    return SipUri.parse(text)


def test_trunk_calls_go_inbound_to_the_pbx() -> None:
    table = RouteTable([tenant("acme", "10.0.0.2", "192.0.2.10")])
    route = table.route("192.0.2.10", 5060, uri("sip:+15551234567@gw"))
    assert route.tenant.name == "acme"
    assert route.direction == INBOUND
    assert route.target.host == "10.0.0.2"


def test_pbx_calls_go_outbound_to_the_trunk() -> None:
    table = RouteTable([tenant("acme", "10.0.0.2", "192.0.2.10")])
    route = table.route("10.0.0.2", 41234, uri("sip:+15551234567@gw"))
    assert route.direction == OUTBOUND
    assert route.target.host == "192.0.2.10"


def test_unknown_sender_has_no_route() -> None:
    table = RouteTable([tenant("acme", "10.0.0.2", "192.0.2.10")])
    with pytest.raises(NoRoute, match=r"203\.0\.113\.5"):
        table.route("203.0.113.5", 5060, uri("sip:100@gw"))


def test_shared_trunk_is_split_by_called_domain() -> None:
    table = RouteTable(
        [
            tenant("acme", "10.0.0.2", "192.0.2.10", domains=["acme.example"]),
            tenant("globex", "10.0.1.2", "192.0.2.10", domains=["globex.example"]),
        ]
    )
    assert table.route("192.0.2.10", 5060, uri("sip:100@globex.example")).tenant.name == "globex"
    assert table.route("192.0.2.10", 5060, uri("sip:100@ACME.example")).tenant.name == "acme"


def test_shared_trunk_is_split_by_longest_number_prefix() -> None:
    table = RouteTable(
        [
            tenant("acme", "10.0.0.2", "192.0.2.10", number_prefixes=["+1555"]),
            tenant("globex", "10.0.1.2", "192.0.2.10", number_prefixes=["+155512"]),
        ]
    )
    assert table.route("192.0.2.10", 5060, uri("sip:+15551234@gw")).tenant.name == "globex"
    assert table.route("192.0.2.10", 5060, uri("sip:15559999@gw")).tenant.name == "acme"


def test_shared_trunk_without_a_deciding_rule_is_refused() -> None:
    table = RouteTable(
        [
            tenant("acme", "10.0.0.2", "192.0.2.10", number_prefixes=["+1555"]),
            tenant("globex", "10.0.1.2", "192.0.2.10", number_prefixes=["+1666"]),
        ]
    )
    with pytest.raises(NoRoute, match="neither domain"):
        table.route("192.0.2.10", 5060, uri("sip:+4930123@gw"))
