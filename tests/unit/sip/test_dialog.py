"""Dialog state (RFC 3261 12): route sets, request construction, CSeq, target refresh."""

from __future__ import annotations

from gateway.sip.dialog import Dialog
from gateway.sip.headers import Via
from gateway.sip.message import SipRequest, SipResponse, parse_message
from gateway.sip.uri import NameAddr

CRLF = "\r\n"


def parse_request(*lines: str) -> SipRequest:
    message = parse_message((CRLF.join([*lines, "Content-Length: 0", "", ""])).encode())
    assert isinstance(message, SipRequest)
    return message


def parse_response(*lines: str) -> SipResponse:
    message = parse_message((CRLF.join([*lines, "Content-Length: 0", "", ""])).encode())
    assert isinstance(message, SipResponse)
    return message


INVITE_LINES = (
    "INVITE sip:bob@example.com SIP/2.0",
    "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv",
    "Max-Forwards: 70",
    'From: "Alice" <sip:alice@example.com>;tag=alice-tag',
    "To: <sip:bob@example.com>",
    "Call-ID: dialog-1@192.0.2.10",
    "CSeq: 10 INVITE",
    "Contact: <sip:alice@192.0.2.10:5060>",
)


def outgoing_invite() -> SipRequest:
    return parse_request(*INVITE_LINES)


def ok_for_uac(*record_routes: str, contact: str = "<sip:bob@192.0.2.20:5070>") -> SipResponse:
    return parse_response(
        "SIP/2.0 200 OK",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv",
        *(f"Record-Route: {route}" for route in record_routes),
        'From: "Alice" <sip:alice@example.com>;tag=alice-tag',
        "To: <sip:bob@example.com>;tag=bob-tag",
        "Call-ID: dialog-1@192.0.2.10",
        "CSeq: 10 INVITE",
        f"Contact: {contact}",
    )


def via() -> Via:
    return Via("UDP", "192.0.2.10", 5060, {"branch": "z9hG4bKnext"})


def test_uac_dialog_from_the_2xx() -> None:
    dialog = Dialog.from_uac(
        outgoing_invite(),
        ok_for_uac("<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"),
    )
    assert dialog.id == ("dialog-1@192.0.2.10", "alice-tag", "bob-tag")
    assert str(dialog.remote_target) == "sip:bob@192.0.2.20:5070"
    # 12.1.2: Record-Route reversed
    assert [str(route.uri) for route in dialog.route_set] == [
        "sip:p1.example.com;lr",
        "sip:p2.example.com;lr",
    ]
    assert dialog.local_cseq == 10 and dialog.remote_cseq is None
    assert dialog.local_uri.tag is None and dialog.remote_uri.tag is None
    assert str(dialog.local_uri.uri) == "sip:alice@example.com"
    assert dialog.local_uri.display_name == "Alice"
    assert dialog.secure is False


def test_record_route_entries_in_one_header_count_individually() -> None:
    dialog = Dialog.from_uac(
        outgoing_invite(), ok_for_uac("<sip:p3.example.com;lr>, <sip:p2.example.com;lr>")
    )
    assert [route.uri.host for route in dialog.route_set] == [
        "p2.example.com",
        "p3.example.com",
    ]


def test_uas_dialog_from_the_request() -> None:
    invite = parse_request(
        *INVITE_LINES[:3],
        "Record-Route: <sip:p1.example.com;lr>",
        "Record-Route: <sip:p2.example.com;lr>",
        *INVITE_LINES[3:],
    )
    dialog = Dialog.from_uas(invite, "bob-tag")
    assert dialog.id == ("dialog-1@192.0.2.10", "bob-tag", "alice-tag")
    # 12.1.1: Record-Route in order
    assert [route.uri.host for route in dialog.route_set] == ["p1.example.com", "p2.example.com"]
    assert str(dialog.remote_target) == "sip:alice@192.0.2.10:5060"
    assert dialog.remote_cseq == 10
    assert str(dialog.local_uri.uri) == "sip:bob@example.com"
    assert str(dialog.remote_uri.uri) == "sip:alice@example.com"
    bye = dialog.create_request("BYE", via=via())
    assert bye.cseq.seq == 1
    assert bye.from_.tag == "bob-tag" and str(bye.from_.uri) == "sip:bob@example.com"
    assert bye.to.tag == "alice-tag" and bye.to.display_name == "Alice"


