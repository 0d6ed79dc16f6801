"""Which tenant a call belongs to, and where its other leg goes.

A tenant has two peers, its PBX and its SIP trunk. A call is matched by the
peer that sent the INVITE; where several tenants share a peer, the called
domain (Request-URI host) and then the called number prefix tell them apart.
A call from the trunk goes to the PBX (inbound); a call from the PBX goes to
the trunk (outbound). A sender that matches no tenant gets 403.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config import PeerSettings, TenantSettings
from gateway.sip.uri import SipUri

INBOUND = "inbound"
OUTBOUND = "outbound"


@dataclass(frozen=True, slots=True)
class Route:
    """The decision for one new call."""

    tenant: TenantSettings
    direction: str
    origin: PeerSettings
    target: PeerSettings


class NoRoute(Exception):
    """No tenant accepts this sender (and called domain or number)."""


class RouteTable:
    """Matches new INVITEs to a tenant and a target peer."""

    def __init__(self, tenants: list[TenantSettings]) -> None:
        self._tenants = list(tenants)

    def route(self, source_ip: str, source_port: int, request_uri: SipUri) -> Route:
        """Pick the route for an INVITE from ``source_ip:source_port`` to ``request_uri``."""
        candidates: list[Route] = []
        for tenant in self._tenants:
            if tenant.trunk.matches(source_ip, source_port):
                candidates.append(Route(tenant, INBOUND, tenant.trunk, tenant.pbx))
            elif tenant.pbx.matches(source_ip, source_port):
                candidates.append(Route(tenant, OUTBOUND, tenant.pbx, tenant.trunk))
        if not candidates:
            raise NoRoute(f"no tenant has a peer at {source_ip}:{source_port}")
        if len(candidates) == 1:
            return candidates[0]
        return self._disambiguate(candidates, request_uri)

    @staticmethod
    def _disambiguate(candidates: list[Route], request_uri: SipUri) -> Route:
        host = request_uri.host.lower()
        by_domain = [r for r in candidates if host in (d.lower() for d in r.tenant.domains)]
        if len(by_domain) == 1:
            return by_domain[0]
        pool = by_domain or candidates
        number = (request_uri.user or "").split(";", 1)[0]
        best: Route | None = None
        best_length = -1
        ambiguous = False
        for candidate in pool:
            for prefix in candidate.tenant.number_prefixes:
                if number.startswith(prefix) or number.lstrip("+").startswith(prefix.lstrip("+")):
                    length = len(prefix.lstrip("+"))
                    if length > best_length:
                        best, best_length, ambiguous = candidate, length, False
                    elif length == best_length and candidate is not best:
                        ambiguous = True
        if best is not None and not ambiguous:
            return best
        raise NoRoute(
            f"sender is shared by tenants {', '.join(r.tenant.name for r in pool)} "
            f"and neither domain {host!r} nor number {number!r} picks one"
        )
