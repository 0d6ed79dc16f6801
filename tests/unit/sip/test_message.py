"""SIP messages: headers, Via/CSeq, parsing, serialization, responses and stream framing."""

from __future__ import annotations

import pytest

from gateway.sip.errors import SipParseError
from gateway.sip.framing import StreamFramer
from gateway.sip.headers import MAGIC_COOKIE, CSeq, Via, parse_via_list
from gateway.sip.message import (
    REASON_PHRASES,
    Headers,
    SipRequest,
    SipResponse,
    canonical_name,
    make_response,
    parse_message,
)
from gateway.sip.uri import NameAddr, SipUri

SDP = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.101\r\ns=-\r\n"
    b"c=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def invite(*extra: str, body: bytes = SDP, length: int | None = None) -> bytes:
    """A well-formed INVITE (RFC 3665 3.1 shape) with optional extra header lines."""
    lines = [
        "INVITE sip:bob@biloxi.example.com SIP/2.0",
        "Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds;rport",
        "Max-Forwards: 70",
        "To: Bob <sip:bob@biloxi.example.com>",
        'From: "Alice" <sip:alice@atlanta.example.com>;tag=1928301774',
        "Call-ID: a84b4c76e66710@pc33.atlanta.example.com",
        "CSeq: 314159 INVITE",
        "Contact: <sip:alice@pc33.atlanta.example.com>",
        "Content-Type: application/sdp",
        *extra,
        f"Content-Length: {len(body) if length is None else length}",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def replace_line(message: bytes, prefix: bytes, new_line: bytes | None) -> bytes:
    """``message`` with the header line starting with ``prefix`` replaced (or dropped)."""
    head, blank, body = message.partition(b"\r\n\r\n")
    out = []
    for line in head.split(b"\r\n"):
        if line.startswith(prefix):
            if new_line is not None:
                out.append(new_line)
        else:
            out.append(line)
    return b"\r\n".join(out) + blank + body


# -- Headers ---------------------------------------------------------------------


def test_headers_are_case_insensitive_and_canonical() -> None:
    headers = Headers([("call-id", "abc"), ("v", "SIP/2.0/UDP h"), ("X-Custom", "1")])
    assert headers.get("CALL-ID") == "abc"
    assert headers.get("i") == "abc"
    assert headers.get("Via") == "SIP/2.0/UDP h"
    assert headers.get("x-custom") == "1"
    assert headers.items() == [("Call-ID", "abc"), ("Via", "SIP/2.0/UDP h"), ("X-Custom", "1")]
    assert "CALL-id" in headers
    assert "Route" not in headers
    assert headers.get("Route") is None


@pytest.mark.parametrize(
    ("compact", "full"),
    [
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("e", "Content-Encoding"),
        ("l", "Content-Length"),
        ("c", "Content-Type"),
        ("f", "From"),
        ("s", "Subject"),
        ("k", "Supported"),
        ("t", "To"),
        ("v", "Via"),
        ("o", "Event"),
        ("u", "Allow-Events"),
        ("r", "Refer-To"),
        ("b", "Referred-By"),
        ("x", "Session-Expires"),
        ("a", "Accept-Contact"),
        ("j", "Reject-Contact"),
        ("d", "Request-Disposition"),
        ("y", "Identity"),
        ("n", "Identity-Info"),
    ],
)
def test_compact_forms_expand(compact: str, full: str) -> None:
    assert canonical_name(compact) == full
    assert canonical_name(compact.upper()) == full
    headers = Headers([(compact, "v")])
    assert headers.items() == [(full, "v")]
    assert headers.get(full.upper()) == "v"


def test_get_all_splits_list_headers_only() -> None:
    headers = Headers(
        [
            ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2"),
            ("Via", "SIP/2.0/TCP c"),
            ("Allow", "INVITE, ACK"),
            ("Allow", "BYE"),
            ("WWW-Authenticate", 'Digest realm="a, b", nonce="x"'),
            ("WWW-Authenticate", 'Digest realm="c", nonce="y"'),
            ("Date", "Sat, 13 Nov 2010 23:29:00 GMT"),
            ("Contact", '"A, B" <sip:a@x>, <sip:b@y>'),
        ]
    )
    assert headers.get_all("Via") == [
        "SIP/2.0/UDP a;branch=z9hG4bK1",
        "SIP/2.0/UDP b;branch=z9hG4bK2",
        "SIP/2.0/TCP c",
    ]
    assert headers.get_all("allow") == ["INVITE", "ACK", "BYE"]
    assert headers.get_all("WWW-Authenticate") == [
        'Digest realm="a, b", nonce="x"',
        'Digest realm="c", nonce="y"',
    ]
    assert headers.get_all("Date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]
    assert headers.get_all("m") == ['"A, B" <sip:a@x>', "<sip:b@y>"]
    assert headers.raw_values("Via")[0].count(",") == 1
    assert headers.get_all("Route") == []


def test_set_replaces_all_at_the_first_position() -> None:
    headers = Headers([("X-A", "1"), ("X-Y", "old1"), ("X-B", "2"), ("x-y", "old2"), ("X-C", "3")])
    headers.set("X-Y", "new")
    assert headers.items() == [("X-A", "1"), ("X-Y", "new"), ("X-B", "2"), ("X-C", "3")]
    headers.set("X-D", "4")
    assert headers.items()[-1] == ("X-D", "4")


def test_add_prepend_remove_count() -> None:
    headers = Headers([("Max-Forwards", "70"), ("Via", "SIP/2.0/UDP b")])
    headers.prepend("Via", "SIP/2.0/UDP a")
    headers.add("Via", "SIP/2.0/UDP c")
    headers.prepend("Record-Route", "<sip:p;lr>")
    assert headers.items() == [
        ("Record-Route", "<sip:p;lr>"),
        ("Max-Forwards", "70"),
        ("Via", "SIP/2.0/UDP a"),
        ("Via", "SIP/2.0/UDP b"),
        ("Via", "SIP/2.0/UDP c"),
    ]
    assert headers.count("v") == 3
    headers.remove("VIA")
    assert headers.items() == [("Record-Route", "<sip:p;lr>"), ("Max-Forwards", "70")]
    assert list(headers) == headers.items()
    assert len(headers) == 2


def test_copy_is_independent() -> None:
    headers = Headers([("X-A", "1")])
    copied = headers.copy()
    copied.add("X-B", "2")
    copied.set("X-A", "9")
    assert headers.items() == [("X-A", "1")]
    assert copied != headers


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nb", "a\rb"])
def test_header_values_with_line_breaks_are_refused(value: str) -> None:
    headers = Headers()
    with pytest.raises(ValueError):
        headers.add("Subject", value)
    with pytest.raises(ValueError):
        headers.set("Subject", value)
    with pytest.raises(ValueError):
        headers.prepend("Subject", value)
    assert len(headers) == 0


@pytest.mark.parametrize("name", ["", "Bad Name", "Colon:", "Nl\n"])
def test_invalid_header_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        Headers().add(name, "x")


# -- Via / CSeq -------------------------------------------------------------------


def test_via_parse_and_properties() -> None:
    via = Via.parse("SIP/2.0/udp 192.0.2.1:5060;branch=z9hG4bKnashds8;received=192.0.2.200;rport")
    assert via.transport == "UDP"
    assert (via.host, via.port) == ("192.0.2.1", 5060)
    assert via.branch == "z9hG4bKnashds8"
    assert via.branch.startswith(MAGIC_COOKIE)
    assert via.received == "192.0.2.200"
    assert via.has_rport is True
    assert via.rport is None
    assert str(via) == (
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnashds8;received=192.0.2.200;rport"
    )


def test_via_rport_with_value_and_without() -> None:
    assert Via.parse("SIP/2.0/UDP h;rport=5070").rport == 5070
    plain = Via.parse("SIP/2.0/UDP h;branch=z9hG4bKx")
    assert (plain.has_rport, plain.rport) == (False, None)


def test_via_ipv6_sent_by_and_received() -> None:
    via = Via.parse("SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bK1;received=2001:db8::1")
    assert (via.host, via.port) == ("2001:db8::9", 5061)
    assert via.received == "2001:db8::1"
    assert str(via) == "SIP/2.0/TCP [2001:db8::9]:5061;branch=z9hG4bK1;received=2001:db8::1"
    assert str(Via("UDP", "::1", 5060, {"branch": "z9hG4bKa"})) == (
        "SIP/2.0/UDP [::1]:5060;branch=z9hG4bKa"
    )


def test_via_tolerates_lws_around_separators() -> None:
    via = Via.parse("SIP  /   2.0 /UDP  192.0.2.2 : 5070  ; branch  =   z9hG4bK9ikj8 ;maddr=x")
    assert (via.transport, via.host, via.port) == ("UDP", "192.0.2.2", 5070)
    assert via.params == {"branch": "z9hG4bK9ikj8", "maddr": "x"}
    assert via.maddr == "x"


def test_parse_via_list_splits_commas() -> None:
    vias = parse_via_list("SIP/2.0/UDP a.example.com;branch=z9hG4bK1 , SIP/2.0/TCP b:5080")
    assert [(v.transport, v.host, v.port) for v in vias] == [
        ("UDP", "a.example.com", None),
        ("TCP", "b", 5080),
    ]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP ",
        "SIP/2.0 UDP host",
        "SIP/2.0/UDP host;;",
        "SIP/2.0/UDP 192.0.2.15;;,;,,",
        "SIP/2.0/UDP host:port",
        "SIP/2.0/UDP host;rport=abc",
        "SIP/2.0/UDP host;rport=99999",
        "SIP/2.0/UDP host;branch=",
        "SIP/2.0/UDP [::1",
        "HTTP /1.1/ TCP host extra",
    ],
)
def test_malformed_via_raises(value: str) -> None:
    with pytest.raises(SipParseError):
        parse_via_list(value)


