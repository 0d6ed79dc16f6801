"""The transaction layer (RFC 3261 17, RFC 6026) driven by a fake clock."""

from __future__ import annotations

import gc
import itertools

import pytest

from gateway.sip.errors import SipParseError
from gateway.sip.message import SipRequest, SipResponse, make_response, parse_message
from gateway.sip.timers import TimerConfig
from gateway.sip.transaction import (
    AckTimeout,
    CancelReceived,
    ClientTransaction,
    Event,
    RequestReceived,
    ResponseReceived,
    Send,
    ServerTransaction,
    TransactionLayer,
    TransactionState,
    TransactionTimeout,
    build_cancel,
    new_branch,
    new_call_id,
    new_tag,
)
from gateway.sip.uri import SipUri

PEER = ("192.0.2.10", 5060)
TIMERS = TimerConfig()  # T1 0.5, T2 4, T4 5


def raw_request(
    method: str = "INVITE",
    *,
    branch: str = "z9hG4bKclient1",
    cseq: int = 1,
    cseq_method: str | None = None,
    call_id: str = "call-1@192.0.2.10",
    from_tag: str = "caller-tag",
    to_tag: str | None = None,
    uri: str = "sip:bob@192.0.2.99",
    via_host: str = "192.0.2.10",
    via_params: str = "",
    extra_vias: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
) -> bytes:
    branch_param = f";branch={branch}" if branch else ""
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/UDP {via_host}:5060{branch_param}{via_params}",
        *(f"Via: {via}" for via in extra_vias),
        "Max-Forwards: 70",
        f'From: "Alice" <sip:alice@example.com>;tag={from_tag}',
        f"To: {to}",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} {cseq_method or method}",
        "Contact: <sip:alice@192.0.2.10:5060>",
        *extra,
        "Content-Length: 0",
        "",
        "",
    ]
    return "\r\n".join(lines).encode()


def request(method: str = "INVITE", **fields: object) -> SipRequest:
    message = parse_message(raw_request(method, **fields))  # type: ignore[arg-type]
    assert isinstance(message, SipRequest)
    return message


def response(req: SipRequest, status: int, to_tag: str | None = "callee-tag") -> SipResponse:
    """A response as the peer would send it, parsed back from the wire."""
    built = make_response(req, status, to_tag=to_tag)
    message = parse_message(bytes(built))
    assert isinstance(message, SipResponse)
    return message


def sends(events: list[Event]) -> list[Send]:
    return [event for event in events if isinstance(event, Send)]


def parsed(event: Event) -> SipRequest | SipResponse:
    """The message a Send event carries, parsed (a final response is kept as its bytes)."""
    assert isinstance(event, Send)
    return parse_message(bytes(event.message))


def only(events: list[Event], kind: type) -> list:
    return [event for event in events if isinstance(event, kind)]


def run_until(layer: TransactionLayer, end: float) -> list[tuple[float, Event]]:
    """Advance the fake clock from deadline to deadline up to ``end``."""
    fired: list[tuple[float, Event]] = []
    while (deadline := layer.next_deadline()) is not None and deadline <= end:
        fired.extend((deadline, event) for event in layer.tick(deadline))
    return fired


def send_times(fired: list[tuple[float, Event]]) -> list[float]:
    return [at for at, event in fired if isinstance(event, Send)]


# --------------------------------------------------------------------- timers


def test_timer_values_follow_table_4() -> None:
    timers = TimerConfig(t1=0.5, t2=4.0, t4=5.0)
    assert timers.timer_a == timers.timer_e == timers.timer_g == 0.5
    assert timers.timer_b == timers.timer_f == timers.timer_h == timers.timer_j == 32.0
    assert timers.timer_l == timers.timer_m == 32.0
    assert timers.timer_d(reliable=False) == 32.0 and timers.timer_d(reliable=True) == 0.0
    assert timers.timer_i == timers.timer_k == 5.0
    assert timers.for_transport(timers.timer_k, reliable=True) == 0.0
    assert [timers.next_interval(x) for x in (0.5, 1.0, 2.0, 4.0)] == [1.0, 2.0, 4.0, 4.0]
    assert TimerConfig(t1=1.0).timer_b == 64.0


def test_timer_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="T1"):
        TimerConfig(t1=0.0)
    with pytest.raises(ValueError, match="T2"):
        TimerConfig(t1=5.0, t2=4.0)


# ---------------------------------------------------------------- identifiers


def test_identifiers_are_fresh_and_well_formed() -> None:
    branches = {new_branch() for _ in range(200)}
    assert len(branches) == 200
    assert all(branch.startswith("z9hG4bK") and len(branch) > 12 for branch in branches)
    assert len({new_tag() for _ in range(200)}) == 200
    call_id = new_call_id("gw.example.com")
    assert call_id.endswith("@gw.example.com") and len(call_id) > len("@gw.example.com") + 8


# ---------------------------------------------------------- INVITE server side


def receive_invite(layer: TransactionLayer, now: float = 0.0, **fields: object):
    invite = request("INVITE", **fields)
    events = layer.receive(invite, PEER, now)
    return invite, events


def test_new_invite_gets_100_trying_then_goes_to_the_tu() -> None:
    layer = TransactionLayer(TIMERS)
    invite, events = receive_invite(layer)
    assert len(events) == 2
    trying, received = events
    assert isinstance(trying, Send) and isinstance(received, RequestReceived)
    assert trying.message.status == 100
    assert trying.message.to.tag is None
    assert trying.message.cseq.method == "INVITE"
    assert trying.dest == PEER and trying.reliable is False
    assert received.request is invite and received.source == PEER
    transaction = received.transaction
    assert isinstance(transaction, ServerTransaction)
    assert transaction.state is TransactionState.PROCEEDING
    assert transaction.method == "INVITE" and transaction.last_response is trying.message
    assert layer.server_count == 1