def test_request_without_route_set_goes_to_the_remote_target() -> None:
    dialog = Dialog.from_uac(outgoing_invite(), ok_for_uac())
    bye = dialog.create_request("BYE", via=via())
    wire = parse_message(bytes(bye))
    assert isinstance(wire, SipRequest)
    assert wire.method == "BYE"
    assert str(wire.uri) == "sip:bob@192.0.2.20:5070"
    assert wire.headers.get_all("Route") == []
    assert wire.max_forwards == 70
    assert wire.call_id == "dialog-1@192.0.2.10"
    assert wire.from_.tag == "alice-tag" and wire.to.tag == "bob-tag"
    assert (wire.cseq.seq, wire.cseq.method) == (11, "BYE")
    assert wire.top_via.branch == "z9hG4bKnext"
    assert dialog.next_hop() == dialog.remote_target


def test_loose_routing() -> None:
    dialog = Dialog.from_uac(
        outgoing_invite(), ok_for_uac("<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>")
    )
    request = parse_message(bytes(dialog.create_request("INFO", via=via())))
    assert isinstance(request, SipRequest)
    assert str(request.uri) == "sip:bob@192.0.2.20:5070"
    routes = [
        str(route.uri)
        for value in request.headers.get_all("Route")
        for route in [NameAddr.parse(value)]
    ]
    assert routes == ["sip:p1.example.com;lr", "sip:p2.example.com;lr"]
    assert dialog.next_hop().host == "p1.example.com"


def test_strict_routing() -> None:
    dialog = Dialog.from_uac(
        outgoing_invite(),
        ok_for_uac("<sip:p2.example.com;lr>", "<sip:p1.example.com;method=INVITE;transport=tcp>"),
    )
    request = parse_message(bytes(dialog.create_request("BYE", via=via())))
    assert isinstance(request, SipRequest)
    # 12.2.1.1: the strict router's URI becomes the Request-URI, minus what a
    # Request-URI may not carry; the remote target goes last in Route
    assert str(request.uri) == "sip:p1.example.com;transport=tcp"
    routes = [str(NameAddr.parse(value).uri) for value in request.headers.get_all("Route")]
    assert routes == ["sip:p2.example.com;lr", "sip:bob@192.0.2.20:5070"]
    assert dialog.next_hop().host == "p1.example.com"


def test_cseq_rules_for_requests_ack_and_cancel() -> None:
    dialog = Dialog.from_uac(outgoing_invite(), ok_for_uac())
    ack = dialog.create_ack(10, via=via())
    assert (ack.cseq.seq, ack.cseq.method) == (10, "ACK")
    assert dialog.local_cseq == 10
    reinvite = dialog.create_request(
        "INVITE", via=via(), contact=NameAddr.parse("<sip:gw@192.0.2.1>")
    )
    assert reinvite.cseq.seq == 11
    assert str(reinvite.contacts[0].uri) == "sip:gw@192.0.2.1"
    cancel = dialog.create_request("CANCEL", via=via())
    assert cancel.cseq.seq == 11
    assert dialog.create_request("BYE", via=via()).cseq.seq == 12


def test_ack_for_2xx_with_body() -> None:
    dialog = Dialog.from_uac(outgoing_invite(), ok_for_uac("<sip:p1.example.com;lr>"))
    body = b"v=0\r\n"
    ack = parse_message(
        bytes(dialog.create_ack(10, via=via(), body=body, content_type="application/sdp"))
    )
    assert isinstance(ack, SipRequest)
    assert ack.method == "ACK" and ack.body == body
    assert ack.content_type == "application/sdp"
    assert str(ack.uri) == "sip:bob@192.0.2.20:5070"
    assert len(ack.headers.get_all("Route")) == 1


def test_extra_headers_and_body() -> None:
    dialog = Dialog.from_uac(outgoing_invite(), ok_for_uac())
    info = dialog.create_request(
        "INFO",
        via=via(),
        body=b"Signal=5\r\nDuration=160\r\n",
        content_type="application/dtmf-relay",
        extra_headers=[("Info-Package", "dtmf")],
    )
    wire = parse_message(bytes(info))
    assert wire.headers.get("Info-Package") == "dtmf"
    assert wire.content_type == "application/dtmf-relay"
    assert wire.body == b"Signal=5\r\nDuration=160\r\n"