def test_cseq_parse_and_limits() -> None:
    assert CSeq.parse("0009\t INVITE") == CSeq(9, "INVITE")
    assert str(CSeq(2**31 - 1, "BYE")) == "2147483647 BYE"
    for bad in (
        "",
        "1",
        "INVITE 1",
        "1 INVITE extra",
        "-1 INVITE",
        "2147483648 INVITE",
        "1 IN(VITE",
    ):
        with pytest.raises(SipParseError) as raised:
            CSeq.parse(bad)
        assert raised.value.reason == "Bad CSeq header"
    with pytest.raises(ValueError):
        CSeq(2**31, "INVITE")


# -- parse_message -----------------------------------------------------------------


def test_parses_a_typical_invite() -> None:
    request = parse_message(invite())
    assert isinstance(request, SipRequest)
    assert request.method == "INVITE"
    assert str(request.uri) == "sip:bob@biloxi.example.com"
    assert request.version == "SIP/2.0"
    assert request.call_id == "a84b4c76e66710@pc33.atlanta.example.com"
    assert request.cseq == CSeq(314159, "INVITE")
    assert request.top_via.branch == "z9hG4bK776asdhds"
    assert request.from_.tag == "1928301774"
    assert request.from_.display_name == "Alice"
    assert request.to.tag is None
    assert request.to.display_name == "Bob"
    assert request.max_forwards == 70
    assert request.content_type == "application/sdp"
    assert [str(c.uri) for c in request.contacts] == ["sip:alice@pc33.atlanta.example.com"]
    assert request.body == SDP