def test_retransmitted_invite_is_absorbed_and_the_last_response_resent() -> None:
    layer = TransactionLayer(TIMERS)
    _, events = receive_invite(layer)
    transaction = events[1].transaction
    again = layer.receive(request("INVITE"), PEER, 0.4)
    assert [send.message.status for send in sends(again)] == [100]
    assert not only(again, RequestReceived)
    ringing = make_response(transaction.request, 180, to_tag="uas-tag")
    assert sends(layer.send_response(transaction, ringing, 0.5))[0].message is ringing
    again = layer.receive(request("INVITE"), PEER, 1.0)
    assert [send.message for send in sends(again)] == [ringing]
    assert layer.server_count == 1


def test_response_goes_to_received_and_rport() -> None:
    layer = TransactionLayer(TIMERS)
    _, events = receive_invite(layer, via_params=";rport=40000;received=198.51.100.7")
    assert events[0].dest == ("198.51.100.7", 40000)


def test_reliable_transport_answers_on_the_connection() -> None:
    layer = TransactionLayer(TIMERS)
    source = ("198.51.100.7", 51234)
    events = layer.receive(request("INVITE"), source, 0.0, reliable=True)
    assert events[0].dest == source and events[0].reliable is True


def test_non_2xx_final_is_retransmitted_by_timer_g_until_timer_h() -> None:
    layer = TransactionLayer(TIMERS)
    _, events = receive_invite(layer)
    transaction = events[1].transaction
    busy = make_response(transaction.request, 486, to_tag="uas-tag")
    assert bytes(sends(layer.send_response(transaction, busy, 0.0))[0].message) == bytes(busy)
    assert transaction.state is TransactionState.COMPLETED
    fired = run_until(layer, 100.0)
    # G: T1, 2T1, 4T1, then capped at T2 (17.2.1); H at 64*T1 ends it
    times = send_times(fired)
    assert times[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]
    assert all(later - earlier == 4.0 for earlier, later in itertools.pairwise(times[3:]))
    assert times[-1] < 32.0
    assert all(bytes(event.message) == bytes(busy) for _, event in fired if isinstance(event, Send))
    assert not [event for _, event in fired if not isinstance(event, Send)]
    assert transaction.state is TransactionState.TERMINATED
    assert layer.server_count == 0
    assert layer.next_deadline() is None


def test_ack_for_non_2xx_is_absorbed_and_timer_i_ends_the_transaction() -> None:
    layer = TransactionLayer(TIMERS)
    invite, events = receive_invite(layer)
    transaction = events[1].transaction
    layer.send_response(transaction, make_response(invite, 404, to_tag="uas-tag"), 0.0)
    assert send_times(run_until(layer, 0.6)) == [0.5]
    ack = request("ACK", to_tag="uas-tag")
    assert layer.receive(ack, PEER, 0.7) == []
    assert transaction.state is TransactionState.CONFIRMED
    assert layer.next_deadline() == pytest.approx(0.7 + TIMERS.t4)
    # a retransmitted ACK and a retransmitted INVITE are absorbed in Confirmed
    assert layer.receive(request("ACK", to_tag="uas-tag"), PEER, 1.0) == []
    assert layer.receive(request("INVITE"), PEER, 1.1) == []
    assert run_until(layer, 5.65) == []
    assert layer.server_count == 1
    assert run_until(layer, 5.75) == []
    assert layer.server_count == 0


def test_reliable_non_2xx_is_not_retransmitted_and_ack_ends_it_at_once() -> None:
    layer = TransactionLayer(TIMERS)
    invite = request("INVITE")
    transaction = layer.receive(invite, PEER, 0.0, reliable=True)[1].transaction
    layer.send_response(transaction, make_response(invite, 603, to_tag="uas-tag"), 0.0)
    assert layer.next_deadline() == pytest.approx(TIMERS.timer_h)
    layer.receive(request("ACK", to_tag="uas-tag"), PEER, 0.2, reliable=True)
    assert transaction.state is TransactionState.TERMINATED
    assert layer.server_count == 0


def test_timer_h_on_reliable_transport_ends_without_retransmissions() -> None:
    layer = TransactionLayer(TIMERS)
    invite = request("INVITE")
    transaction = layer.receive(invite, PEER, 0.0, reliable=True)[1].transaction
    layer.send_response(transaction, make_response(invite, 480, to_tag="uas-tag"), 0.0)
    assert run_until(layer, 100.0) == []
    assert transaction.state is TransactionState.TERMINATED


def answer_invite(layer: TransactionLayer) -> tuple[ServerTransaction, SipResponse]:
    _, events = receive_invite(layer)
    transaction = events[1].transaction
    ok = make_response(transaction.request, 200, to_tag="uas-tag")
    assert bytes(sends(layer.send_response(transaction, ok, 0.0))[0].message) == bytes(ok)
    return transaction, ok


def test_2xx_is_retransmitted_until_the_ack_which_goes_to_the_tu() -> None:
    layer = TransactionLayer(TIMERS)
    transaction, ok = answer_invite(layer)
    assert transaction.state is TransactionState.ACCEPTED
    fired = run_until(layer, 4.0)
    assert send_times(fired) == [0.5, 1.5, 3.5]
    assert all(bytes(event.message) == bytes(ok) for _, event in fired)
    # the ACK for a 2xx is a new transaction: new branch, matched by its dialog
    ack = request("ACK", branch="z9hG4bKack2xx", to_tag="uas-tag")
    events = layer.receive(ack, PEER, 4.2)
    assert events == [RequestReceived(ack, PEER, None)]
    assert layer.receive(request("ACK", branch="z9hG4bKack2xx", to_tag="uas-tag"), PEER, 4.3) == []
    # no more 2xx retransmissions; Accepted absorbs the INVITE until timer L
    assert layer.receive(request("INVITE"), PEER, 5.0) == []
    assert send_times(run_until(layer, 100.0)) == []
    assert transaction.state is TransactionState.TERMINATED
    assert layer.server_count == 0


