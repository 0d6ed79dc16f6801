"""RFC 4475 torture messages (files in ./torture, one message per file, CRLF line ends).

Valid messages must parse and survive a serialize/parse round trip. Invalid
ones must raise SipParseError classified as RFC 4475 asks (400, 416, 505,
answerable or not), or, where RFC 4475 lets an element be liberal, are
accepted and the test says why.

The mpart01 file carries its own binary octets in place of the RFC's S/MIME
signature (the test needs binary body bytes, not that particular signature).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.sip.errors import SipParseError
from gateway.sip.headers import CSeq
from gateway.sip.message import SipRequest, SipResponse, make_response, parse_message

TORTURE = Path(__file__).parent / "torture"


def load(name: str) -> bytes:
    return (TORTURE / f"{name}.dat").read_bytes()


VALID = {
    # RFC 4475 3.1.1: valid messages
    "wsinv": "3.1.1.1 a short tortuous INVITE",
    "intmeth": "3.1.1.2 wide range of valid characters",
    "esc01": "3.1.1.3 valid use of the % escaping mechanism",
    "escnull": "3.1.1.4 escaped nulls in URIs",
    "esc02": "3.1.1.5 use of % when it is not an escape",
    "lwsdisp": "3.1.1.6 no LWS between display name and <",
    "longreq": "3.1.1.7 long values in header fields",
    "dblreq": "3.1.1.8 extra trailing octets in a UDP datagram",
    "semiuri": "3.1.1.9 semicolon-separated parameters in URI user part",
    "transports": "3.1.1.10 varied and unknown transport types",
    "mpart01": "3.1.1.11 multipart MIME message",
    "unreason": "3.1.1.12 unusual reason phrase",
    "noreason": "3.1.1.13 empty reason phrase",
    # RFC 4475 3.2-3.4: syntactically valid, judged above this layer
    "badbranch": "3.2.1 missing transaction identifier (branch is just the cookie)",
    "bext01": "3.3.5 Proxy-Require and Require (420 is the application's call)",
    "invut": "3.3.6 unknown Content-Type (415 is the application's call)",
    "regaut01": "3.3.7 unknown authorization scheme",
    "bcast": "3.3.10 200 OK with broadcast Via (the transaction layer drops it)",
    "zeromf": "3.3.11 Max-Forwards of zero",
    "cparam01": "3.3.12 REGISTER with a contact header parameter",
    "cparam02": "3.3.13 REGISTER with a URL parameter",
    "regescrt": "3.3.14 REGISTER with a URL escaped header",
    "sdp01": "3.3.15 unacceptable Accept offering",
    "inv2543": "3.4.1 INVITE with RFC 2543 syntax",
}

# name -> (reason prefix, status, answerable): the answer RFC 4475 asks for.
REJECTED = {
    "badinv01": ("Bad Via header", 400, False),  # 3.1.2.1; Via unusable so no route back
    "clerr": ("Content-Length larger than message", 400, True),  # 3.1.2.2
    "ncl": ("Bad Content-Length header", 400, True),  # 3.1.2.3
    "scalar02": ("Bad CSeq header", 400, True),  # 3.1.2.4
    "scalarlg": ("Bad CSeq header", 400, False),  # 3.1.2.5: a response, dropped
    "quotbal": ("Bad To header", 400, True),  # 3.1.2.6
    "ltgtruri": ("Bad Request-URI", 400, True),  # 3.1.2.7
    "lwsruri": ("Bad Request-Line", 400, True),  # 3.1.2.8
    "lwsstart": ("Bad Request-Line", 400, True),  # 3.1.2.9: rejecting is acceptable
    "trws": ("Bad Request-Line", 400, True),  # 3.1.2.10: rejecting is acceptable
    "escruri": ("Bad Request-URI", 400, True),  # 3.1.2.11: rejecting is acceptable
    "baddn": ("Bad From header", 400, True),  # 3.1.2.15
    "badvers": ("SIP Version Not Supported", 505, True),  # 3.1.2.16
    "mismatch01": ("CSeq method does not match", 400, True),  # 3.1.2.17
    "mismatch02": ("CSeq method does not match", 400, True),  # 3.1.2.18
    "bigcode": ("Bad Status-Line", 400, False),  # 3.1.2.19: a response, dropped
    # 3.3.1: From, To and Call-ID are missing, so no proper response can be built.
    "insuf": ("Missing", 400, False),
    "unkscm": ("Unsupported URI Scheme", 416, True),  # 3.3.2
    "novelsc": ("Unsupported URI Scheme", 416, True),  # 3.3.3
    # 3.3.4: absolute URIs of other schemes in To/From/Contact are legal SIP, but
    # this element models sip/sips/tel addresses only and answers 400, as RFC 4475
    # allows a registrar to do.
    "unksm2": ("Bad To header", 400, True),
    "multi01": ("Multiple", 400, True),  # 3.3.8
    "mcl01": ("Multiple Content-Length headers", 400, True),  # 3.3.9
}

# Invalid per the grammar, accepted because RFC 4475 lets an element be liberal.
LENIENT = {
    "baddate": "3.1.2.12: Date is not interpreted here; it is carried as text",
    "regbadct": "3.1.2.13: a Contact addr-spec with '?' is read as a URI with headers",
    "badaspec": "3.1.2.14: spaces inside <> are ignored and not reproduced",
}


def test_every_torture_file_is_classified() -> None:
    names = {path.stem for path in TORTURE.glob("*.dat")}
    assert names == set(VALID) | set(REJECTED) | set(LENIENT)


def _same_message(first: SipRequest | SipResponse, second: SipRequest | SipResponse) -> None:
    assert type(first) is type(second)
    if isinstance(first, SipRequest) and isinstance(second, SipRequest):
        assert (first.method, first.uri) == (second.method, second.uri)
    elif isinstance(first, SipResponse) and isinstance(second, SipResponse):
        assert (first.status, first.reason) == (second.status, second.reason)
    assert first.call_id == second.call_id
    assert first.cseq == second.cseq
    assert first.body == second.body
    assert first.vias == second.vias
    assert first.from_ == second.from_
    assert first.to == second.to
    assert first.contacts == second.contacts


@pytest.mark.parametrize("name", sorted(VALID) + sorted(LENIENT))
def test_accepted_messages_parse_and_round_trip(name: str) -> None:
    message = parse_message(load(name))
    reparsed = parse_message(bytes(message))
    _same_message(message, reparsed)
    assert bytes(reparsed) == bytes(message)


@pytest.mark.parametrize("name", sorted(REJECTED))
def test_rejected_messages_are_classified(name: str) -> None:
    reason, status, answerable = REJECTED[name]
    with pytest.raises(SipParseError) as raised:
        parse_message(load(name))
    error = raised.value
    assert error.reason.startswith(reason)
    assert error.status == status
    assert (error.partial is not None) == answerable
    if error.partial is not None:
        response = make_response(error.partial, error.status, error.reason, to_tag="t0")
        assert bytes(response).startswith(f"SIP/2.0 {status} {error.reason}\r\n".encode())
        assert response.headers.raw_values("Via") == error.partial.headers.raw_values("Via")


# -- what the valid messages say -------------------------------------------------------


def test_wsinv() -> None:
    request = parse_message(load("wsinv"))
    assert isinstance(request, SipRequest)
    assert str(request.uri) == "sip:vivekg@chair-dnrc.example.com;unknownparam"
    assert request.to.tag == "1918181833n"
    assert request.from_.display_name == 'J Rosenberg \\"'
    assert request.from_.tag == "98asjd8"
    assert request.max_forwards == 68
    assert request.cseq == CSeq(9, "INVITE")
    assert [(v.transport, v.host, v.branch) for v in request.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert request.headers.get("Subject") == ""
    assert request.headers.get("NewFangledHeader") == (
        "newfangled value continued newfangled value"
    )
    assert request.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert request.routes[0].uri.params == {
        "lr": None,
        "unknownwith": "value",
        "unknown-no-value": None,
    }
    (contact,) = request.contacts
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert request.content_type == "application/sdp"
    assert len(request.body) == 150


def test_intmeth() -> None:
    request = parse_message(load("intmeth"))
    assert isinstance(request, SipRequest)
    assert request.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert request.cseq.method == request.method
    assert request.uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert request.uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert request.uri.host == "example.com"
    assert request.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert request.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert request.from_.params == {
        "fromparam''~+*_!.-%": '"\u0440\u0430\u0431\u043e\u0442\u0430\u044e\u0449\u0438\u0439"',
        "tag": "_token~1'+`*%!-.",
    }
    assert request.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert request.max_forwards == 255
    assert request.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"
    assert b"\r\nextensionHeader-!.%*+_`'~: \xef\xbb\xbf" in bytes(request)


def test_esc01() -> None:
    request = parse_message(load("esc01"))
    assert isinstance(request, SipRequest)
    assert request.uri.user == "sips:user@example.com"
    assert request.uri.host == "example.net"
    assert request.to.uri.user == "user"
    assert request.from_.uri.user == "I have spaces"
    (contact,) = request.contacts
    assert contact.uri.user == "caller"
    assert contact.uri.params == {"lr": None, "name": "value%41"}
    assert request.content_type == "application/sdp"


def test_escnull() -> None:
    request = parse_message(load("escnull"))
    assert request.to.uri.user == "null-\x00-null"
    assert [c.uri.user for c in request.contacts] == ["\x00", "\x00\x00"]
    assert b"<sip:%00%00@host5.example.com>" in bytes(request)


def test_esc02() -> None:
    request = parse_message(load("esc02"))
    assert isinstance(request, SipRequest)
    assert request.method == "RE%47IST%45R"  # not REGISTER: % is a token character here
    assert request.to.display_name == "%Z%45"
    assert request.top_via.branch == "z9hG4bK209%fzsnel234"
    assert [c.uri.host for c in request.contacts] == ["host1.example.com", "host3.example.com"]
    assert request.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"


def test_lwsdisp() -> None:
    assert parse_message(load("lwsdisp")).from_.display_name == "caller"


def test_longreq() -> None:
    request = parse_message(load("longreq"))
    vias = request.vias
    assert len(vias) == 34
    assert vias[0].host == "sip33.example.com"
    assert vias[-1].branch == "very" + "long" * 50 + "branchvalue"
    assert request.to.uri.port == 6000
    assert request.to.display_name.startswith("I have a user name of extremeextreme")
    assert request.from_.tag == "12" + "982" * 50 + "424"
    assert request.call_id == "longreq.one" + "really" * 20 + "longcallid"
    assert len(request.body) == 150


def test_dblreq_discards_the_trailing_octets() -> None:
    data = load("dblreq")
    request = parse_message(data)
    assert isinstance(request, SipRequest)
    assert request.method == "REGISTER"
    assert request.body == b""
    assert b"INVITE" in data
    assert b"INVITE" not in bytes(request)


def test_semiuri() -> None:
    request = parse_message(load("semiuri"))
    assert isinstance(request, SipRequest)
    assert request.uri.user == "user;par=u@example.net"
    assert request.uri.host == "example.com"
    assert request.uri.params == {}
    assert len(request.headers.get_all("Accept")) == 6


def test_transports() -> None:
    request = parse_message(load("transports"))
    assert [v.transport for v in request.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def test_mpart01_body_is_carried_untouched() -> None:
    data = load("mpart01")
    request = parse_message(data)
    assert request.content_type == "multipart/mixed"
    assert request.body == data[data.index(b"\r\n\r\n") + 4 :]
    assert request.body.startswith(b"--7a9cbec02ceef655\r\n")
    assert request.top_via.has_rport and request.top_via.rport is None
    assert request.headers.get("y") is not None  # Identity, by its compact name


def test_unreason_and_noreason() -> None:
    response = parse_message(load("unreason"))
    assert isinstance(response, SipResponse)
    assert response.status == 200
    assert response.reason == (
        "= 2**3 * 5**2 \u043d\u043e \u0441\u0442\u043e \u0434\u0435\u0432\u044f\u043d\u043e"
        "\u0441\u0442\u043e \u0434\u0435\u0432\u044f\u0442\u044c - \u043f\u0440\u043e\u0441"
        "\u0442\u043e\u0435"
    )
    empty = parse_message(load("noreason"))
    assert isinstance(empty, SipResponse)
    assert (empty.status, empty.reason) == (100, "")


def test_application_layer_messages() -> None:
    assert parse_message(load("zeromf")).max_forwards == 0
    (contact,) = parse_message(load("cparam01")).contacts
    assert contact.params == {"unknownparam": None}  # addr-spec: a header parameter
    (contact,) = parse_message(load("cparam02")).contacts
    assert contact.uri.params == {"unknownparam": None}  # inside <>: a URI parameter
    (contact,) = parse_message(load("regescrt")).contacts
    assert contact.uri.headers == {"Route": "<sip:sip.example.com>"}
    assert parse_message(load("badbranch")).top_via.branch == "z9hG4bK"
    assert parse_message(load("regaut01")).headers.get_all("Authorization") == [
        "NoOneKnowsThisScheme opaque-data=here"
    ]
    assert [v.host for v in parse_message(load("bcast")).vias] == [
        "192.0.2.198",
        "255.255.255.255",
    ]
    assert parse_message(load("bext01")).headers.get_all("Proxy-Require") == [
        "noProxiesSupportThis",
        "norDoAnyProxiesSupportThis",
    ]


def test_inv2543_is_read_with_datagram_rules() -> None:
    data = load("inv2543")
    request = parse_message(data)
    assert request.top_via.branch is None
    assert request.max_forwards is None
    assert request.body == data[data.index(b"\r\n\r\n") + 4 :]
    assert request.record_routes[0].uri.params == {"maddr": "ss1.example.com"}
    assert request.to.params == {"user": "phone"}


# -- what the lenient ones keep ------------------------------------------------------


def test_baddate_keeps_the_date_as_text() -> None:
    assert parse_message(load("baddate")).headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def test_regbadct_contact() -> None:
    (contact,) = parse_message(load("regbadct")).contacts
    assert contact.uri.headers == {"Route": "<sip:sip.example.com>"}


def test_badaspec_does_not_reproduce_the_spaces() -> None:
    request = parse_message(load("badaspec"))
    assert str(request.to) == '"Watson, Thomas" <sip:t.watson@example.org>'
    assert request.from_.display_name == "Bell, Alexander"