def test_parses_a_response() -> None:
    data = (
        b"SIP/2.0 180 Ringing\r\n"
        b"Via: SIP/2.0/UDP server10.biloxi.example.com;branch=z9hG4bK4b43c2ff8.1\r\n"
        b"Via: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n"
        b"Record-Route: <sip:server10.biloxi.example.com;lr>,"
        b" <sip:bigbox3.site3.example.com;lr>\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
        b"From: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"Call-ID: a84b4c76e66710\r\n"
        b"CSeq: 314159 INVITE\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    response = parse_message(data)
    assert isinstance(response, SipResponse)
    assert (response.status, response.reason) == (180, "Ringing")
    assert [v.host for v in response.vias] == [
        "server10.biloxi.example.com",
        "pc33.atlanta.example.com",
    ]
    assert response.to.tag == "a6c85cf"
    assert [r.uri.host for r in response.record_routes] == [
        "server10.biloxi.example.com",
        "bigbox3.site3.example.com",
    ]
    assert response.body == b""
    assert bytes(response) == data


def test_lf_only_line_ends_and_leading_crlfs() -> None:
    head, _, body = invite().partition(b"\r\n\r\n")
    data = b"\r\n\r\n" + head.replace(b"\r\n", b"\n") + b"\n\n" + body
    request = parse_message(data)
    assert request.cseq.seq == 314159
    assert request.top_via.branch == "z9hG4bK776asdhds"
    assert request.body == SDP


def test_header_folding_and_whitespace_around_colon() -> None:
    data = invite(
        "Subject :  I know you're there,\r\n  pick up the phone\r\n\tand talk to me!",
        "X-Empty:",
    )
    data = data.replace(b"CSeq: 314159 INVITE", b"cseq\t:\r\n  314159\r\n INVITE")
    request = parse_message(data)
    assert request.headers.get("Subject") == (
        "I know you're there, pick up the phone and talk to me!"
    )
    assert request.headers.get("X-Empty") == ""
    assert request.cseq == CSeq(314159, "INVITE")


def test_compact_headers_in_a_message() -> None:
    data = (
        b"BYE sip:alice@pc33.atlanta.example.com SIP/2.0\r\n"
        b"v: SIP/2.0/TCP [2001:db8::2]:5060;branch=z9hG4bKnashds7\r\n"
        b"f: Bob <sip:bob@biloxi.example.com>;tag=a6c85cf\r\n"
        b"t: Alice <sip:alice@atlanta.example.com>;tag=1928301774\r\n"
        b"i: a84b4c76e66710\r\n"
        b"CSeq: 231 BYE\r\n"
        b"k: timer, 100rel\r\n"
        b"l: 0\r\n\r\n"
    )
    request = parse_message(data)
    assert request.top_via.host == "2001:db8::2"
    assert request.from_.tag == "a6c85cf"
    assert request.headers.get_all("Supported") == ["timer", "100rel"]
    assert request.max_forwards is None  # tolerated when missing
    assert bytes(request).startswith(
        b"BYE sip:alice@pc33.atlanta.example.com SIP/2.0\r\nVia: SIP/2.0/TCP [2001:db8::2]"
    )


def test_datagram_body_rules() -> None:
    # RFC 3261 18.3: without Content-Length the body is the rest of the datagram.
    no_length = replace_line(invite(), b"Content-Length", None)
    assert parse_message(no_length).body == SDP
    # Octets past Content-Length are discarded.
    assert parse_message(invite() + b"garbage").body == SDP
    assert parse_message(invite(length=10)).body == SDP[:10]
    # Content-Length beyond the datagram is an error, still answerable.
    with pytest.raises(SipParseError) as raised:
        parse_message(invite(length=len(SDP) + 1))
    assert raised.value.partial is not None


def test_multipart_body_is_opaque_bytes() -> None:
    body = b"--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b\r\n\x00\xff\r\n\r\n--b--\r\n"
    data = replace_line(
        invite(body=body), b"Content-Type", b"Content-Type: multipart/mixed;boundary=b"
    )
    request = parse_message(data)
    assert request.body == body
    assert request.content_type == "multipart/mixed"
    assert parse_message(bytes(request)).body == body


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda m: replace_line(m, b"Via", None), "Missing Via header"),
        (lambda m: replace_line(m, b"From", None), "Missing From header"),
        (lambda m: replace_line(m, b"To", None), "Missing To header"),
        (lambda m: replace_line(m, b"Call-ID", None), "Missing Call-ID header"),
        (lambda m: replace_line(m, b"CSeq", None), "Missing CSeq header"),
        (lambda m: replace_line(m, b"CSeq", b"CSeq: x INVITE"), "Bad CSeq header"),
        (lambda m: replace_line(m, b"CSeq", b"CSeq: 1 BYE"), "CSeq method does not match"),
        (lambda m: replace_line(m, b"Max-Forwards", b"Max-Forwards: ten"), "Bad Max-Forwards"),
        (lambda m: replace_line(m, b"Max-Forwards", b"Max-Forwards: 256"), "Bad Max-Forwards"),
        (lambda m: replace_line(m, b"Content-Length", b"Content-Length: 1x"), "Bad Content-Length"),
        (lambda m: replace_line(m, b"To", b'To: "Bob <sip:bob@b.example.com>'), "Bad To header"),
        (lambda m: replace_line(m, b"From", b"From: <sip:alice@a.example.com;tag=1"), "Bad From"),
        (lambda m: replace_line(m, b"Contact", b"Contact: <sip:a@b>;;"), "Bad Contact header"),
        (lambda m: replace_line(m, b"Call-ID", b"Call-ID: a b"), "Bad Call-ID header"),
        (lambda m: m.replace(b"Max-Forwards: 70", b"Max-Forwards 70"), "Bad header line"),
        (lambda m: m.replace(b"Max-Forwards: 70", b"Max Forwards: 70"), "Bad header name"),
        (lambda m: m.replace(b"Call-ID: a", b"Call-ID: x\r\ni: a"), "Multiple Call-ID headers"),
        (
            lambda m: m.replace(b"sip:bob@biloxi.example.com SIP", b"sip:bob@ SIP"),
            "Bad Request-URI",
        ),
        (lambda m: m.replace(b"INVITE sip:", b"INVITE  sip:"), "Bad Request-Line"),
        (lambda m: m.replace(b" SIP/2.0\r\n", b" SIP/2.0 \r\n", 1), "Bad Request-Line"),
        (lambda m: m.replace(b" SIP/2.0\r\n", b" HTTP/1.1\r\n", 1), "Bad Request-Line"),
    ],
)
def test_malformed_requests_are_classified(mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    data = mutate(invite())
    with pytest.raises(SipParseError) as raised:
        parse_message(data)
    error = raised.value
    assert error.reason.startswith(reason)
    assert error.status == 400
    if reason.startswith("Missing"):
        assert error.partial is None  # no way to build a proper response
    else:
        partial = error.partial
        assert partial is not None
        assert partial.method == "INVITE"
        assert partial.top_via.branch == "z9hG4bK776asdhds"


def test_unsupported_version_is_classified_for_505() -> None:
    data = invite().replace(b" SIP/2.0\r\n", b" SIP/3.0\r\n", 1)
    with pytest.raises(SipParseError) as raised:
        parse_message(data)
    assert raised.value.status == 505
    assert "version" in raised.value.reason.lower()
    assert raised.value.partial is not None


def test_lowercase_version_is_accepted() -> None:
    data = invite().replace(b" SIP/2.0\r\n", b" sip/2.0\r\n", 1)
    assert parse_message(data).method == "INVITE"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        b"garbage",
        b"SIP/2.0 99 Too Low\r\n\r\n",
        b"SIP/2.0 700 Too High\r\n\r\n",
        b"SIP/2.0 20x OK\r\n\r\n",
        b"SIP/2.0\r\n\r\n",
        b"SIP/3.0 200 OK\r\n\r\n",
        b"<INVITE> sip:a@b SIP/2.0\r\n\r\n",
    ],
)
def test_unanswerable_garbage(data: bytes) -> None:
    with pytest.raises(SipParseError) as raised:
        parse_message(data)
    assert raised.value.partial is None