def test_invite_retransmission_before_the_ack_gets_the_2xx_again() -> None:
    layer = TransactionLayer(TIMERS)
    _, ok = answer_invite(layer)
    events = layer.receive(request("INVITE"), PEER, 0.1)
    assert [bytes(send.message) for send in sends(events)] == [bytes(ok)]
    assert not only(events, RequestReceived)


def test_2xx_retransmission_interval_caps_at_t2_and_ack_timeout_fires() -> None:
    layer = TransactionLayer(TIMERS)
    transaction, _ = answer_invite(layer)
    fired = run_until(layer, 100.0)
    times = send_times(fired)
    assert times[:5] == [0.5, 1.5, 3.5, 7.5, 11.5]
    assert all(later - earlier == 4.0 for earlier, later in itertools.pairwise(times[3:]))
    timeouts = [(at, event) for at, event in fired if isinstance(event, AckTimeout)]
    assert timeouts == [(64 * TIMERS.t1, AckTimeout(transaction))]
    assert times[-1] < 64 * TIMERS.t1
    assert layer.server_count == 0


def test_no_ack_timeout_once_acked() -> None:
    layer = TransactionLayer(TIMERS)
    answer_invite(layer)
    layer.receive(request("ACK", branch="z9hG4bKack", to_tag="uas-tag"), PEER, 1.0)
    assert not [event for _, event in run_until(layer, 100.0) if isinstance(event, AckTimeout)]


def test_ack_with_a_wrong_to_tag_is_not_the_2xx_ack() -> None:
    layer = TransactionLayer(TIMERS)
    answer_invite(layer)
    stray = request("ACK", branch="z9hG4bKack", to_tag="other-tag")
    assert layer.receive(stray, PEER, 1.0) == [RequestReceived(stray, PEER, None)]
    # the 2xx is still being retransmitted
    assert send_times(run_until(layer, 1.6)) == [0.5, 1.5]


def test_stray_ack_goes_to_the_tu_without_transaction() -> None:
    layer = TransactionLayer(TIMERS)
    ack = request("ACK", to_tag="nobody", call_id="unknown@x")
    assert layer.receive(ack, PEER, 0.0) == [RequestReceived(ack, PEER, None)]
    assert layer.server_count == 0


def test_2xx_is_retransmitted_end_to_end_even_over_a_reliable_transport() -> None:
    # 13.3.1.4 sets no transport condition: the 2xx may cross unreliable hops
    layer = TransactionLayer(TIMERS)
    invite = request("INVITE")
    transaction = layer.receive(invite, PEER, 0.0, reliable=True)[1].transaction
    layer.send_response(transaction, make_response(invite, 200, to_tag="uas-tag"), 0.0)
    fired = run_until(layer, 2.0)
    assert send_times(fired) == [0.5, 1.5]
    assert all(event.reliable for _, event in fired)


def test_second_final_response_is_dropped() -> None:
    layer = TransactionLayer(TIMERS)
    _, events = receive_invite(layer)
    transaction = events[1].transaction
    invite = transaction.request
    layer.send_response(transaction, make_response(invite, 200, to_tag="uas-tag"), 0.0)
    late = make_response(invite, 500, to_tag="uas-tag")
    assert layer.send_response(transaction, late, 0.1) == []
    assert transaction.last_response is not None
    assert parse_message(bytes(transaction.last_response)).status == 200


# ------------------------------------------------------------------- CANCEL


def test_cancel_for_a_pending_invite_is_answered_and_reported() -> None:
    layer = TransactionLayer(TIMERS)
    invite, events = receive_invite(layer)
    invite_transaction = events[1].transaction
    layer.send_response(invite_transaction, make_response(invite, 180, to_tag="uas-tag"), 0.1)
    cancel = request("CANCEL")
    events = layer.receive(cancel, PEER, 0.2)
    assert len(events) == 2
    ok, reported = events
    assert isinstance(ok, Send) and parsed(ok).status == 200
    assert parsed(ok).cseq.method == "CANCEL" and parsed(ok).cseq.seq == 1
    assert parsed(ok).to.tag == "uas-tag"  # 9.2: same To tag as the INVITE's responses
    assert reported == CancelReceived(cancel, invite_transaction)
    # the CANCEL is its own transaction: a retransmission gets the 200 again, no event
    again = layer.receive(request("CANCEL"), PEER, 0.3)
    assert [send.message for send in sends(again)] == [ok.message]
    assert not only(again, CancelReceived)
    # the INVITE transaction is untouched: the TU answers 487 itself
    assert invite_transaction.state is TransactionState.PROCEEDING
    terminated = make_response(invite, 487, to_tag="uas-tag")
    assert sends(layer.send_response(invite_transaction, terminated, 0.4))
    assert layer.server_count == 2


def test_cancel_matching_nothing_gets_481() -> None:
    layer = TransactionLayer(TIMERS)
    receive_invite(layer)
    cancel = request("CANCEL", branch="z9hG4bKother")
    events = layer.receive(cancel, PEER, 0.0)
    assert len(events) == 1
    assert parsed(events[0]).status == 481
    assert parsed(events[0]).cseq.method == "CANCEL"


