"""SDP parsing, serialization and relay rewriting (RFC 4566, RFC 3264)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sip.sdp import (
    ICE_ATTRIBUTES,
    Connection,
    MediaDescription,
    Origin,
    SdpParseError,
    SessionDescription,
    media_endpoints,
    new_origin,
    rewrite_for_relay,
)


def crlf(*lines: str) -> bytes:
    return "".join(line + "\r\n" for line in lines).encode()


# ------------------------------------------------------- real-world offers

ASTERISK = crlf(
    "v=0",
    "o=- 1889393420 1889393422 IN IP4 192.0.2.10",
    "s=Asterisk",
    "c=IN IP4 192.0.2.10",
    "t=0 0",
    "m=audio 14270 RTP/AVP 0 8 3 101",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:3 GSM/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=ptime:20",
    "a=maxptime:150",
    "a=sendrecv",
)

FREESWITCH = crlf(
    "v=0",
    "o=FreeSWITCH 1706180331 1706180332 IN IP4 198.51.100.20",
    "s=FreeSWITCH",
    "c=IN IP4 198.51.100.20",
    "t=0 0",
    "m=audio 21844 RTP/AVP 9 0 8 101 13",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=rtpmap:13 CN/8000",
    "a=ptime:20",
    "a=sendrecv",
    "a=rtcp:21845 IN IP4 198.51.100.20",
)

POLYCOM_SRTP = crlf(
    "v=0",
    "o=- 1706180400 1706180400 IN IP4 10.20.30.40",
    "s=Polycom IP Phone",
    "c=IN IP4 10.20.30.40",
    "t=0 0",
    "a=sendrecv",
    "m=audio 2226 RTP/SAVP 9 102 0 8 18 127",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:102 G7221/16000",
    "a=fmtp:102 bitrate=32000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:18 G729/8000",
    "a=fmtp:18 annexb=no",
    "a=rtpmap:127 telephone-event/8000",
    "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:IkwCQrGc0dPNS1Ge2Ep4FBGbBMUaRN5EoE4TmOBB",
    "a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:0VtPHV5wXnDy3qRdazGDYT8mUGcZ1E9SFYZTfbzL",
)

CISCO = crlf(
    "v=0",
    "o=CiscoSystemsSIP-GW-UserAgent 4166 2651 IN IP4 10.1.1.1",
    "s=SIP Call",
    "c=IN IP4 10.1.1.1",
    "b=AS:80",
    "t=0 0",
    "m=audio 18270 RTP/AVP 0 101 19",
    "c=IN IP4 10.1.1.1",
    "b=TIAS:64000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=rtpmap:19 CN/8000",
    "a=ptime:20",
)

BARESIP = crlf(
    "v=0",
    "o=- 1254009287 1921224541 IN IP4 192.168.1.20",
    "s=-",
    "c=IN IP4 192.168.1.20",
    "t=0 0",
    "a=tool:baresip 3.10.1",
    "m=audio 10318 RTP/AVP 96 9 0 8 101",
    "b=AS:96",
    "a=rtpmap:96 opus/48000/2",
    "a=fmtp:96 stereo=1;sprop-stereo=1",
    "a=rtpmap:9 G722/8000",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
    "a=sendrecv",
    "a=label:1",
    "a=rtcp-rsize",
    "a=ssrc:2921874633 cname:1a7f0e4c-2b0d-4f44-9e8e-7c8a3b6c0d11",
)

SIPP_UAC = crlf(
    "v=0",
    "o=user1 53655765 2353687637 IN IP4 127.0.0.1",
    "s=-",
    "c=IN IP4 127.0.0.1",
    "t=0 0",
    "m=audio 6000 RTP/AVP 0",
    "a=rtpmap:0 PCMU/8000",
)

WEBRTC = crlf(
    "v=0",
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1",
    "s=-",
    "t=0 0",
    "a=group:BUNDLE 0 1",
    "a=extmap-allow-mixed",
    "a=msid-semantic: WMS stream0",
    "m=audio 54400 UDP/TLS/RTP/SAVPF 111 0 8 126",
    "c=IN IP4 203.0.113.7",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=candidate:1467250027 1 udp 2122260223 192.168.0.196 54400 typ host generation 0",
    "a=candidate:2 1 udp 1686052607 203.0.113.7 54400 typ srflx raddr 192.168.0.196"
    " rport 54400 generation 0",
    "a=ice-ufrag:Oyef",
    "a=ice-pwd:7nDvfEkgUU8JrGRNhK5kYyBD",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:"
    "7D:62:C9:9A:7F:B9:A3:F4:70:03:E7:43:91:73:23:5E",
    "a=setup:actpass",
    "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
    "a=sendrecv",
    "a=msid:stream0 track0",
    "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2",
    "a=rtcp-fb:111 transport-cc",
    "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:126 telephone-event/8000",
    "a=ssrc:1001 cname:s7hK3mF1",
    "a=end-of-candidates",
    "m=video 54400 UDP/TLS/RTP/SAVPF 96 97",
    "c=IN IP4 203.0.113.7",
    "a=rtcp:9 IN IP4 0.0.0.0",
    "a=candidate:1467250027 1 udp 2122260223 192.168.0.196 54400 typ host generation 0",
    "a=ice-ufrag:Oyef",
    "a=ice-pwd:7nDvfEkgUU8JrGRNhK5kYyBD",
    "a=ice-options:trickle",
    "a=fingerprint:sha-256 49:66:12:17:0D:1C:91:AE:57:4C:C6:36:DD:D5:97:D2:"
    "7D:62:C9:9A:7F:B9:A3:F4:70:03:E7:43:91:73:23:5E",
    "a=setup:actpass",
    "a=mid:1",
    "a=sendrecv",
    "a=rtcp-mux",
    "a=rtcp-rsize",
    "a=rtpmap:96 VP8/90000",
    "a=rtcp-fb:96 nack",
    "a=rtpmap:97 rtx/90000",
    "a=fmtp:97 apt=96",
)

IPV6 = crlf(
    "v=0",
    "o=- 3961 3961 IN IP6 ::1",
    "s=-",
    "c=IN IP6 ::1",
    "t=0 0",
    "m=audio 40000 RTP/AVP 8 101",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-15",
)

REAL_WORLD = {
    "asterisk": ASTERISK,
    "freeswitch": FREESWITCH,
    "polycom": POLYCOM_SRTP,
    "cisco": CISCO,
    "baresip": BARESIP,
    "sipp": SIPP_UAC,
    "webrtc": WEBRTC,
    "ipv6": IPV6,
}

RELAY = "10.99.0.1"


def relay_origin() -> Origin:
    return Origin("callgate", "777", 5, "IN", "IP4", RELAY)


def with_lines(base: bytes, *lines: str) -> bytes:
    return base + crlf(*lines)


SIMPLE = crlf(
    "v=0",
    "o=- 1 1 IN IP4 192.0.2.1",
    "s=-",
    "c=IN IP4 192.0.2.1",
    "t=0 0",
)


# ------------------------------------------------------------ parse, print


@pytest.mark.parametrize("name", sorted(REAL_WORLD))
def test_real_world_round_trips_byte_for_byte(name: str) -> None:
    data = REAL_WORLD[name]
    assert bytes(SessionDescription.parse(data)) == data


@pytest.mark.parametrize("name", sorted(REAL_WORLD))
def test_real_world_parses_from_text_too(name: str) -> None:
    data = REAL_WORLD[name]
    assert SessionDescription.parse(data.decode()) == SessionDescription.parse(data)


def test_asterisk_fields() -> None:
    sdp = SessionDescription.parse(ASTERISK)
    assert sdp.version == 0
    assert sdp.origin == Origin("-", "1889393420", 1889393422, "IN", "IP4", "192.0.2.10")
    assert sdp.session_name == "Asterisk"
    assert sdp.connection == Connection("192.0.2.10")
    assert sdp.timing == ["t=0 0"]
    [audio] = sdp.media
    assert (audio.kind, audio.port, audio.port_count, audio.proto) == (
        "audio",
        14270,
        None,
        "RTP/AVP",
    )
    assert audio.formats == ["0", "8", "3", "101"]
    assert audio.rtpmap == {
        "0": ("PCMU", 8000, None),
        "8": ("PCMA", 8000, None),
        "3": ("GSM", 8000, None),
        "101": ("telephone-event", 8000, None),
    }
    assert audio.fmtp == {"101": "0-16"}
    assert audio.ptime == 20
    assert audio.get_attribute("maxptime") == "150"
    assert audio.direction == "sendrecv"
    assert audio.rtcp is None
    assert not audio.rtcp_mux
    assert not audio.is_rejected


def test_freeswitch_rtcp_attribute() -> None:
    [audio] = SessionDescription.parse(FREESWITCH).media
    assert audio.rtcp == (21845, "198.51.100.20")
    assert audio.rtpmap["13"] == ("CN", 8000, None)


def test_polycom_session_level_direction_and_crypto() -> None:
    sdp = SessionDescription.parse(POLYCOM_SRTP)
    assert sdp.direction == "sendrecv"
    [audio] = sdp.media
    assert audio.proto == "RTP/SAVP"
    assert len(audio.get_attributes("crypto")) == 2
    assert audio.get_attributes("crypto")[0].startswith("1 AES_CM_128_HMAC_SHA1_80 inline:")
    assert audio.rtpmap["102"] == ("G7221", 16000, None)
    assert audio.fmtp["18"] == "annexb=no"


def test_cisco_bandwidths_and_media_connection() -> None:
    sdp = SessionDescription.parse(CISCO)
    assert sdp.bandwidths == ["AS:80"]
    [audio] = sdp.media
    assert audio.bandwidths == ["TIAS:64000"]
    assert audio.connection == Connection("10.1.1.1")


def test_baresip_opus_channels_and_session_attribute() -> None:
    sdp = SessionDescription.parse(BARESIP)
    assert sdp.get_attribute("tool") == "baresip 3.10.1"
    assert sdp.media[0].rtpmap["96"] == ("opus", 48000, 2)
    assert sdp.media[0].fmtp["96"] == "stereo=1;sprop-stereo=1"


def test_sipp_large_session_version() -> None:
    sdp = SessionDescription.parse(SIPP_UAC)
    assert sdp.origin.session_version == 2353687637
    assert sdp.origin.username == "user1"


def test_webrtc_two_sections_with_ice_and_mux() -> None:
    sdp = SessionDescription.parse(WEBRTC)
    assert sdp.connection is None
    assert [media.kind for media in sdp.media] == ["audio", "video"]
    assert sdp.get_attribute("group") == "BUNDLE 0 1"
    assert sdp.get_attribute("msid-semantic") == " WMS stream0"
    audio, video = sdp.media
    assert audio.rtcp_mux and video.rtcp_mux
    assert audio.rtcp == (9, "0.0.0.0")
    assert len(audio.get_attributes("candidate")) == 2
    assert audio.get_attribute("end-of-candidates") == ""
    assert video.rtpmap == {"96": ("VP8", 90000, None), "97": ("rtx", 90000, None)}
    assert sdp.connection_for(1) == Connection("203.0.113.7")


def test_ipv6_connection() -> None:
    sdp = SessionDescription.parse(IPV6)
    assert sdp.origin.addrtype == "IP6"
    assert sdp.connection == Connection("::1", "IP6")


def test_lf_line_ends_and_trailing_blanks_are_tolerated() -> None:
    sloppy = ASTERISK.replace(b"\r\n", b"  \t\n")
    assert SessionDescription.parse(sloppy) == SessionDescription.parse(ASTERISK)
    assert bytes(SessionDescription.parse(sloppy)) == ASTERISK


def test_blank_lines_are_skipped() -> None:
    data = SIPP_UAC.replace(b"s=-\r\n", b"s=-\r\n\r\n") + b"\r\n"
    assert bytes(SessionDescription.parse(data)) == SIPP_UAC


def test_missing_timing_is_accepted_and_written_as_t_0_0() -> None:
    data = SIPP_UAC.replace(b"t=0 0\r\n", b"")
    sdp = SessionDescription.parse(data)
    assert sdp.timing == ["t=0 0"]
    assert bytes(sdp) == SIPP_UAC


def test_missing_timing_without_media() -> None:
    sdp = SessionDescription.parse(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n")
    assert sdp.timing == ["t=0 0"]
    assert sdp.media == []


def test_empty_session_name_is_written_as_a_single_space() -> None:
    """RFC 4566 5.3: a session without a meaningful name uses "s= "."""
    sdp = SessionDescription.parse(SIMPLE.replace(b"s=-", b"s= "))
    assert sdp.session_name == ""
    assert b"\r\ns= \r\n" in bytes(sdp)


def test_all_session_fields_in_rfc_order() -> None:
    data = crlf(
        "v=0",
        "o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5",
        "s=SDP Seminar",
        "i=A Seminar on the session description protocol",
        "u=http://www.example.com/seminars/sdp.pdf",
        "e=j.doe@example.com (Jane Doe)",
        "p=+1 617 555-6011",
        "c=IN IP4 224.2.17.12/127",
        "b=CT:128",
        "t=2873397496 2873404696",
        "r=7d 1h 0 25h",
        "t=0 0",
        "z=2882844526 -1h 2898848070 0",
        "k=prompt",
        "a=recvonly",
        "m=audio 49170 RTP/AVP 0",
        "i=voice",
        "c=IN IP4 224.2.17.12/127/2",
        "b=AS:64",
        "k=prompt",
        "a=rtpmap:0 PCMU/8000",
        "m=video 51372/2 RTP/AVP 99",
        "a=rtpmap:99 h263-1998/90000",
    )
    sdp = SessionDescription.parse(data)
    assert sdp.info == "A Seminar on the session description protocol"
    assert sdp.uri == "http://www.example.com/seminars/sdp.pdf"
    assert sdp.emails == ["j.doe@example.com (Jane Doe)"]
    assert sdp.phones == ["+1 617 555-6011"]
    assert sdp.connection == Connection("224.2.17.12", ttl=127)
    assert sdp.timing == ["t=2873397496 2873404696", "r=7d 1h 0 25h", "t=0 0"]
    assert sdp.time_zones == "2882844526 -1h 2898848070 0"
    assert sdp.key == "prompt"
    audio, video = sdp.media
    assert audio.info == "voice"
    assert audio.connection == Connection("224.2.17.12", ttl=127, num=2)
    assert audio.key == "prompt"
    assert (video.port, video.port_count) == (51372, 2)
    assert bytes(sdp) == data


def test_unknown_type_letters_are_kept() -> None:
    data = crlf(
        "v=0",
        "o=- 1 1 IN IP4 192.0.2.1",
        "y=session extension",
        "s=-",
        "c=IN IP4 192.0.2.1",
        "t=0 0",
        "m=audio 4000 RTP/AVP 0",
        "x=media extension",
        "a=sendrecv",
    )
    sdp = SessionDescription.parse(data)
    assert sdp.other_lines == [("y", "session extension")]
    assert sdp.media[0].other_lines == [("x", "media extension")]
    reparsed = SessionDescription.parse(bytes(sdp))
    assert reparsed == sdp
    assert b"x=media extension\r\na=sendrecv\r\n" in bytes(sdp)


def test_ip6_multicast_number_of_addresses() -> None:
    connection = Connection.parse("IN IP6 ff15::101/3")
    assert connection == Connection("ff15::101", "IP6", num=3)
    assert str(connection) == "IN IP6 ff15::101/3"


def test_non_utf8_text_is_kept_byte_for_byte() -> None:
    """RFC 4566 5: a=charset may select a character set other than UTF-8."""
    data = SIMPLE.replace(b"s=-", b"s=T\xe9l\xe9phone") + crlf("a=charset:ISO-8859-1")
    assert bytes(SessionDescription.parse(data)) == data


def test_serializing_refuses_line_breaks_in_values() -> None:
    sdp = SessionDescription.parse(SIPP_UAC)
    sdp.session_name = "x\r\na=injected"
    with pytest.raises(ValueError, match="line break"):
        bytes(sdp)


def test_serializing_refuses_bad_attribute_names() -> None:
    sdp = SessionDescription.parse(SIPP_UAC)
    sdp.media[0].attributes.append(("bad name", None))
    with pytest.raises(ValueError, match="attribute name"):
        bytes(sdp)
    with pytest.raises(ValueError, match="attribute name"):
        sdp.media[0].add_attribute("a:b", "c")


def test_copy_is_deep() -> None:
    sdp = SessionDescription.parse(WEBRTC)
    duplicate = sdp.copy()
    duplicate.media[0].attributes.clear()
    duplicate.origin.session_version += 1
    duplicate.media[1].connection = None
    assert bytes(sdp) == WEBRTC


def test_media_description_bytes() -> None:
    media = MediaDescription("audio", 4000, None, "RTP/AVP", ["0"])
    media.add_attribute("rtpmap", "0 PCMU/8000")
    media.add_attribute("rtcp-mux")
    assert bytes(media) == crlf("m=audio 4000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000", "a=rtcp-mux")


# -------------------------------------------------------- media attributes


def audio_with(*attributes: str) -> MediaDescription:
    return SessionDescription.parse(
        with_lines(SIMPLE, "m=audio 4000 RTP/AVP 0 101", *attributes)
    ).media[0]


@pytest.mark.parametrize("direction", ["sendrecv", "sendonly", "recvonly", "inactive"])
def test_direction_attribute(direction: str) -> None:
    assert audio_with("a=rtpmap:0 PCMU/8000", f"a={direction}").direction == direction


def test_direction_defaults_to_sendrecv() -> None:
    assert audio_with("a=rtpmap:0 PCMU/8000").direction == "sendrecv"


def test_set_direction_replaces_in_place() -> None:
    media = audio_with("a=rtpmap:0 PCMU/8000", "a=sendrecv", "a=ptime:20")
    media.set_direction("sendonly")
    assert media.attributes == [("rtpmap", "0 PCMU/8000"), ("sendonly", None), ("ptime", "20")]
    assert media.direction == "sendonly"


def test_set_direction_adds_when_absent_and_drops_duplicates() -> None:
    media = audio_with("a=ptime:20")
    media.set_direction("inactive")
    assert media.attributes == [("ptime", "20"), ("inactive", None)]
    media.attributes.append(("recvonly", None))
    media.set_direction("sendrecv")
    assert media.attributes == [("ptime", "20"), ("sendrecv", None)]


def test_set_direction_rejects_unknown_values() -> None:
    with pytest.raises(ValueError):
        audio_with().set_direction("hold")


def test_rtcp_with_and_without_address() -> None:
    assert audio_with("a=rtcp:4001").rtcp == (4001, None)
    assert audio_with("a=rtcp:5001 IN IP6 2001:db8::5").rtcp == (5001, "2001:db8::5")


def test_set_rtcp_replaces_adds_and_removes() -> None:
    media = audio_with("a=rtcp:4001", "a=ptime:20")
    media.set_rtcp(6001, "192.0.2.9")
    assert media.attributes == [("rtcp", "6001 IN IP4 192.0.2.9"), ("ptime", "20")]
    media.set_rtcp(None, None)
    assert media.rtcp is None
    assert media.attributes == [("ptime", "20")]
    media.set_rtcp(7001, None)
    assert media.attributes[-1] == ("rtcp", "7001")
    media.set_rtcp(7003, "2001:db8::1")
    assert media.rtcp == (7003, "2001:db8::1")
    assert media.get_attribute("rtcp") == "7003 IN IP6 2001:db8::1"


def test_rtcp_mux_flag() -> None:
    assert audio_with("a=rtcp-mux").rtcp_mux
    assert not audio_with("a=rtcp-rsize").rtcp_mux


def test_attribute_helpers_ignore_case_and_keep_names() -> None:
    media = audio_with("a=X-Custom:one", "a=x-custom:two", "a=flag")
    assert media.get_attributes("x-custom") == ["one", "two"]
    assert media.get_attribute("X-CUSTOM") == "one"
    assert media.get_attribute("flag") == ""
    assert media.get_attribute("absent") is None
    media.remove_attributes("X-CUSTOM", "absent")
    assert media.attributes == [("flag", None)]
    media.add_attribute("Y-New", "v")
    assert bytes(media).endswith(b"a=flag\r\na=Y-New:v\r\n")


def test_empty_attribute_value_differs_from_flag() -> None:
    media = audio_with("a=empty:", "a=flag")
    assert media.attributes == [("empty", ""), ("flag", None)]
    assert b"a=empty:\r\na=flag\r\n" in bytes(media)


def test_ptime_tolerates_decimal_and_ignores_garbage() -> None:
    assert audio_with("a=ptime:30.0").ptime == 30
    assert audio_with("a=ptime:soon").ptime is None
    assert audio_with().ptime is None


def test_fmtp_without_parameters() -> None:
    assert audio_with("a=fmtp:101").fmtp == {"101": ""}


def test_rejected_stream() -> None:
    sdp = SessionDescription.parse(with_lines(SIMPLE, "m=video 0 RTP/AVP 96"))
    assert sdp.media[0].is_rejected


# ------------------------------------------------------- connection, hold


def test_media_connection_wins_over_session() -> None:
    sdp = SessionDescription.parse(
        with_lines(
            SIMPLE, "m=audio 4000 RTP/AVP 0", "c=IN IP4 192.0.2.50", "m=audio 5000 RTP/AVP 0"
        )
    )
    assert sdp.connection_for(0) == Connection("192.0.2.50")
    assert sdp.connection_for(1) == Connection("192.0.2.1")


@pytest.mark.parametrize(
    ("session_lines", "media_lines", "held"),
    [
        ([], ["a=sendrecv"], False),
        ([], ["a=recvonly"], False),
        ([], ["a=sendonly"], True),
        ([], ["a=inactive"], True),
        (["a=sendonly"], [], True),
        (["a=sendonly"], ["a=sendrecv"], False),
        ([], ["c=IN IP4 0.0.0.0"], True),
        ([], ["c=IN IP6 ::"], True),
        ([], ["c=IN IP6 ::1"], False),
    ],
)
def test_is_hold(session_lines: list[str], media_lines: list[str], held: bool) -> None:
    data = with_lines(SIMPLE, *session_lines, "m=audio 4000 RTP/AVP 0", *media_lines)
    assert SessionDescription.parse(data).is_hold(0) is held


def test_is_hold_with_session_level_zero_address() -> None:
    """RFC 2543 hold: c=0.0.0.0 at session level holds every stream without its own c=."""
    data = SIMPLE.replace(b"c=IN IP4 192.0.2.1", b"c=IN IP4 0.0.0.0")
    sdp = SessionDescription.parse(
        with_lines(data, "m=audio 4000 RTP/AVP 0", "m=audio 5000 RTP/AVP 0", "c=IN IP4 192.0.2.2")
    )
    assert sdp.is_hold(0)
    assert not sdp.is_hold(1)


def test_trickle_ice_placeholder_is_not_hold() -> None:
    data = crlf(
        "v=0",
        "o=- 1 1 IN IP4 127.0.0.1",
        "s=-",
        "t=0 0",
        "m=audio 9 UDP/TLS/RTP/SAVPF 111",
        "c=IN IP4 0.0.0.0",
        "a=ice-ufrag:abcd",
        "a=ice-pwd:0123456789abcdefghijkl",
        "a=rtpmap:111 opus/48000/2",
    )
    assert not SessionDescription.parse(data).is_hold(0)


# ------------------------------------------------------------------ errors


ERROR_CASES: list[tuple[str, bytes, int | None, str]] = [
    ("empty", b"", None, "empty"),
    ("only blank lines", b"\r\n\r\n", None, "empty"),
    ("no v= first", b"o=- 1 1 IN IP4 h\r\nv=0\r\n", 1, "starts with v="),
    ("blank then no v=", b"\r\ns=-\r\n", 2, "starts with v="),
    ("version", b"v=1\r\n", 1, "unsupported SDP version"),
    ("not type=value", SIMPLE + b"hello world\r\n", 6, "<type>=<value>"),
    ("space before =", SIMPLE + b"a =sendrecv\r\n", 6, "<type>=<value>"),
    ("digit type", SIMPLE + b"1=x\r\n", 6, "<type>=<value>"),
    ("missing o=", b"v=0\r\ns=-\r\nt=0 0\r\n", 2, "missing o="),
    ("missing s= at end", b"v=0\r\no=- 1 1 IN IP4 h\r\n", None, "missing s="),
    ("missing s= before m=", b"v=0\r\no=- 1 1 IN IP4 h\r\nm=audio 1 RTP/AVP 0\r\n", 3, "s="),
    ("o= fields", b"v=0\r\no=- 1 1 IN IP4\r\ns=-\r\n", 2, "6 fields"),
    ("o= version", b"v=0\r\no=- 1 one IN IP4 h\r\ns=-\r\n", 2, "session version"),
    ("o= unicode digit", "v=0\r\no=- 1 \u00b2 IN IP4 h\r\n".encode(), 2, "session version"),
    ("c= fields", SIMPLE.replace(b"c=IN IP4 192.0.2.1", b"c=IN IP4"), 4, "3 fields"),
    ("c= ttl", SIMPLE.replace(b"192.0.2.1\r\nt", b"224.0.0.1/x\r\nt"), 4, "TTL"),
    ("c= ip6 ttl", SIMPLE.replace(b"IP4 192.0.2.1\r\nt", b"IP6 ff15::1/1/2\r\nt"), 4, "no TTL"),
    ("c= after t=", SIMPLE + b"c=IN IP4 192.0.2.2\r\n", 6, "out of order"),
    ("two s=", SIMPLE.replace(b"s=-\r\n", b"s=-\r\ns=again\r\n"), 4, "more than one s="),
    ("v= again", SIMPLE + b"v=0\r\n", 6, "out of order"),
    ("b= form", SIMPLE.replace(b"t=0 0", b"b=AS\r\nt=0 0"), 5, "malformed b="),
    ("t= form", SIMPLE.replace(b"t=0 0", b"t=now 0"), 5, "t= time"),
    ("t= fields", SIMPLE.replace(b"t=0 0", b"t=0"), 5, "start and a stop"),
    ("r= first", SIMPLE.replace(b"t=0 0", b"r=7d 1h 0"), 5, "must follow a t="),
    ("r= fields", SIMPLE + b"r=7d\r\n", 6, "r= needs"),
    ("m= port", SIMPLE + b"m=audio abc RTP/AVP 0\r\n", 6, "m= port"),
    ("m= port range", SIMPLE + b"m=audio 70000 RTP/AVP 0\r\n", 6, "out of range"),
    ("m= fields", SIMPLE + b"m=audio 4000\r\n", 6, "m= needs"),
    ("m= port count", SIMPLE + b"m=audio 4000/0 RTP/AVP 0\r\n", 6, "at least 1"),
    ("s= in media", SIMPLE + b"m=audio 4000 RTP/AVP 0\r\ns=-\r\n", 7, "not allowed in a media"),
    ("media order", SIMPLE + b"m=audio 1 RTP/AVP 0\r\na=x\r\nc=IN IP4 h\r\n", 8, "out of order"),
    ("two media c=", SIMPLE + b"m=audio 1 RTP/AVP 0\r\nc=IN IP4 h\r\nc=IN IP4 h\r\n", 8, "c="),
    ("rtpmap", SIMPLE + b"m=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n", 7, "a=rtpmap"),
    ("rtpmap clock", SIMPLE + b"m=audio 1 RTP/AVP 0\r\na=rtpmap:0 PCMU/fast\r\n", 7, "clock"),
    ("rtcp port", SIMPLE + b"m=audio 4000 RTP/AVP 0\r\na=rtcp:abc\r\n", 7, "a=rtcp"),
    ("rtcp form", SIMPLE + b"m=audio 4000 RTP/AVP 0\r\na=rtcp:1 IN IP4\r\n", 7, "a=rtcp"),
    ("attribute name", SIMPLE + b"a=:value\r\n", 6, "attribute name"),
    ("bare CR", b"v=0\r\no=- 1 1 IN IP4 h\rs=-\r\n", 2, "bare CR"),
    ("NUL", SIMPLE + b"a=x\x00y\r\n", 6, "NUL"),
    (
        "media without c=",
        b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
        5,
        "no c= line",
    ),
]


@pytest.mark.parametrize(
    ("data", "line", "fragment"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_parse_errors_name_the_line(data: bytes, line: int | None, fragment: str) -> None:
    with pytest.raises(SdpParseError) as caught:
        SessionDescription.parse(data)
    assert caught.value.line == line
    assert fragment in caught.value.reason
    assert "\n" not in caught.value.reason and "\r" not in caught.value.reason
    if line is not None:
        assert str(caught.value).startswith(f"line {line}: ")


def test_line_numbers_count_lf_only_and_blank_lines() -> None:
    data = b"v=0\n\no=- 1 1 IN IP4 h\ns=-\n\nt=0 0\nbogus\n"
    with pytest.raises(SdpParseError) as caught:
        SessionDescription.parse(data)
    assert caught.value.line == 7


def test_rejected_stream_needs_no_connection() -> None:
    data = b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\n"
    assert SessionDescription.parse(data).media[0].is_rejected


def test_parse_error_is_a_value_error() -> None:
    error = SdpParseError("bad", 3)
    assert isinstance(error, ValueError)
    assert (error.reason, error.line) == ("bad", 3)
    assert SdpParseError("bad").line is None


def test_parse_rejects_other_types() -> None:
    with pytest.raises(SdpParseError):
        SessionDescription.parse(42)  # type: ignore[arg-type]


# ----------------------------------------------------------------- rewrite


def test_rewrite_sets_origin_connection_ports_and_rtcp() -> None:
    offer = SessionDescription.parse(FREESWITCH)
    rewritten = rewrite_for_relay(
        offer, address=RELAY, ports=[(30000, 30001)], origin=relay_origin()
    )
    assert rewritten.origin == relay_origin()
    assert rewritten.connection == Connection(RELAY, "IP4")
    [audio] = rewritten.media
    assert audio.port == 30000
    assert audio.connection is None
    assert audio.rtcp == (30001, None)
    assert media_endpoints(rewritten) == [(RELAY, 30000, 30001, False)]
    assert bytes(rewritten) == crlf(
        "v=0",
        f"o=callgate 777 5 IN IP4 {RELAY}",
        "s=FreeSWITCH",
        f"c=IN IP4 {RELAY}",
        "t=0 0",
        "m=audio 30000 RTP/AVP 9 0 8 101 13",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=rtpmap:13 CN/8000",
        "a=ptime:20",
        "a=sendrecv",
        "a=rtcp:30001",
    )


def test_rewrite_leaves_input_untouched() -> None:
    offer = SessionDescription.parse(WEBRTC)
    rewrite_for_relay(
        offer, address=RELAY, ports=[(30000, 30001), (30002, 30003)], origin=relay_origin()
    )
    assert bytes(offer) == WEBRTC


def test_rewrite_copies_the_origin() -> None:
    origin = relay_origin()
    rewritten = rewrite_for_relay(
        SessionDescription.parse(SIPP_UAC), address=RELAY, ports=[(30000, 30001)], origin=origin
    )
    origin.session_version += 1
    assert rewritten.origin.session_version == 5


def test_rewrite_removes_media_connection_lines() -> None:
    rewritten = rewrite_for_relay(
        SessionDescription.parse(CISCO),
        address=RELAY,
        ports=[(30000, 30001)],
        origin=relay_origin(),
    )
    assert rewritten.media[0].connection is None
    assert b"10.1.1.1" not in bytes(rewritten)
    assert rewritten.media[0].bandwidths == ["TIAS:64000"]


def test_rewrite_without_relay_rtcp_port_removes_a_rtcp() -> None:
    rewritten = rewrite_for_relay(
        SessionDescription.parse(FREESWITCH),
        address=RELAY,
        ports=[(30000, None)],
        origin=relay_origin(),
    )
    assert rewritten.media[0].rtcp is None
    assert media_endpoints(rewritten) == [(RELAY, 30000, 30001, False)]


def test_rewrite_with_rtcp_mux_drops_a_rtcp() -> None:
    offer = SessionDescription.parse(WEBRTC)
    rewritten = rewrite_for_relay(
        offer, address=RELAY, ports=[(30000, 30001), (30002, 30003)], origin=relay_origin()
    )
    assert [media.rtcp for media in rewritten.media] == [None, None]
    assert media_endpoints(rewritten) == [(RELAY, 30000, None, True), (RELAY, 30002, None, True)]


def test_rewrite_strips_ice_and_keeps_the_rest() -> None:
    offer = SessionDescription.parse(WEBRTC)
    rewritten = rewrite_for_relay(
        offer, address=RELAY, ports=[(30000, 30001), (30002, 30003)], origin=relay_origin()
    )
    for before, after in zip(offer.media, rewritten.media, strict=True):
        names = {name for name, _ in after.attributes}
        assert not names & ICE_ATTRIBUTES
        kept = [item for item in before.attributes if item[0] not in ICE_ATTRIBUTES | {"rtcp"}]
        assert after.attributes == kept
    assert rewritten.attributes == offer.attributes
    text = bytes(rewritten)
    assert b"candidate" not in text and b"ice-" not in text


def test_rewrite_strips_session_level_ice() -> None:
    offer = SessionDescription.parse(
        with_lines(
            SIMPLE,
            "a=ice-lite",
            "a=ice-ufrag:F7gI",
            "a=ice-pwd:x9cml/YzichV2+XlhiMu8g",
            "a=tool:lite-server",
            "m=audio 4000 RTP/AVP 0",
            "a=candidate:1 1 UDP 2130706431 192.0.2.1 4000 typ host",
            "a=remote-candidates:1 192.0.2.9 5000",
        )
    )
    rewritten = rewrite_for_relay(
        offer, address=RELAY, ports=[(30000, None)], origin=relay_origin()
    )
    assert rewritten.attributes == [("tool", "lite-server")]
    assert rewritten.media[0].attributes == []


def test_rewrite_keeps_crypto_and_codecs() -> None:
    offer = SessionDescription.parse(POLYCOM_SRTP)
    rewritten = rewrite_for_relay(
        offer, address=RELAY, ports=[(30000, 30001)], origin=relay_origin()
    )
    audio = rewritten.media[0]
    assert audio.get_attributes("crypto") == offer.media[0].get_attributes("crypto")
    assert audio.rtpmap == offer.media[0].rtpmap
    assert audio.fmtp == offer.media[0].fmtp
    assert audio.proto == "RTP/SAVP"
    assert audio.formats == offer.media[0].formats
    assert rewritten.direction == "sendrecv"


def test_rewrite_keeps_rejected_streams_rejected() -> None:
    offer = SessionDescription.parse(
        with_lines(SIMPLE, "m=audio 4000 RTP/AVP 0", "m=video 0 RTP/AVP 96", "a=rtcp:9")
    )
    rewritten = rewrite_for_relay(
        offer, address=RELAY, ports=[(30000, 30001), (30002, 30003)], origin=relay_origin()
    )
    assert [media.port for media in rewritten.media] == [30000, 0]
    assert rewritten.media[1].rtcp is None
    assert media_endpoints(rewritten)[1] == (RELAY, 0, None, False)


def test_rewrite_rejects_streams_the_relay_gives_port_zero() -> None:
    offer = SessionDescription.parse(WEBRTC)
    rewritten = rewrite_for_relay(
        offer, address=RELAY, ports=[(30000, 30001), (0, None)], origin=relay_origin()
    )
    assert [media.port for media in rewritten.media] == [30000, 0]
    assert rewritten.media[1].is_rejected


def test_rewrite_keeps_zero_address_hold_media_level() -> None:
    held = SIMPLE.replace(b"c=IN IP4 192.0.2.1", b"c=IN IP4 0.0.0.0")
    offer = SessionDescription.parse(
        with_lines(held, "m=audio 4000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000")
    )
    rewritten = rewrite_for_relay(
        offer, address=RELAY, ports=[(30000, 30001)], origin=relay_origin()
    )
    assert rewritten.connection == Connection(RELAY)
    assert rewritten.media[0].connection == Connection("0.0.0.0")
    assert rewritten.is_hold(0)
    assert SessionDescription.parse(bytes(rewritten)).is_hold(0)


def test_rewrite_keeps_ipv6_unspecified_hold() -> None:
    offer = SessionDescription.parse(with_lines(IPV6, "m=audio 5000 RTP/AVP 0", "c=IN IP6 ::"))
    rewritten = rewrite_for_relay(
        offer, address=RELAY, ports=[(30000, 30001), (30002, 30003)], origin=relay_origin()
    )
    assert rewritten.media[0].connection is None
    assert rewritten.media[1].connection == Connection("::", "IP6")
    assert [rewritten.is_hold(index) for index in range(2)] == [False, True]


def test_rewrite_hold_applies_per_stream() -> None:
    offer = SessionDescription.parse(
        with_lines(
            SIMPLE,
            "m=audio 4000 RTP/AVP 0",
            "c=IN IP4 0.0.0.0",
            "m=audio 5000 RTP/AVP 0",
        )
    )
    rewritten = rewrite_for_relay(
        offer, address=RELAY, ports=[(30000, 30001), (30002, 30003)], origin=relay_origin()
    )
    assert [rewritten.is_hold(index) for index in range(2)] == [True, False]
    assert rewritten.media[1].connection is None


@pytest.mark.parametrize("direction", ["sendonly", "inactive", "recvonly"])
def test_rewrite_preserves_direction(direction: str) -> None:
    offer = SessionDescription.parse(
        with_lines(SIMPLE, "m=audio 4000 RTP/AVP 0", "a=rtpmap:0 PCMU/8000", f"a={direction}")
    )
    rewritten = rewrite_for_relay(
        offer, address=RELAY, ports=[(30000, 30001)], origin=relay_origin()
    )
    assert rewritten.media[0].direction == direction
    assert rewritten.is_hold(0) is offer.is_hold(0)
    assert rewritten.media[0].connection is None


def test_rewrite_to_ipv6_relay_address() -> None:
    rewritten = rewrite_for_relay(
        SessionDescription.parse(IPV6),
        address="2001:db8::10",
        ports=[(30000, 30001)],
        origin=new_origin("2001:db8::10"),
    )
    assert rewritten.connection == Connection("2001:db8::10", "IP6")
    assert b"c=IN IP6 2001:db8::10\r\n" in bytes(rewritten)
    assert rewritten.origin.addrtype == "IP6"


def test_rewrite_ignores_extra_ports_and_refuses_too_few() -> None:
    offer = SessionDescription.parse(WEBRTC)
    rewritten = rewrite_for_relay(
        offer,
        address=RELAY,
        ports=[(30000, None), (30002, None), (30004, None)],
        origin=relay_origin(),
    )
    assert [media.port for media in rewritten.media] == [30000, 30002]
    with pytest.raises(ValueError, match="relay ports"):
        rewrite_for_relay(offer, address=RELAY, ports=[(30000, None)], origin=relay_origin())


def test_rewrite_drops_port_count() -> None:
    offer = SessionDescription.parse(with_lines(SIMPLE, "m=video 4000/2 RTP/AVP 96"))
    rewritten = rewrite_for_relay(
        offer, address=RELAY, ports=[(30000, 30001)], origin=relay_origin()
    )
    assert (rewritten.media[0].port, rewritten.media[0].port_count) == (30000, None)


@pytest.mark.parametrize("name", sorted(REAL_WORLD))
def test_rewritten_real_world_points_at_the_relay(name: str) -> None:
    offer = SessionDescription.parse(REAL_WORLD[name])
    ports = [(30000 + 2 * index, 30001 + 2 * index) for index in range(len(offer.media))]
    rewritten = rewrite_for_relay(offer, address=RELAY, ports=ports, origin=relay_origin())
    reparsed = SessionDescription.parse(bytes(rewritten))
    assert reparsed == rewritten
    for index, (address, rtp, rtcp, mux) in enumerate(media_endpoints(reparsed)):
        assert (address, rtp) == (RELAY, ports[index][0])
        assert rtcp == (None if mux else ports[index][1])
    assert len(reparsed.media) == len(offer.media)
    assert all(
        after.rtpmap == before.rtpmap and after.direction == before.direction
        for before, after in zip(offer.media, reparsed.media, strict=True)
    )


# ---------------------------------------------------------- media endpoints


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("asterisk", [("192.0.2.10", 14270, 14271, False)]),
        ("freeswitch", [("198.51.100.20", 21844, 21845, False)]),
        ("cisco", [("10.1.1.1", 18270, 18271, False)]),
        ("sipp", [("127.0.0.1", 6000, 6001, False)]),
        ("webrtc", [("203.0.113.7", 54400, None, True), ("203.0.113.7", 54400, None, True)]),
        ("ipv6", [("::1", 40000, 40001, False)]),
    ],
)
def test_media_endpoints_of_real_offers(
    name: str, expected: list[tuple[str, int, int | None, bool]]
) -> None:
    assert media_endpoints(SessionDescription.parse(REAL_WORLD[name])) == expected


def test_media_endpoints_mixed_sections() -> None:
    sdp = SessionDescription.parse(
        with_lines(
            SIMPLE,
            "m=audio 4000 RTP/AVP 0",
            "a=rtcp:4999",
            "m=audio 5000 RTP/AVP 0",
            "c=IN IP4 192.0.2.77",
            "m=video 0 RTP/AVP 96",
            "m=audio 65535 RTP/AVP 0",
        )
    )
    assert media_endpoints(sdp) == [
        ("192.0.2.1", 4000, 4999, False),
        ("192.0.2.77", 5000, 5001, False),
        ("192.0.2.1", 0, None, False),
        ("192.0.2.1", 65535, None, False),
    ]


def test_media_endpoints_of_held_stream() -> None:
    sdp = SessionDescription.parse(with_lines(SIMPLE, "m=audio 4000 RTP/AVP 0", "c=IN IP4 0.0.0.0"))
    assert media_endpoints(sdp) == [("0.0.0.0", 4000, 4001, False)]


# --------------------------------------------------------------- new_origin


def test_new_origin() -> None:
    first = new_origin("192.0.2.5")
    second = new_origin("2001:db8::5", username="gw")
    assert (first.username, first.nettype, first.addrtype, first.address) == (
        "callgate",
        "IN",
        "IP4",
        "192.0.2.5",
    )
    assert (second.username, second.addrtype) == ("gw", "IP6")
    assert first.session_id.isdigit() and 0 < int(first.session_id) < 2**31
    assert first.session_version >= 1
    assert Origin.parse(str(first)) == first
    ids = {new_origin("192.0.2.5").session_id for _ in range(50)}
    assert len(ids) > 45


# --------------------------------------------------------------- properties

TOKEN = st.text(string.ascii_letters + string.digits + "-._+", min_size=1, max_size=10)
FREE_TEXT = st.text(
    st.characters(blacklist_characters="\r\n\x00", blacklist_categories=("Cs",)), max_size=16
).map(lambda text: text.rstrip(" \t"))
UNKNOWN_LETTERS = sorted(set(string.ascii_letters) - set("vosiuepcbtrzkam"))
ADDRESS = st.one_of(st.ip_addresses(v=4).map(str), st.sampled_from(["host.example.com", "0.0.0.0"]))


@st.composite
def connections(draw: st.DrawFn) -> Connection:
    if draw(st.booleans()):
        address = str(draw(st.ip_addresses(v=6)))
        num = draw(st.none() | st.integers(1, 9))
        return Connection(address, "IP6", num=num)
    ttl = draw(st.none() | st.integers(0, 255))
    num = draw(st.none() | st.integers(1, 9)) if ttl is not None else None
    return Connection(draw(ADDRESS), "IP4", ttl=ttl, num=num)


ATTRIBUTES = st.lists(
    st.one_of(
        st.tuples(TOKEN.map(lambda name: "x-" + name), st.none() | FREE_TEXT),
        st.sampled_from(
            [
                ("rtpmap", "0 PCMU/8000"),
                ("rtpmap", "111 opus/48000/2"),
                ("fmtp", "101 0-16"),
                ("rtcp", "5001"),
                ("rtcp", "5001 IN IP4 192.0.2.1"),
                ("rtcp-mux", None),
                ("sendonly", None),
                ("inactive", None),
                ("ptime", "20"),
            ]
        ),
    ),
    max_size=5,
)
OTHER_LINES = st.lists(st.tuples(st.sampled_from(UNKNOWN_LETTERS), FREE_TEXT), max_size=2)
BANDWIDTHS = st.lists(
    st.builds(lambda kind, value: f"{kind}:{value}", TOKEN, st.integers(0, 10**6)), max_size=2
)


@st.composite
def media_descriptions(draw: st.DrawFn, need_connection: bool) -> MediaDescription:
    port = draw(st.integers(0, 65535))
    connection = draw(connections() if need_connection and port else st.none() | connections())
    return MediaDescription(
        kind=draw(st.sampled_from(["audio", "video", "text", "application"])),
        port=port,
        port_count=draw(st.none() | st.integers(1, 4)),
        proto=draw(st.sampled_from(["RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVPF", "udp"])),
        formats=draw(st.lists(TOKEN, max_size=4)),
        info=draw(st.none() | FREE_TEXT),
        connection=connection,
        bandwidths=draw(BANDWIDTHS),
        key=draw(st.none() | FREE_TEXT),
        attributes=draw(ATTRIBUTES),
        other_lines=draw(OTHER_LINES),
    )


@st.composite
def timings(draw: st.DrawFn) -> list[str]:
    lines: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        start, stop = draw(st.integers(0, 2**40)), draw(st.integers(0, 2**40))
        lines.append(f"t={start} {stop}")
        lines.extend(draw(st.lists(st.just("r=7d 1h 0 25h"), max_size=1)))
    return lines


@st.composite
def session_descriptions(draw: st.DrawFn) -> SessionDescription:
    connection = draw(st.none() | connections())
    origin = Origin(
        draw(TOKEN),
        str(draw(st.integers(0, 2**64))),
        draw(st.integers(0, 2**64)),
        "IN",
        draw(st.sampled_from(["IP4", "IP6"])),
        draw(TOKEN),
    )
    return SessionDescription(
        origin=origin,
        session_name=draw(FREE_TEXT),
        info=draw(st.none() | FREE_TEXT),
        uri=draw(st.none() | FREE_TEXT),
        emails=draw(st.lists(FREE_TEXT, max_size=2)),
        phones=draw(st.lists(FREE_TEXT, max_size=2)),
        connection=connection,
        bandwidths=draw(BANDWIDTHS),
        timing=draw(timings()),
        time_zones=draw(st.none() | FREE_TEXT),
        key=draw(st.none() | FREE_TEXT),
        attributes=draw(ATTRIBUTES),
        other_lines=draw(OTHER_LINES),
        media=draw(st.lists(media_descriptions(need_connection=connection is None), max_size=3)),
    )


@given(session_descriptions())
def test_serialized_descriptions_parse_back_equal(sdp: SessionDescription) -> None:
    data = bytes(sdp)
    assert data.endswith(b"\r\n")
    assert SessionDescription.parse(data) == sdp
    assert SessionDescription.parse(data.replace(b"\r\n", b"\n")) == sdp


@given(session_descriptions(), st.data())
def test_rewrite_of_generated_descriptions_reparses(
    sdp: SessionDescription, data: st.DataObject
) -> None:
    ports = data.draw(
        st.lists(
            st.tuples(st.integers(0, 65535), st.none() | st.integers(1, 65535)),
            min_size=len(sdp.media),
            max_size=len(sdp.media) + 1,
        )
    )
    before = bytes(sdp)
    rewritten = rewrite_for_relay(sdp, address=RELAY, ports=ports, origin=relay_origin())
    assert bytes(sdp) == before
    assert SessionDescription.parse(bytes(rewritten)) == rewritten
    for index, media in enumerate(rewritten.media):
        assert not any(name in ICE_ATTRIBUTES for name, _ in media.attributes)
        assert media.is_rejected is (sdp.media[index].is_rejected or ports[index][0] == 0)
        assert rewritten.is_hold(index) is sdp.is_hold(index)


def check_parse_is_total(data: bytes) -> None:
    """Parsing either fails with SdpParseError or yields a description that re-parses."""
    try:
        sdp = SessionDescription.parse(data)
    except SdpParseError as exc:
        assert exc.reason
        assert "\n" not in exc.reason and "\r" not in exc.reason
        return
    assert SessionDescription.parse(bytes(sdp)) == sdp
    media_endpoints(sdp)


@given(st.binary(max_size=400))
def test_random_bytes_only_raise_sdp_parse_error(data: bytes) -> None:
    check_parse_is_total(data)


LINE_PIECES = st.one_of(
    st.sampled_from(
        [
            "v=0",
            "o=- 1 1 IN IP4 192.0.2.1",
            "s=-",
            "c=IN IP4 192.0.2.1",
            "c=IN IP6 ::1/2",
            "t=0 0",
            "r=7d 1h 0",
            "b=AS:64",
            "m=audio 4000 RTP/AVP 0",
            "m=video 0 RTP/AVP 96",
            "a=rtpmap:0 PCMU/8000",
            "a=rtcp:4001",
            "a=rtcp-mux",
            "a=sendonly",
            "a=ptime:20",
            "i=info",
            "k=prompt",
            "z=0 0",
            "x=unknown",
            "",
        ]
    ),
    st.builds(lambda letter, text: f"{letter}={text}", st.sampled_from("vosicbtrmaxz"), FREE_TEXT),
)


SOUP_HEADS = [
    ["v=0"],
    ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-"],
    ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0"],
]


@given(
    st.sampled_from(SOUP_HEADS),
    st.lists(LINE_PIECES, max_size=14),
    st.sampled_from(["\r\n", "\n", " \r\n"]),
)
def test_line_soup_only_raises_sdp_parse_error(
    head: list[str], lines: list[str], ending: str
) -> None:
    check_parse_is_total(ending.join(head + lines).encode())
