"""Media anchoring of SDP (gateway/calls/anchor.py) over a real relay session."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from gateway.calls.anchor import MediaAnchor, find_sdp
from gateway.media.relay import MediaRelay
from gateway.sip.sdp import SessionDescription, media_endpoints

OFFER = (
    "v=0\r\no=pbx 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
)


@pytest.fixture
async def relay() -> AsyncIterator[MediaRelay]:
    media = MediaRelay("127.0.0.1", 16000, 16099)
    yield media
    await media.close()


async def test_render_points_each_side_at_its_own_relay_ports(relay: MediaRelay) -> None:
    session = await relay.create_session("call-1", streams=1)
    anchor = MediaAnchor(session, "192.0.2.1")
    offer = SessionDescription.parse(OFFER)
    anchor.accept("a", offer)
    to_b = SessionDescription.parse(anchor.render("b", offer))
    address, rtp_port, _, _ = media_endpoints(to_b)[0]
    assert address == "192.0.2.1"
    assert rtp_port == session.local_ports("b")[0][0]
    assert rtp_port != session.local_ports("a")[0][0]
    assert to_b.media[0].rtpmap["101"][0] == "telephone-event"


async def test_origin_version_rises_only_when_the_sdp_changes(relay: MediaRelay) -> None:
    session = await relay.create_session("call-2", streams=1)
    anchor = MediaAnchor(session, "192.0.2.1")
    offer = SessionDescription.parse(OFFER)
    first = SessionDescription.parse(anchor.render("b", offer))
    again = SessionDescription.parse(anchor.render("b", offer))
    assert again.origin.session_version == first.origin.session_version
    held = SessionDescription.parse(OFFER.replace("a=sendrecv", "a=sendonly"))
    changed = SessionDescription.parse(anchor.render("b", held))
    assert changed.origin.session_version == first.origin.session_version + 1
    assert changed.media[0].direction == "sendonly"


async def test_streams_beyond_the_session_are_rejected(relay: MediaRelay) -> None:
    session = await relay.create_session("call-3", streams=1)
    anchor = MediaAnchor(session, "192.0.2.1")
    two = SessionDescription.parse(OFFER + "m=video 40002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n")
    rendered = SessionDescription.parse(anchor.render("b", two))
    assert rendered.media[0].port != 0
    assert rendered.media[1].port == 0


def test_only_sdp_bodies_are_parsed() -> None:
    assert find_sdp("application/dtmf-relay", b"Signal=1\r\nDuration=160\r\n") is None
    assert find_sdp("application/sdp", b"") is None
    found = find_sdp("application/sdp", OFFER.encode())
    assert found is not None
    assert found.replace(b"v=0\r\n") == (b"v=0\r\n", "application/sdp")


ISUP = bytes(range(256))
MULTIPART_TYPE = 'multipart/mixed;boundary="unique-boundary-1"'
MULTIPART = (
    b"--unique-boundary-1\r\nContent-Type: application/sdp\r\n\r\n"
    + OFFER.encode()
    + b"\r\n--unique-boundary-1\r\nContent-Type: application/isup;version=itu-t92+\r\n"
    b"Content-Disposition: signal;handling=optional\r\n\r\n"
    + ISUP
    + b"\r\n--unique-boundary-1--\r\n"
)


async def test_sdp_inside_multipart_is_anchored_and_isup_kept(relay: MediaRelay) -> None:
    found = find_sdp(MULTIPART_TYPE, MULTIPART)
    assert found is not None
    session = await relay.create_session("call-4", streams=1)
    anchor = MediaAnchor(session, "192.0.2.1")
    anchor.accept("a", found.sdp)
    body, content_type = found.replace(anchor.render("b", found.sdp))
    assert content_type == MULTIPART_TYPE
    again = find_sdp(content_type, body)
    assert again is not None
    assert media_endpoints(again.sdp)[0][:2] == ("192.0.2.1", session.local_ports("b")[0][0])
    assert again.container is not None
    isup = again.container.parts[1]
    assert isup.content_type == "application/isup"
    assert isup.body == ISUP


async def test_hold_is_tracked_from_either_sides_latest_sdp(relay: MediaRelay) -> None:
    session = await relay.create_session("call-5", streams=1)
    anchor = MediaAnchor(session, "192.0.2.1")
    anchor.accept("a", SessionDescription.parse(OFFER))
    assert not anchor.on_hold
    anchor.accept("a", SessionDescription.parse(OFFER.replace("a=sendrecv", "a=inactive")))
    assert anchor.on_hold
    anchor.accept("a", SessionDescription.parse(OFFER))
    anchor.accept("b", SessionDescription.parse(OFFER.replace("10.0.0.2\r\nt", "0.0.0.0\r\nt")))
    assert anchor.on_hold
    anchor.accept("b", SessionDescription.parse(OFFER))
    assert not anchor.on_hold