def test_cancel_after_the_final_response_is_answered_without_event() -> None:
    layer = TransactionLayer(TIMERS)
    invite, events = receive_invite(layer)
    layer.send_response(events[1].transaction, make_response(invite, 486, to_tag="t"), 0.0)
    events = layer.receive(request("CANCEL"), PEER, 0.1)
    assert [parsed(send).status for send in sends(events)] == [200]
    assert [parsed(send).to_tag for send in sends(events)] == ["t"]  # the final's To tag
    assert not only(events, CancelReceived)


def test_cancel_from_another_sent_by_does_not_match() -> None:
    layer = TransactionLayer(TIMERS)
    receive_invite(layer)
    events = layer.receive(request("CANCEL", via_host="192.0.2.77"), PEER, 0.0)
    assert [parsed(send).status for send in sends(events)] == [481]


# ------------------------------------------------------- non-INVITE server


def test_non_invite_server_transaction() -> None:
    layer = TransactionLayer(TIMERS)
    options = request("OPTIONS", branch="z9hG4bKopt")
    events = layer.receive(options, PEER, 0.0)
    assert len(events) == 1 and isinstance(events[0], RequestReceived)
    transaction = events[0].transaction
    assert transaction.state is TransactionState.TRYING
    # Trying: retransmissions absorbed, no automatic 100
    assert layer.receive(request("OPTIONS", branch="z9hG4bKopt"), PEER, 0.5) == []
    ok = make_response(options, 200, to_tag="uas")
    assert bytes(sends(layer.send_response(transaction, ok, 1.0))[0].message) == bytes(ok)
    assert transaction.state is TransactionState.COMPLETED
    again = layer.receive(request("OPTIONS", branch="z9hG4bKopt"), PEER, 2.0)
    assert [bytes(send.message) for send in sends(again)] == [bytes(ok)]
    # timer J = 64*T1 on UDP, no retransmissions of its own
    assert run_until(layer, 1.0 + 64 * TIMERS.t1 - 0.01) == []
    assert layer.server_count == 1
    assert run_until(layer, 1.0 + 64 * TIMERS.t1) == []
    assert layer.server_count == 0


def test_non_invite_provisional_then_final() -> None:
    layer = TransactionLayer(TIMERS)
    bye = request("BYE", branch="z9hG4bKbye", to_tag="x")
    transaction = layer.receive(bye, PEER, 0.0)[0].transaction
    trying = make_response(bye, 100)
    layer.send_response(transaction, trying, 0.0)
    assert transaction.state is TransactionState.PROCEEDING
    assert [send.message for send in sends(layer.receive(bye, PEER, 0.1))] == [trying]


def test_non_invite_over_reliable_transport_ends_with_the_final() -> None:
    layer = TransactionLayer(TIMERS)
    bye = request("BYE", branch="z9hG4bKbye", to_tag="x")
    transaction = layer.receive(bye, PEER, 0.0, reliable=True)[0].transaction
    layer.send_response(transaction, make_response(bye, 200), 0.0)
    assert transaction.state is TransactionState.TERMINATED
    assert layer.server_count == 0
    assert layer.next_deadline() is None


def test_same_branch_different_method_is_a_different_transaction() -> None:
    layer = TransactionLayer(TIMERS)
    receive_invite(layer)
    events = layer.receive(request("OPTIONS"), PEER, 0.0)
    assert only(events, RequestReceived)
    assert layer.server_count == 2


# ------------------------------------------------------------ RFC 2543 peers


def test_rfc2543_invite_retransmission_and_ack_matched_without_cookie() -> None:
    layer = TransactionLayer(TIMERS)
    invite = request("INVITE", branch="")
    events = layer.receive(invite, PEER, 0.0)
    transaction = events[1].transaction
    assert transaction.key[0] == "2543"
    again = layer.receive(request("INVITE", branch=""), PEER, 0.5)
    assert [send.message.status for send in sends(again)] == [100]
    assert not only(again, RequestReceived)
    layer.send_response(transaction, make_response(invite, 486, to_tag="uas"), 1.0)
    # 17.2.3: an RFC 2543 ACK matches only with the To tag of the response sent
    stray = layer.receive(request("ACK", branch="", to_tag="other"), PEER, 1.05)
    assert [type(event) for event in stray] == [RequestReceived]
    assert transaction.state is TransactionState.COMPLETED
    assert layer.receive(request("ACK", branch="", to_tag="uas"), PEER, 1.1) == []
    assert transaction.state is TransactionState.CONFIRMED


def test_rfc2543_requests_differing_in_cseq_are_distinct() -> None:
    layer = TransactionLayer(TIMERS)
    layer.receive(request("INVITE", branch="1"), PEER, 0.0)
    events = layer.receive(request("INVITE", branch="1", cseq=2), PEER, 0.1)
    assert only(events, RequestReceived)
    assert layer.server_count == 2


# ------------------------------------------------------------- malformed input


def test_request_without_via_raises_a_clear_error_and_changes_nothing() -> None:
    layer = TransactionLayer(TIMERS)
    bare = SipRequest("OPTIONS", SipUri.parse("sip:gw@192.0.2.1"))
    bare.headers.add("Call-ID", "x@y")
    bare.headers.add("CSeq", "1 OPTIONS")
    with pytest.raises(SipParseError) as caught:
        layer.receive(bare, PEER, 0.0)
    assert "Via" in caught.value.reason
    assert layer.server_count == 0 and layer.next_deadline() is None


# ----------------------------------------------------------- INVITE client side


def send_invite(
    layer: TransactionLayer, reliable: bool = False, **fields: object
) -> tuple[ClientTransaction, list[Event]]:
    invite = request("INVITE", **fields)
    return layer.send_request(invite, PEER, 0.0, reliable=reliable)