def test_response_missing_headers_is_rejected_without_partial() -> None:
    data = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n"
    with pytest.raises(SipParseError) as raised:
        parse_message(data)
    assert raised.value.partial is None
    assert raised.value.reason == "Missing From header"


def test_unknown_request_uri_scheme_is_classified_for_416() -> None:
    data = invite().replace(
        b"INVITE sip:bob@biloxi.example.com", b"INVITE im:bob@biloxi.example.com"
    )
    with pytest.raises(SipParseError) as raised:
        parse_message(data)
    assert raised.value.status == 416
    assert raised.value.partial is not None
    assert raised.value.partial.uri.host == "invalid"  # placeholder: the real one is unusable


def test_tel_request_uri() -> None:
    data = invite().replace(b"INVITE sip:bob@biloxi.example.com", b"INVITE tel:+14085551212")
    assert parse_message(data).uri.host == "+14085551212"


def test_parse_accepts_bytearray_and_memoryview() -> None:
    data = invite()
    assert parse_message(bytearray(data)).call_id == parse_message(memoryview(data)).call_id


# -- properties follow header edits ----------------------------------------------------


def test_properties_reflect_header_edits_and_return_independent_objects() -> None:
    request = parse_message(invite())
    to = request.to
    to.params["tag"] = "changed"
    to.uri.params["lr"] = None
    assert request.to.tag is None  # mutating a returned object does not touch the message
    assert request.to.uri.params == {}
    request.headers.set("To", str(to))
    assert request.to.tag == "changed"
    via = request.top_via
    via.params["received"] = "198.51.100.1"
    assert request.top_via.received is None
    request.headers.set("Via", str(via))
    assert request.vias[0].received == "198.51.100.1"
    request.headers.set("CSeq", "7 INVITE")
    assert request.cseq.seq == 7
    request.headers.remove("Max-Forwards")
    assert request.max_forwards is None


