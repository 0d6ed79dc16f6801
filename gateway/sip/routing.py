"""Where SIP messages go: request targets and response destinations.

No DNS here (RFC 3263 resolution belongs to the glue): hosts come back as
they appear in the message, IP literals without their IPv6 brackets.
"""

from __future__ import annotations

from gateway.sip.headers import Via
from gateway.sip.ip import ip_literal
from gateway.sip.uri import SipUri

Address = tuple[str, int]

SIP_PORT = 5060
SIPS_PORT = 5061


def _bare_host(host: str) -> str:
    """``[2001:db8::1]`` -> ``2001:db8::1``; other hosts unchanged."""
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host


def _same_ip(host: str, ip: str) -> bool:
    """True when ``host`` is an IP literal equal to ``ip`` (so no ``received`` is needed)."""
    try:
        return ip_literal(_bare_host(host)) == ip_literal(_bare_host(ip))
    except ValueError:
        return False


def _default_port(transport: str) -> int:
    """RFC 3261 18.2.2 / 19.1.2: 5061 for TLS, 5060 for everything else."""
    return SIPS_PORT if transport.lower() == "tls" else SIP_PORT


def uri_to_address(uri: SipUri, default_transport: str = "udp") -> tuple[str, int, str]:
    """The (host, port, transport) a request for ``uri`` goes to.

    RFC 3261 19.1.1: a ``maddr`` parameter overrides the host; the
    ``transport`` parameter picks the transport, else ``sips`` URIs use TLS
    and ``sip`` URIs ``default_transport``. The port defaults to 5061 for
    ``sips``/TLS and 5060 otherwise (19.1.2, RFC 3263 4.2 without SRV).
    """
    params = {key.lower(): value for key, value in uri.params.items()}
    maddr = params.get("maddr")
    host = _bare_host(maddr if maddr else uri.host)
    transport_param = params.get("transport")
    if transport_param:
        transport = transport_param.lower()
    elif uri.scheme.lower() == "sips":
        transport = "tls"
    else:
        transport = default_transport.lower()
    if uri.port is not None:
        port = uri.port
    elif uri.scheme.lower() == "sips":
        port = SIPS_PORT
    else:
        port = _default_port(transport)
    return host, port, transport


def response_destination(via: Via, source: Address) -> Address:
    """Where a response to a request with top Via ``via`` from ``source`` is sent.

    RFC 3581 4: with an ``rport`` parameter, to the ``received`` address (or
    the packet's source) and the ``rport`` value (or the source port). RFC
    3261 18.2.2: otherwise to ``received`` when present, else the sent-by
    host, at the sent-by port or the transport's default port.
    """
    if via.has_rport:
        host = via.received or source[0]
        port = via.rport if via.rport else source[1]
        return _bare_host(host), int(port)
    host = via.received or via.host
    port = via.port if via.port else _default_port(via.transport)
    return _bare_host(host), port


def add_received(via: Via, source: Address) -> Via:
    """Stamp a received request's top Via with where it really came from.

    RFC 3261 18.2.1: add ``received`` when the sent-by host differs from the
    source IP. RFC 3581 4: an ``rport`` without value gets the source port,
    and then ``received`` is added even when it equals the sent-by host.
    Returns ``via`` itself when nothing changes, a new Via otherwise.
    """
    source_ip = _bare_host(source[0])
    fill_rport = via.has_rport and via.rport is None
    needs_received = fill_rport or not _same_ip(via.host, source_ip)
    if not fill_rport and (not needs_received or via.received == source_ip):
        return via
    params = dict(via.params)
    if needs_received:
        params["received"] = source_ip
    if fill_rport:
        params["rport"] = str(source[1])
    return Via(transport=via.transport, host=via.host, port=via.port, params=params)