def test_invite_client_retransmits_with_timer_a_until_timer_b() -> None:
    layer = TransactionLayer(TIMERS)
    transaction, events = send_invite(layer)
    assert events == [Send(transaction.request, PEER, False)]
    assert transaction.state is TransactionState.CALLING
    assert layer.next_deadline() == pytest.approx(TIMERS.t1)
    fired = run_until(layer, 100.0)
    # A doubles from T1 without a cap: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5; B at 64*T1
    assert send_times(fired) == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert all(
        event.message is transaction.request for _, event in fired if isinstance(event, Send)
    )
    timeouts = [(at, event) for at, event in fired if isinstance(event, TransactionTimeout)]
    assert timeouts == [(32.0, TransactionTimeout(transaction))]
    assert transaction.state is TransactionState.TERMINATED
    assert layer.client_count == 0


def test_invite_client_on_reliable_transport_only_times_out() -> None:
    layer = TransactionLayer(TIMERS)
    transaction, _ = send_invite(layer, reliable=True)
    fired = run_until(layer, 100.0)
    assert fired == [(32.0, TransactionTimeout(transaction))]


def test_provisional_stops_retransmission_and_timeout() -> None:
    layer = TransactionLayer(TIMERS)
    transaction, _ = send_invite(layer)
    run_until(layer, 0.5)
    trying = response(transaction.request, 100, to_tag=None)
    assert layer.receive(trying, PEER, 0.6) == [ResponseReceived(trying, transaction)]
    assert transaction.state is TransactionState.PROCEEDING
    assert layer.next_deadline() is None
    ringing = response(transaction.request, 180)
    assert layer.receive(ringing, PEER, 0.7) == [ResponseReceived(ringing, transaction)]
    # the same 180 again is not news; a 183 is
    assert layer.receive(response(transaction.request, 180), PEER, 0.8) == []
    progress = response(transaction.request, 183)
    assert layer.receive(progress, PEER, 0.9) == [ResponseReceived(progress, transaction)]
    assert run_until(layer, 1000.0) == []
    assert layer.client_count == 1


def test_non_2xx_final_is_acked_by_the_transaction() -> None:
    layer = TransactionLayer(TIMERS)
    invite = request(
        "INVITE",
        extra_vias=("SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKproxy",),
        extra=(
            "Route: <sip:proxy1.example.com;lr>",
            "Route: <sip:proxy2.example.com;lr>",
        ),
    )
    transaction, _ = layer.send_request(invite, PEER, 0.0)
    busy = response(invite, 486, to_tag="busy-tag")
    events = layer.receive(busy, PEER, 0.2)
    assert len(events) == 2
    ack_send, up = events
    assert up == ResponseReceived(busy, transaction)
    assert ack_send.dest == PEER and ack_send.reliable is False
    # 17.1.1.3, checked on the wire
    ack = parse_message(bytes(ack_send.message))
    assert isinstance(ack, SipRequest)
    assert ack.method == "ACK"
    assert str(ack.uri) == str(invite.uri)
    assert ack.call_id == invite.call_id
    assert str(ack.from_) == str(invite.from_)
    assert ack.to.tag == "busy-tag"
    assert str(ack.to.uri) == str(invite.to.uri)
    assert (ack.cseq.seq, ack.cseq.method) == (1, "ACK")
    assert len(ack.vias) == 1 and ack.top_via.branch == invite.top_via.branch
    assert ack.headers.get_all("Route") == invite.headers.get_all("Route")
    assert ack.body == b""
    assert transaction.state is TransactionState.COMPLETED
    assert transaction.request is None  # the ACK is kept as sent; nothing resends the INVITE


def test_retransmitted_non_2xx_gets_the_ack_again_until_timer_d() -> None:
    layer = TransactionLayer(TIMERS)
    transaction, _ = send_invite(layer)
    sent = transaction.request
    assert sent is not None
    events = layer.receive(response(sent, 404), PEER, 1.0)
    ack = sends(events)[0].message
    again = layer.receive(response(sent, 404), PEER, 2.0)
    assert again == [Send(ack, PEER, False)]
    assert layer.next_deadline() == pytest.approx(1.0 + 32.0)
    assert run_until(layer, 33.0) == []
    assert layer.client_count == 0
    # after timer D the response is a stray
    assert layer.receive(response(sent, 404), PEER, 34.0) == []


def test_non_2xx_on_reliable_transport_ends_the_transaction_at_once() -> None:
    layer = TransactionLayer(TIMERS)
    transaction, _ = send_invite(layer, reliable=True)
    events = layer.receive(response(transaction.request, 503), PEER, 1.0, reliable=True)
    assert sends(events)[0].reliable is True
    assert transaction.state is TransactionState.TERMINATED
    assert layer.client_count == 0


def ack_for(invite: SipRequest, to_tag: str, branch: str = "z9hG4bKack") -> SipRequest:
    return request(
        "ACK",
        branch=branch,
        cseq=invite.cseq.seq,
        call_id=invite.call_id,
        to_tag=to_tag,
        uri="sip:bob@192.0.2.20",
    )


def test_2xx_goes_up_once_and_retransmissions_resend_the_registered_ack() -> None:
    layer = TransactionLayer(TIMERS)
    transaction, _ = send_invite(layer)
    sent = transaction.request
    assert sent is not None
    ok = response(sent, 200, to_tag="uas")
    assert layer.receive(ok, PEER, 0.1) == [ResponseReceived(ok, transaction)]
    assert transaction.state is TransactionState.ACCEPTED
    assert transaction.request is None  # lingering for 64*T1, it keeps no parsed message
    # before the TU sent its ACK, a retransmission is absorbed silently
    assert layer.receive(response(sent, 200, to_tag="uas"), PEER, 0.2) == []
    ack = ack_for(sent, "uas")
    target = ("192.0.2.20", 5060)
    kept = bytes(ack)  # an ACK is only ever sent again as it was
    assert layer.send_ack(ack, target, 0.3) == [Send(kept, target, False)]
    assert layer.receive(response(sent, 200, to_tag="uas"), PEER, 0.6) == [
        Send(kept, target, False)
    ]
    # timer M ends the transaction; the remembered ACK still answers 2xx retransmissions
    run_until(layer, 0.1 + 64 * TIMERS.t1)
    assert layer.client_count == 0
    assert layer.receive(response(sent, 200, to_tag="uas"), PEER, 32.2) == [
        Send(kept, target, False)
    ]
    # until 64*T1 after the ACK was sent
    run_until(layer, 0.3 + 64 * TIMERS.t1)
    assert layer.ack_count == 0
    assert layer.receive(response(sent, 200, to_tag="uas"), PEER, 33.0) == []


