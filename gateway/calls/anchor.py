"""Media anchoring: every SDP that crosses the gateway points at its relay.

Each side's SDP tells the relay where that party receives media
(:func:`~gateway.sip.sdp.media_endpoints`); the SDP sent to the other side is
rewritten to the relay ports that face it. Each side gets its own ``o=`` line
whose version goes up exactly when the SDP we send to that side changes
(RFC 3264 8).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gateway.media.relay import MediaSession
from gateway.sip.multipart import BodyPart, Multipart, parse_multipart
from gateway.sip.sdp import (
    Origin,
    SdpParseError,
    SessionDescription,
    media_endpoints,
    new_origin,
    rewrite_for_relay,
)

SDP_TYPE = "application/sdp"


class MediaAnchor:
    """Applies and renders SDP for one call's media session."""

    def __init__(self, session: MediaSession, advertised_address: str) -> None:
        self.session = session
        self._address = advertised_address
        self._origins: dict[str, Origin] = {
            "a": new_origin(advertised_address),
            "b": new_origin(advertised_address),
        }
        self._last_sent: dict[str, bytes] = {}
        self._holding: dict[str, bool] = {"a": False, "b": False}
        self.on_accept: Callable[[str, SessionDescription], None] | None = None

    @property
    def stream_count(self) -> int:
        return len(self.session.streams)

    @property
    def on_hold(self) -> bool:
        """Whether the latest SDP of either side holds a stream (RFC 3264 8.4)."""
        return self._holding["a"] or self._holding["b"]

    def accept(self, side: str, sdp: SessionDescription) -> None:
        """Learn from ``side``'s SDP where that party receives each stream."""
        if self.on_accept is not None:
            self.on_accept(side, sdp)
        self._holding[side] = any(
            sdp.is_hold(index) for index, media in enumerate(sdp.media) if not media.is_rejected
        )
        endpoints = media_endpoints(sdp)
        for index, (address, rtp_port, rtcp_port, rtcp_mux) in enumerate(endpoints):
            if index >= self.stream_count:
                break
            self.session.set_remote(side, index, address, rtp_port, rtcp_port, rtcp_mux)

    def render(self, side: str, sdp: SessionDescription) -> bytes:
        """The SDP to send to ``side``: ``sdp`` with the relay's ports facing ``side``.

        Streams beyond those the relay holds are offered as rejected (port 0,
        RFC 3264 6) rather than let media bypass the gateway.
        """
        ports: list[tuple[int, int | None]] = list(self.session.local_ports(side))
        while len(ports) < len(sdp.media):
            ports.append((0, None))
        origin = self._origins[side]
        rendered = rewrite_for_relay(sdp, address=self._address, ports=ports, origin=origin)
        body = bytes(rendered)
        comparable = _without_origin(body)
        previous = self._last_sent.get(side)
        if previous is not None and previous != comparable:
            origin.session_version += 1
            rendered.origin = origin.copy()
            body = bytes(rendered)
        self._last_sent[side] = comparable
        return body


def _without_origin(body: bytes) -> bytes:
    """``body`` less its ``o=`` line (the second line, RFC 4566 5), to compare two versions."""
    start = body.find(b"\no=")
    if start < 0:
        return body
    end = body.find(b"\n", start + 1)
    return body[:start] + (body[end:] if end >= 0 else b"")


@dataclass(slots=True)
class SdpBody:
    """The SDP found in a message body, and how to put a rewritten SDP in its place.

    A plain ``application/sdp`` body is replaced whole; in a multipart body
    (RFC 5621, e.g. SDP beside ISUP from a SIP-T trunk, RFC 3204) only the
    SDP part changes and every other part is carried byte for byte.
    """

    sdp: SessionDescription
    content_type: str
    container: Multipart | None = None
    part_index: int = 0

    def replace(self, sdp: bytes) -> tuple[bytes, str]:
        """The whole body with ``sdp`` in place of the original, and its Content-Type."""
        if self.container is None:
            return sdp, SDP_TYPE
        parts = list(self.container.parts)
        old = parts[self.part_index]
        parts[self.part_index] = BodyPart(list(old.headers), sdp)
        rebuilt = Multipart(
            self.container.boundary, parts, self.container.preamble, self.container.epilogue
        )
        return bytes(rebuilt), self.content_type


def find_sdp(content_type: str | None, body: bytes) -> SdpBody | None:
    """The SDP in a body (plain or one multipart part); None when there is none.

    Raises SdpParseError for a bad SDP and SipParseError for a bad multipart body.
    """
    if not body or not content_type:
        return None
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == SDP_TYPE:
        return SdpBody(SessionDescription.parse(body), content_type)
    if not media_type.startswith("multipart/"):
        return None
    container = parse_multipart(content_type, body)
    for index, part in enumerate(container.parts):
        if part.content_type == SDP_TYPE:
            sdp = SessionDescription.parse(part.body)
            return SdpBody(sdp, content_type, container, index)
    return None


__all__ = ["SDP_TYPE", "MediaAnchor", "SdpBody", "SdpParseError", "find_sdp"]
