"""What the callee's INVITE transaction keeps of an ended call (RFC 6026 7.2 lingering)."""

from __future__ import annotations

import gc
from datetime import UTC, datetime

from gateway.calls.call import BInviteView, Call, Leg
from gateway.calls.routing import Route
from gateway.config import PeerSettings, TenantSettings
from gateway.sip.dialog import Dialog
from gateway.sip.message import SipRequest, make_response, parse_message
from gateway.sip.transaction import ServerTransaction

INVITE = (
    b"INVITE sip:bob@192.0.2.20 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKview1\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:alice@192.0.2.1>;tag=gw-b\r\n"
    b"To: <sip:bob@192.0.2.20>\r\n"
    b"Call-ID: view-1@192.0.2.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:gw@192.0.2.1:5060>\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def view_of_a_call() -> tuple[BInviteView, SipRequest, Call]:
    invite = parse_message(INVITE)
    assert isinstance(invite, SipRequest)
    pbx, trunk = PeerSettings(host="192.0.2.20"), PeerSettings(host="192.0.2.30")
    route = Route(TenantSettings(name="acme", pbx=pbx, trunk=trunk), "inbound", trunk, pbx)
    a = Leg(side="a", transport="udp", peer=("192.0.2.30", 5060), local_tag="gw-a", call_id="y")
    leg = Leg(side="b", transport="udp", peer=("192.0.2.20", 5060), local_tag="gw-b", call_id="x")
    leg.dialog = Dialog.from_uac(invite, make_response(invite, 200, to_tag="bob"))
    source = ("192.0.2.30", 5060)
    a_transaction = ServerTransaction(invite, ("z9hG4bKa", "INVITE"), source, source, False)
    call = Call("record-1", route, a, leg, invite, a_transaction, datetime.now(UTC), source)
    return BInviteView(call, invite), invite, call


def test_a_released_view_keeps_the_invite_as_bytes_and_the_leg_without_its_dialog() -> None:
    view, invite, call = view_of_a_call()
    assert view.request() is invite  # while the call lives, the parsed INVITE itself
    view.release()
    assert view.call is None and isinstance(view.invite, bytes)
    assert view.leg is not call.b and view.leg.dialog is None
    assert (view.leg.peer, view.leg.local_tag) == (call.b.peer, call.b.local_tag)
    assert not any(isinstance(kept, SipRequest) for kept in gc.get_referents(view))


def test_a_late_2xx_builds_its_dialog_from_the_invite_parsed_again() -> None:
    view, invite, _ = view_of_a_call()
    view.release()
    again = view.request()
    assert again is not invite
    assert bytes(again) == bytes(invite)
    late = make_response(again, 200, to_tag="fork-2")
    dialog = Dialog.from_uac(again, late)
    assert (dialog.call_id, dialog.local_tag, dialog.remote_tag) == (
        "view-1@192.0.2.1",
        "gw-b",
        "fork-2",
    )