def test_forked_2xx_with_another_tag_goes_up_too() -> None:
    layer = TransactionLayer(TIMERS)
    transaction, _ = send_invite(layer)
    sent = transaction.request
    assert sent is not None
    first = response(sent, 200, to_tag="fork-1")
    second = response(sent, 200, to_tag="fork-2")
    assert layer.receive(first, PEER, 0.1) == [ResponseReceived(first, transaction)]
    assert layer.receive(second, PEER, 0.2) == [ResponseReceived(second, transaction)]
    ack_1 = ack_for(sent, "fork-1", "z9hG4bKa1")
    ack_2 = ack_for(sent, "fork-2", "z9hG4bKa2")
    layer.send_ack(ack_1, PEER, 0.3)
    layer.send_ack(ack_2, PEER, 0.3)
    assert layer.receive(response(sent, 200, to_tag="fork-2"), PEER, 0.5) == [
        Send(bytes(ack_2), PEER, False)
    ]


def test_2xx_with_another_branch_matched_by_call_id_and_cseq() -> None:
    layer = TransactionLayer(TIMERS)
    transaction, _ = send_invite(layer)
    other_branch = request("INVITE", branch="z9hG4bKrewritten")
    ok = response(other_branch, 200, to_tag="uas")
    assert layer.receive(ok, PEER, 0.1) == [ResponseReceived(ok, transaction)]
    assert transaction.state is TransactionState.ACCEPTED


def test_2xx_after_a_non_2xx_final_is_dropped() -> None:
    layer = TransactionLayer(TIMERS)
    transaction, _ = send_invite(layer)
    sent = transaction.request
    assert sent is not None
    layer.receive(response(sent, 486, to_tag="a"), PEER, 0.1)
    assert layer.receive(response(sent, 200, to_tag="b"), PEER, 0.2) == []


def test_stray_responses_are_dropped() -> None:
    layer = TransactionLayer(TIMERS)
    send_invite(layer)
    unknown = request("INVITE", branch="z9hG4bKnobody", call_id="other@x")
    assert layer.receive(response(unknown, 200), PEER, 0.1) == []
    assert layer.receive(response(unknown, 180), PEER, 0.1) == []
    options = request("OPTIONS", branch="z9hG4bKnobody")
    assert layer.receive(response(options, 200), PEER, 0.1) == []


def test_send_request_refuses_what_is_not_a_transaction() -> None:
    layer = TransactionLayer(TIMERS)
    with pytest.raises(ValueError, match="send_ack"):
        layer.send_request(request("ACK", to_tag="x"), PEER, 0.0)
    with pytest.raises(ValueError, match="z9hG4bK"):
        layer.send_request(request("OPTIONS", branch="old-style"), PEER, 0.0)
    layer.send_request(request("OPTIONS"), PEER, 0.0)
    with pytest.raises(ValueError, match="already open"):
        layer.send_request(request("OPTIONS"), PEER, 0.0)
    assert layer.client_count == 1


# ------------------------------------------------------- non-INVITE client side


def test_non_invite_client_retransmits_with_timer_e_capped_at_t2() -> None:
    layer = TransactionLayer(TIMERS)
    transaction, _ = layer.send_request(request("BYE", to_tag="x"), PEER, 0.0)
    assert transaction.state is TransactionState.TRYING
    fired = run_until(layer, 100.0)
    times = send_times(fired)
    assert times[:6] == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5]
    assert times[-1] == 31.5
    timeouts = [(at, event) for at, event in fired if isinstance(event, TransactionTimeout)]
    assert timeouts == [(32.0, TransactionTimeout(transaction))]
    assert layer.client_count == 0


def test_non_invite_client_retransmits_at_t2_once_proceeding() -> None:
    layer = TransactionLayer(TIMERS)
    transaction, _ = layer.send_request(request("BYE", to_tag="x"), PEER, 0.0)
    trying = response(transaction.request, 100, to_tag=None)
    assert layer.receive(trying, PEER, 0.2) == [ResponseReceived(trying, transaction)]
    assert transaction.state is TransactionState.PROCEEDING
    assert send_times(run_until(layer, 13.0)) == [0.5, 4.5, 8.5, 12.5]


def test_non_invite_final_then_timer_k() -> None:
    layer = TransactionLayer(TIMERS)
    transaction, _ = layer.send_request(request("BYE", to_tag="x"), PEER, 0.0)
    sent = transaction.request
    assert sent is not None
    ok = response(sent, 200)
    assert layer.receive(ok, PEER, 0.2) == [ResponseReceived(ok, transaction)]
    assert transaction.request is None
    assert layer.next_deadline() == pytest.approx(0.2 + TIMERS.t4)
    # retransmissions of the final are absorbed; no more request retransmissions
    assert layer.receive(response(sent, 200), PEER, 1.0) == []
    assert run_until(layer, 100.0) == []
    assert layer.client_count == 0