def test_properties_raise_parse_errors_for_bad_edits() -> None:
    request = SipRequest("OPTIONS", SipUri.parse("sip:example.com"))
    with pytest.raises(SipParseError, match="Missing Call-ID"):
        _ = request.call_id
    with pytest.raises(SipParseError, match="Missing Via"):
        _ = request.vias
    request.headers.add("From", "<sip:broken")
    with pytest.raises(SipParseError, match="Bad From header"):
        _ = request.from_
    request.headers.add("Max-Forwards", "x")
    with pytest.raises(SipParseError):
        _ = request.max_forwards


def test_wildcard_contact_is_left_out() -> None:
    data = (
        b"REGISTER sip:registrar.biloxi.example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP bobspc.biloxi.example.com:5060;branch=z9hG4bKnashds7\r\n"
        b"To: Bob <sip:bob@biloxi.example.com>\r\n"
        b"From: Bob <sip:bob@biloxi.example.com>;tag=456248\r\n"
        b"Call-ID: 843817637684230@998sdasdh09\r\n"
        b"CSeq: 1826 REGISTER\r\n"
        b"Contact: *\r\nExpires: 0\r\nContent-Length: 0\r\n\r\n"
    )
    request = parse_message(data)
    assert request.contacts == []
    assert request.headers.get_all("Contact") == ["*"]