def test_remote_cseq_must_not_go_backwards() -> None:
    invite = outgoing_invite()
    dialog = Dialog.from_uas(invite, "bob-tag")

    def in_dialog(method: str, seq: int) -> SipRequest:
        return parse_request(
            f"{method} sip:bob@192.0.2.20 SIP/2.0",
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKx",
            'From: "Alice" <sip:alice@example.com>;tag=alice-tag',
            "To: <sip:bob@example.com>;tag=bob-tag",
            "Call-ID: dialog-1@192.0.2.10",
            f"CSeq: {seq} {method}",
        )

    assert dialog.check_remote_cseq(in_dialog("INFO", 12)) is True
    assert dialog.remote_cseq == 12
    assert dialog.check_remote_cseq(in_dialog("INFO", 11)) is False
    assert dialog.remote_cseq == 12
    # ACK and CANCEL carry an older request's number and pass
    assert dialog.check_remote_cseq(in_dialog("ACK", 10)) is True
    assert dialog.remote_cseq == 12
    assert dialog.check_remote_cseq(in_dialog("BYE", 13)) is True
    assert dialog.remote_cseq == 13


def test_uac_dialog_takes_the_first_remote_cseq() -> None:
    dialog = Dialog.from_uac(outgoing_invite(), ok_for_uac())
    bye = parse_request(
        "BYE sip:alice@192.0.2.10 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.20:5070;branch=z9hG4bKb",
        "From: <sip:bob@example.com>;tag=bob-tag",
        'To: "Alice" <sip:alice@example.com>;tag=alice-tag',
        "Call-ID: dialog-1@192.0.2.10",
        "CSeq: 1 BYE",
    )
    assert dialog.check_remote_cseq(bye) is True
    assert dialog.remote_cseq == 1


def test_target_refresh() -> None:
    dialog = Dialog.from_uas(outgoing_invite(), "bob-tag")
    reinvite = parse_request(
        "INVITE sip:bob@192.0.2.20 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKre",
        'From: "Alice" <sip:alice@example.com>;tag=alice-tag',
        "To: <sip:bob@example.com>;tag=bob-tag",
        "Call-ID: dialog-1@192.0.2.10",
        "CSeq: 11 INVITE",
        "Contact: <sip:alice@203.0.113.9:5090;transport=tcp>",
    )
    info = parse_request(
        "INFO sip:bob@192.0.2.20 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinfo",
        'From: "Alice" <sip:alice@example.com>;tag=alice-tag',
        "To: <sip:bob@example.com>;tag=bob-tag",
        "Call-ID: dialog-1@192.0.2.10",
        "CSeq: 12 INFO",
        "Contact: <sip:elsewhere@203.0.113.99>",
    )
    dialog.update_from_request(info)  # INFO is not a target refresh request
    assert str(dialog.remote_target) == "sip:alice@192.0.2.10:5060"
    dialog.update_from_request(reinvite)
    assert str(dialog.remote_target) == "sip:alice@203.0.113.9:5090;transport=tcp"
    bye = dialog.create_request("BYE", via=via())
    assert str(bye.uri) == "sip:alice@203.0.113.9:5090;transport=tcp"
    dialog.update_remote_target(NameAddr.parse("<sip:alice@203.0.113.10>"))
    assert dialog.next_hop().host == "203.0.113.10"


def test_target_refresh_from_a_2xx_to_our_reinvite() -> None:
    dialog = Dialog.from_uac(outgoing_invite(), ok_for_uac())
    dialog.update_from_response(ok_for_uac(contact="<sip:bob@203.0.113.7>"))
    assert str(dialog.remote_target) == "sip:bob@203.0.113.7"


def test_early_dialog_without_remote_tag_sends_a_to_without_tag() -> None:
    invite = outgoing_invite()
    ringing = parse_response(
        "SIP/2.0 180 Ringing",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKinv",
        'From: "Alice" <sip:alice@example.com>;tag=alice-tag',
        "To: <sip:bob@example.com>",
        "Call-ID: dialog-1@192.0.2.10",
        "CSeq: 10 INVITE",
    )
    dialog = Dialog.from_uac(invite, ringing)
    assert dialog.remote_tag is None
    assert dialog.remote_target == invite.uri  # no Contact: the Request-URI
    assert dialog.create_request("UPDATE", via=via()).to.tag is None


def test_sips_request_uri_makes_a_secure_dialog() -> None:
    invite = parse_request("INVITE sips:bob@example.com SIP/2.0", *INVITE_LINES[1:])
    assert Dialog.from_uas(invite, "t").secure is True