def test_an_ended_transaction_is_held_by_no_timer_still_in_the_heap() -> None:
    """Timer F (64*T1) stays in the heap after the final response cancelled it, behind
    the timers of other transactions; the heap must not keep the ended transaction (its
    request, its handlers, the call behind them) alive until then, nor hold entries the
    cyclic collector has to walk."""
    layer = TransactionLayer(TIMERS)
    layer.send_request(request("INVITE", branch="z9hG4bKother"), PEER, 0.0)  # still calling
    transaction, _ = layer.send_request(request("BYE", to_tag="x"), PEER, 0.0)
    transaction.user_data = ("handlers of a call",)
    sent = transaction.request
    assert sent is not None
    layer.receive(response(sent, 200), PEER, 0.2)
    layer.tick(0.2 + TIMERS.t4 + 0.1)  # Timer K ends it; the INVITE's timers go on
    assert transaction.state is TransactionState.TERMINATED and layer.client_count == 1
    layer.next_deadline()
    stale = list(layer._heap)
    assert any(deadline >= TIMERS.timer_f for deadline, *_ in stale), "Timer F's entry"
    assert all(part is not transaction for entry in stale for part in entry)
    gc.collect()
    assert not any(gc.is_tracked(entry) for entry in stale)


def test_an_ack_record_sent_again_leaves_no_timer_of_the_one_it_replaces() -> None:
    layer = TransactionLayer(TIMERS)
    ack = request("ACK", to_tag="callee-tag", cseq_method="ACK")
    layer.send_ack(ack, PEER, 0.0)
    first = layer._acks[(ack.call_id, ack.cseq.seq, ack.to_tag)]
    layer.send_ack(ack, PEER, 1.0)
    second = layer._acks[(ack.call_id, ack.cseq.seq, ack.to_tag)]
    assert second is not first
    assert first not in layer._armed.values() and not first._timers
    assert list(layer._armed.values()) == [second]


def test_a_timer_set_again_fires_once_at_its_new_deadline() -> None:
    layer = TransactionLayer(TIMERS)
    transaction, _ = layer.send_request(request("BYE", to_tag="x"), PEER, 0.0)
    layer._set(transaction, "F", 1.0)
    layer._set(transaction, "F", 2.0)  # re-armed: the entry for 1.0 is stale
    assert layer.next_deadline() == pytest.approx(TIMERS.t1)  # Timer E comes first
    layer._cancel(transaction, "E")
    assert layer.next_deadline() == pytest.approx(2.0)
    assert layer.tick(1.5) == []
    assert [type(event) for event in layer.tick(2.0)] == [TransactionTimeout]
    assert layer.next_deadline() is None


def test_non_invite_reliable_sends_once_and_ends_on_the_final() -> None:
    layer = TransactionLayer(TIMERS)
    transaction, _ = layer.send_request(request("BYE", to_tag="x"), PEER, 0.0, reliable=True)
    assert layer.next_deadline() == pytest.approx(TIMERS.timer_f)
    layer.receive(response(transaction.request, 200), PEER, 0.2, reliable=True)
    assert transaction.state is TransactionState.TERMINATED
    assert layer.client_count == 0 and layer.next_deadline() is None


def test_send_stateless_only_wraps_a_send() -> None:
    layer = TransactionLayer(TIMERS)
    bad = make_response(request("OPTIONS"), 400, "Bad Request", to_tag="x")
    assert layer.send_stateless(bad, PEER, reliable=True) == [Send(bad, PEER, True)]
    assert layer.server_count == 0 and layer.next_deadline() is None


def test_user_data_is_the_tus() -> None:
    layer = TransactionLayer(TIMERS)
    transaction, _ = layer.send_request(request("BYE", to_tag="x"), PEER, 0.0)
    transaction.user_data = {"leg": "b"}
    event = layer.receive(response(transaction.request, 200), PEER, 0.1)[0]
    assert event.transaction.user_data == {"leg": "b"}


# ---------------------------------------------------------------- CANCEL (UAC)


def test_build_cancel_follows_9_1() -> None:
    invite = request(
        "INVITE",
        extra_vias=("SIP/2.0/UDP 198.51.100.1:5060;branch=z9hG4bKproxy",),
        extra=("Route: <sip:proxy.example.com;lr>",),
    )
    cancel = parse_message(bytes(build_cancel(invite)))
    assert isinstance(cancel, SipRequest)
    assert cancel.method == "CANCEL"
    assert str(cancel.uri) == str(invite.uri)
    assert cancel.call_id == invite.call_id
    assert str(cancel.from_) == str(invite.from_)
    assert str(cancel.to) == str(invite.to)
    assert (cancel.cseq.seq, cancel.cseq.method) == (invite.cseq.seq, "CANCEL")
    assert len(cancel.vias) == 1
    assert str(cancel.top_via) == str(invite.top_via)
    assert cancel.headers.get_all("Route") == invite.headers.get_all("Route")
    assert cancel.max_forwards == 70


def test_cancel_and_invite_are_separate_client_transactions() -> None:
    layer = TransactionLayer(TIMERS)
    invite_transaction, _ = send_invite(layer)
    layer.receive(response(invite_transaction.request, 180), PEER, 0.1)
    cancel_transaction, events = layer.send_request(
        build_cancel(invite_transaction.request), PEER, 0.2
    )
    assert events == [Send(cancel_transaction.request, PEER, False)]
    assert layer.client_count == 2
    cancel_ok = response(cancel_transaction.request, 200)
    assert layer.receive(cancel_ok, PEER, 0.3) == [ResponseReceived(cancel_ok, cancel_transaction)]
    terminated = response(invite_transaction.request, 487)
    events = layer.receive(terminated, PEER, 0.4)
    assert only(events, ResponseReceived) == [ResponseReceived(terminated, invite_transaction)]
    assert parsed(sends(events)[0]).method == "ACK"


