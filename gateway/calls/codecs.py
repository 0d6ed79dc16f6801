"""What the gateway needs to know of a call's audio codecs: G.711 and telephone-events.

The gateway decodes only G.711 (PCMU and PCMA, RFC 3551 static payload types
0 and 8): notices are played in it, in-band DTMF is heard in it, capture
records it. Telephone-events (RFC 4733 7.1.1, ``a=rtpmap:<pt>
telephone-event/8000``) carry key presses. A party receives the payload
types its own SDP lists (RFC 3264 5.1), so the notice toward a party uses
the first G.711 type in that party's SDP.
"""

from __future__ import annotations

from gateway.sip.sdp import MediaDescription, SessionDescription

G711_TYPES = ("0", "8")
TELEPHONE_EVENT = "telephone-event"


def first_audio(sdp: SessionDescription) -> MediaDescription | None:
    """The first accepted audio stream (m=audio with a port other than 0)."""
    for media in sdp.media:
        if media.kind == "audio" and not media.is_rejected:
            return media
    return None


def g711_type(sdp: SessionDescription | None) -> int | None:
    """The G.711 payload type a party lists first in its audio stream, None without one."""
    media = first_audio(sdp) if sdp is not None else None
    if media is None:
        return None
    for payload_type in media.formats:
        if payload_type in G711_TYPES:
            return int(payload_type)
    return None


def event_types(*descriptions: SessionDescription | None) -> frozenset[int]:
    """Every payload type mapped to telephone-event in the audio streams of the SDPs."""
    found: set[int] = set()
    for sdp in descriptions:
        media = first_audio(sdp) if sdp is not None else None
        if media is None:
            continue
        for payload_type, (encoding, _, _) in media.rtpmap.items():
            if encoding.lower() == TELEPHONE_EVENT and payload_type.isdigit():
                found.add(int(payload_type))
    return frozenset(found)


def restrict_to_g711(sdp: SessionDescription) -> SessionDescription | None:
    """A copy of an offer whose audio stream keeps one G.711 type and its telephone-events.

    The answer the gateway gives the caller itself (a notice as early media)
    uses it, and so does the offer sent on to the callee, so both legs end
    up on the same codec and the relay needs no transcoding. None when the
    offer has no G.711.
    """
    media = first_audio(sdp)
    chosen = g711_type(sdp)
    if media is None or chosen is None:
        return None
    copy = sdp.copy()
    target = copy.media[sdp.media.index(media)]
    events = {str(pt) for pt in event_types(sdp)}
    keep = [str(chosen), *[pt for pt in target.formats if pt in events]]
    target.formats = keep
    target.attributes = [
        (name, value)
        for name, value in target.attributes
        if name.lower() not in ("rtpmap", "fmtp") or (value or "").split(" ", 1)[0] in keep
    ]
    return copy