# -- serialization -----------------------------------------------------------------


def test_serialization_uses_canonical_names_and_crlf() -> None:
    data = invite().replace(b"Call-ID:", b"i:").replace(b"Max-Forwards", b"max-forwards")
    out = bytes(parse_message(data))
    assert b"\r\nCall-ID: a84b4c76e66710@pc33.atlanta.example.com\r\n" in out
    assert b"\r\nMax-Forwards: 70\r\n" in out
    assert b"\n" not in out.replace(b"\r\n", b"")[: out.index(b"\r\n\r\n")]
    assert out.endswith(b"\r\n\r\n" + SDP)


def test_serialization_always_writes_a_correct_content_length() -> None:
    request = parse_message(invite())
    request.body = b"v=0\r\n"
    out = bytes(request)
    assert out.count(b"Content-Length") == 1
    assert b"\r\nContent-Length: 5\r\n\r\nv=0\r\n" in out
    built = SipRequest("OPTIONS", SipUri.parse("sip:example.com"))
    built.headers.add("Content-Length", "999")
    built.headers.add("Content-Length", "998")
    assert b"Content-Length: 0\r\n\r\n" in bytes(built)
    assert bytes(built).count(b"Content-Length") == 1
    assert bytes(SipResponse(200)).endswith(b"Content-Length: 0\r\n\r\n")