def test_a_cancelled_invite_without_a_final_response_ends_after_64_t1() -> None:
    """RFC 3261 9.1: no final response 64*T1 after the CANCEL: the INVITE counts as
    cancelled and its client transaction ends (Timer B stopped at the 180)."""
    layer = TransactionLayer(TIMERS)
    invite_transaction, _ = send_invite(layer)
    layer.receive(response(invite_transaction.request, 180), PEER, 0.1)
    cancel_transaction, _ = layer.send_request(build_cancel(invite_transaction.request), PEER, 1.0)
    layer.receive(response(cancel_transaction.request, 200), PEER, 1.1)
    fired = run_until(layer, 100.0)
    timeouts = [(at, event) for at, event in fired if isinstance(event, TransactionTimeout)]
    assert timeouts == [(1.0 + 64 * TIMERS.t1, TransactionTimeout(invite_transaction))]
    assert invite_transaction.state is TransactionState.TERMINATED
    assert layer.client_count == 0


def test_a_final_response_after_the_cancel_stops_the_cancel_wait() -> None:
    layer = TransactionLayer(TIMERS)
    invite_transaction, _ = send_invite(layer)
    invite = invite_transaction.request
    assert invite is not None
    layer.receive(response(invite, 180), PEER, 0.1)
    layer.send_request(build_cancel(invite), PEER, 1.0)
    layer.receive(response(invite, 487), PEER, 2.0)
    fired = run_until(layer, 100.0)
    assert TransactionTimeout(invite_transaction) not in [event for _, event in fired]
    assert invite_transaction.state is TransactionState.TERMINATED  # by Timer D


def test_build_cancel_only_for_invite() -> None:
    with pytest.raises(ValueError):
        build_cancel(request("OPTIONS"))


# ------------------------------------------------------------------- deadlines


def test_next_deadline_tracks_the_earliest_live_timer() -> None:
    layer = TransactionLayer(TIMERS)
    assert layer.next_deadline() is None
    options, _ = layer.send_request(request("OPTIONS", branch="z9hG4bKo"), PEER, 10.0)
    assert layer.next_deadline() == pytest.approx(10.5)
    invite, _ = send_invite(layer)  # sent at 0.0: its timer A is earlier
    assert layer.next_deadline() == pytest.approx(0.5)
    layer.receive(response(invite.request, 180), PEER, 0.1)
    assert layer.next_deadline() == pytest.approx(10.5)
    layer.receive(response(options.request, 200), PEER, 10.1)
    assert layer.next_deadline() == pytest.approx(10.1 + TIMERS.t4)
    assert layer.tick(10.0) == []


def test_custom_timer_values_scale_everything() -> None:
    layer = TransactionLayer(TimerConfig(t1=0.1, t2=0.4, t4=1.0))
    layer.send_request(request("OPTIONS"), PEER, 0.0)
    fired = run_until(layer, 10.0)
    assert send_times(fired)[:4] == pytest.approx([0.1, 0.3, 0.7, 1.1])
    assert [at for at, event in fired if isinstance(event, TransactionTimeout)] == [
        pytest.approx(6.4)
    ]


# ------------------------------------------------------- two layers, one wire


def test_uac_and_uas_layers_recover_a_lost_2xx_over_the_wire() -> None:
    """A UAC layer and a UAS layer exchange bytes; the first 2xx is lost."""
    uac, uas = TransactionLayer(TIMERS), TransactionLayer(TIMERS)
    uac_addr, uas_addr = ("192.0.2.10", 5060), ("192.0.2.99", 5060)
    tu_events: list[tuple[str, Event]] = []
    dropped: list[bytes] = []

    def deliver(events: list[Event], sender: str, now: float) -> None:
        for event in events:
            if not isinstance(event, Send):
                tu_events.append((sender, event))
                continue
            data = bytes(event.message)
            if b"SIP/2.0 200" in data.split(b"\r\n", 1)[0] and not dropped:
                dropped.append(data)
                continue
            receiver, source = (uas, uac_addr) if sender == "uac" else (uac, uas_addr)
            name = "uas" if sender == "uac" else "uac"
            deliver(receiver.receive(parse_message(data), source, now), name, now)

    _, events = uac.send_request(request("INVITE"), uas_addr, 0.0)
    deliver(events, "uac", 0.0)
    server = next(e for who, e in tu_events if who == "uas" and isinstance(e, RequestReceived))
    ok = make_response(server.request, 200, to_tag="uas-tag")
    deliver(uas.send_response(server.transaction, ok, 0.1), "uas", 0.1)
    assert dropped  # the first 2xx never arrived
    # the UAS retransmits the 2xx at T1; the UAC's TU sees it and sends its ACK
    deliver(uas.tick(0.6), "uas", 0.6)
    answers = [e for who, e in tu_events if who == "uac" and isinstance(e, ResponseReceived)]
    assert [event.response.status for event in answers] == [100, 200]
    ack = request("ACK", branch="z9hG4bKack", to_tag="uas-tag", uri="sip:alice@192.0.2.10")
    deliver(uac.send_ack(ack, uas_addr, 0.7), "uac", 0.7)
    acks = [e for who, e in tu_events if who == "uas" and isinstance(e, RequestReceived)]
    assert [event.request.method for event in acks] == ["INVITE", "ACK"]
    assert acks[1].transaction is None
    # nothing more is retransmitted: the UAS saw the ACK, the UAC got its final
    for now in (1.6, 3.6, 40.0):
        deliver(uas.tick(now), "uas", now)
        deliver(uac.tick(now), "uac", now)
    assert not [e for _, e in tu_events if isinstance(e, AckTimeout | TransactionTimeout)]
    assert uac.client_count == 0 and uas.server_count == 0
