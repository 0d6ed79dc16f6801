"""G.711 and telephone-event facts read from SDP, and the offer restricted for an early notice."""

from __future__ import annotations

from gateway.calls.codecs import event_types, g711_type, restrict_to_g711
from gateway.sip.sdp import SessionDescription

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP 9 8 0 101 96\r\n"
    "a=rtpmap:9 G722/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
    "a=rtpmap:96 opus/48000/2\r\na=fmtp:96 useinbandfec=1\r\na=ptime:20\r\n"
    "m=video 4002 RTP/AVP 97\r\na=rtpmap:97 H264/90000\r\n"
)


def parse(text: str) -> SessionDescription:
    return SessionDescription.parse(text.encode())


def test_first_listed_g711_type_and_events() -> None:
    sdp = parse(OFFER)
    assert g711_type(sdp) == 8  # PCMA is listed before PCMU
    assert event_types(sdp) == frozenset({101})
    assert g711_type(None) is None


def test_no_g711() -> None:
    sdp = parse(OFFER.replace("RTP/AVP 9 8 0 101 96", "RTP/AVP 9 101 96"))
    assert g711_type(sdp) is None
    assert restrict_to_g711(sdp) is None


def test_rejected_audio_stream_has_no_codec() -> None:
    sdp = parse(OFFER.replace("m=audio 4000", "m=audio 0"))
    assert g711_type(sdp) is None


def test_restricted_offer_keeps_one_g711_and_the_events() -> None:
    sdp = parse(OFFER)
    restricted = restrict_to_g711(sdp)
    assert restricted is not None
    audio = restricted.media[0]
    assert audio.formats == ["8", "101"]
    assert set(audio.rtpmap) == {"8", "101"}
    assert "ptime" in {name for name, _ in audio.attributes}
    assert all(not (value or "").startswith("96") for _, value in audio.attributes)
    assert restricted.media[1].formats == ["97"]  # other streams untouched
    assert sdp.media[0].formats == ["9", "8", "0", "101", "96"]  # the original is a copy