def test_serialized_message_parses_back_identically() -> None:
    first = parse_message(invite("Subject: caf\u00e9 \u2615"))
    second = parse_message(bytes(first))
    assert bytes(second) == bytes(first)
    assert second.headers == first.headers
    assert second.headers.get("Subject") == "caf\u00e9 \u2615"


def test_non_utf8_header_octets_round_trip() -> None:
    data = invite().replace(b"Max-Forwards: 70", b"X-Raw: \xff\xfe\x80")
    assert b"X-Raw: \xff\xfe\x80\r\n" in bytes(parse_message(data))


def test_building_a_request_from_scratch() -> None:
    request = SipRequest("OPTIONS", SipUri.parse("sip:[2001:db8::5]:5070"))
    request.headers.add("Via", str(Via("UDP", "2001:db8::1", 5060, {"branch": "z9hG4bKa1"})))
    request.headers.add("From", str(NameAddr("Gateway", SipUri.parse("sip:gw@example.com"), {})))
    request.headers.add("To", "<sip:[2001:db8::5]:5070>")
    request.headers.add("Call-ID", "opt-1")
    request.headers.add("CSeq", str(CSeq(1, "OPTIONS")))
    parsed = parse_message(bytes(request))
    assert parsed.uri.host == "2001:db8::5"
    assert parsed.top_via.host == "2001:db8::1"
    assert parsed.from_.display_name == "Gateway"


def test_response_defaults_and_validation() -> None:
    assert SipResponse(486).reason == "Busy Here"
    assert SipResponse(299).reason == ""
    assert SipResponse(200, "Fine").reason == "Fine"
    with pytest.raises(ValueError):
        SipResponse(99)
    with pytest.raises(ValueError):
        SipResponse(200, "OK\r\nX: y")


def test_reason_phrases_cover_rfc_3261_and_common_extensions() -> None:
    rfc3261 = [100, 180, 181, 182, 183, 200, 300, 301, 302, 305, 380, 400, 401, 402, 403, 404]
    rfc3261 += [405, 406, 407, 408, 410, 413, 414, 415, 416, 420, 421, 423, 480, 481, 482, 483]
    rfc3261 += [484, 485, 486, 487, 488, 491, 493, 500, 501, 502, 503, 504, 505, 513, 600, 603]
    rfc3261 += [604, 606]
    extensions = [199, 204, 412, 422, 429, 489, 494, 580]
    for code in rfc3261 + extensions:
        assert REASON_PHRASES[code]
    assert REASON_PHRASES[481] == "Call/Transaction Does Not Exist"


# -- make_response ---------------------------------------------------------------


def test_make_response_copies_rfc_3261_8_2_6_2_headers() -> None:
    data = invite().replace(
        b"Via: SIP/2.0/UDP pc33",
        b"Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1, SIP/2.0/TCP p2;branch=z9hG4bKp2\r\n"
        b"Via: SIP/2.0/UDP pc33",
    )
    request = parse_message(data)
    response = make_response(request, 180, to_tag="a6c85cf")
    assert (response.status, response.reason) == (180, "Ringing")
    assert response.headers.raw_values("Via") == request.headers.raw_values("Via")
    assert [v.branch for v in response.vias] == ["z9hG4bKp1", "z9hG4bKp2", "z9hG4bK776asdhds"]
    assert response.headers.get("From") == request.headers.get("From")
    assert response.headers.get("To") == "Bob <sip:bob@biloxi.example.com>;tag=a6c85cf"
    assert response.call_id == request.call_id
    assert response.cseq == request.cseq
    assert "Contact" not in response.headers
    assert "Max-Forwards" not in response.headers
    assert response.body == b""


def test_make_response_keeps_an_existing_to_tag_and_skips_it_for_100() -> None:
    request = parse_message(
        invite().replace(b"To: Bob <sip:bob@biloxi.example.com>", b"To: <sip:b@x>;tag=old")
    )
    assert make_response(request, 200, to_tag="new").to.tag == "old"
    fresh = parse_message(invite("Timestamp: 54"))
    trying = make_response(fresh, 100, to_tag="new")
    assert trying.to.tag is None
    assert trying.headers.get("Timestamp") == "54"  # RFC 3261 8.2.6.1
    assert "Timestamp" not in make_response(fresh, 180).headers


def test_make_response_with_body_adds_content_type() -> None:
    request = parse_message(invite())
    response = make_response(request, 200, "OK", to_tag="t1", body=SDP)
    assert response.headers.get("Content-Type") == "application/sdp"
    assert response.body == SDP
    other = make_response(request, 200, body=b"{}", content_type="application/json")
    assert other.content_type == "application/json"
    reparsed = parse_message(bytes(response))
    assert reparsed.body == SDP
    assert reparsed.to.tag == "t1"


def test_make_response_rejects_a_bad_tag() -> None:
    with pytest.raises(ValueError):
        make_response(parse_message(invite()), 200, to_tag="a b")


def test_make_response_from_a_partial_request() -> None:
    data = replace_line(invite(), b"CSeq", b"CSeq: 99999999999999 INVITE")
    with pytest.raises(SipParseError) as raised:
        parse_message(data)
    partial = raised.value.partial
    assert partial is not None
    response = make_response(partial, 400, raised.value.reason, to_tag="x")
    assert response.headers.get("CSeq") == "99999999999999 INVITE"
    assert response.to.tag == "x"
    assert bytes(response).startswith(b"SIP/2.0 400 Bad CSeq header\r\n")


# -- StreamFramer -------------------------------------------------------------------


def test_framer_splits_messages_across_arbitrary_chunks() -> None:
    first, second = invite(), invite(body=b"", length=0)
    stream = first + second
    for size in (1, 2, 7, 64, len(stream)):
        framer = StreamFramer()
        out: list[bytes] = []
        for start in range(0, len(stream), size):
            out += framer.feed(stream[start : start + size])
        assert out == [first, second]
        assert framer.buffered == 0


def test_framer_counts_double_crlf_pings_and_ignores_pongs() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.pings_received == 1
    assert framer.feed(b"\r\n") == []  # a pong, or half a ping: wait and see
    assert framer.pings_received == 1
    assert framer.feed(b"\r\n") == []
    assert framer.pings_received == 2
    message = invite()
    assert framer.feed(b"\r\n" + message + b"\r\n\r\n") == [message]
    assert framer.pings_received == 3


def test_framer_requires_content_length() -> None:
    framer = StreamFramer()
    with pytest.raises(SipParseError, match="Missing Content-Length"):
        framer.feed(replace_line(invite(), b"Content-Length", None))
    with pytest.raises(SipParseError, match="unusable"):
        framer.feed(invite())


@pytest.mark.parametrize(
    "line",
    [b"Content-Length: -1", b"Content-Length: abc", b"l: 5\r\nContent-Length: 6"],
)
def test_framer_rejects_bad_content_length(line: bytes) -> None:
    with pytest.raises(SipParseError):
        StreamFramer().feed(replace_line(invite(), b"Content-Length", line))


def test_framer_accepts_compact_and_folded_content_length() -> None:
    message = replace_line(invite(), b"Content-Length", b"l:\r\n " + str(len(SDP)).encode())
    assert StreamFramer().feed(message) == [message]


def test_framer_enforces_the_size_limit() -> None:
    framer = StreamFramer(max_message_bytes=1024)
    with pytest.raises(SipParseError, match="Too Large"):
        framer.feed(b"INVITE sip:a@b SIP/2.0\r\n" + b"X: " + b"a" * 2000)
    big_body = StreamFramer(max_message_bytes=1024)
    with pytest.raises(SipParseError, match="Too Large"):
        big_body.feed(invite(body=b"", length=5000))


def test_framer_output_parses() -> None:
    framer = StreamFramer()
    messages = framer.feed(invite() + invite().replace(b"314159", b"314160"))
    assert [parse_message(m).cseq.seq for m in messages] == [314159, 314160]
