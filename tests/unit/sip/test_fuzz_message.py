"""Property tests: malformed input only ever raises SipParseError; valid messages round-trip."""

from __future__ import annotations

import string
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.sip.errors import SipParseError
from gateway.sip.framing import StreamFramer
from gateway.sip.headers import CSeq, Via
from gateway.sip.message import Headers, SipRequest, SipResponse, make_response, parse_message
from gateway.sip.uri import NameAddr, SipUri

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# For properties whose examples are whole generated messages (slower to draw).
FUZZ_MESSAGES = settings(FUZZ, max_examples=120)

TORTURE = Path(__file__).parent / "torture"
SEEDS = [
    (TORTURE / f"{name}.dat").read_bytes()
    for name in ("wsinv", "intmeth", "esc01", "longreq", "mpart01", "unreason", "transports")
] + [
    b"INVITE sip:bob@[2001:db8::2]:5070;transport=tcp SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP [2001:db8::1]:5060;branch=z9hG4bK77;rport, SIP/2.0/UDP p;branch=z9hG4bK1\r\n"
    b"Max-Forwards: 70\r\nTo: <sip:bob@example.com>\r\n"
    b'From: "A, \\"B\\"" <sip:a@example.com>;tag=9\r\n'
    b"Call-ID: fz@example.com\r\nCSeq: 1 INVITE\r\n"
    b"Contact: <sip:a@[2001:db8::1]>;expires=60, B <sip:b@h>\r\n"
    b"Record-Route: <sip:p1;lr>\r\nContent-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"
]


def exercise(message: SipRequest | SipResponse) -> None:
    """Everything a caller may touch on a parsed message: validated, so none may fail."""
    _ = (message.call_id, message.cseq, message.vias, message.top_via, message.from_)
    _ = (message.to, message.contacts, message.routes, message.record_routes)
    _ = (message.max_forwards, message.content_type, message.headers.items())
    for name, _value in message.headers:
        message.headers.get_all(name)
    data = bytes(message)
    again = parse_message(data)
    assert bytes(again) == data
    copied = Headers()
    for name, value in message.headers:
        copied.add(name, value)  # every parsed field can be copied into another message
    assert copied == message.headers
    if isinstance(message, SipRequest):
        response = make_response(message, 400, "Bad Request", to_tag="x1")
        assert parse_message(bytes(response)).call_id == message.call_id


def parse_or_reject(data: bytes) -> None:
    try:
        message = parse_message(data)
    except SipParseError as error:
        assert error.reason
        assert error.status in (400, 416, 505)
        if error.partial is not None:
            make_response(error.partial, error.status, error.reason[:120], to_tag="t")
        return
    exercise(message)


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes_only_raise_sip_parse_errors(data: bytes) -> None:
    parse_or_reject(data)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes_after_a_start_line(data: bytes) -> None:
    parse_or_reject(b"INVITE sip:a@b SIP/2.0\r\n" + data)
    parse_or_reject(b"SIP/2.0 200 OK\r\n" + data)


_MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("delete"), st.integers(0, 10**6), st.integers(1, 40)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=12)),
    st.tuples(
        st.just("insert"),
        st.integers(0, 10**6),
        st.sampled_from(
            [b"\r\n", b"\n ", b"\r", b'"', b"<", b">", b";", b",", b":", b"%", b"\x00"]
        ),
    ),
    st.tuples(st.just("truncate"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("dupline"), st.integers(0, 10**6), st.just(0)),
)


def mutate(data: bytes, mutations: list[tuple[str, int, object]]) -> bytes:
    buffer = bytearray(data)
    for kind, where, arg in mutations:
        if not buffer:
            break
        at = where % len(buffer)
        if kind == "flip":
            buffer[at] = int(arg)  # type: ignore[call-overload]
        elif kind == "delete":
            del buffer[at : at + int(arg)]  # type: ignore[call-overload]
        elif kind == "insert":
            buffer[at:at] = arg  # type: ignore[assignment]
        elif kind == "truncate":
            del buffer[at:]
        else:
            lines = bytes(buffer).split(b"\r\n")
            line = lines[at % len(lines)]
            lines.insert(at % len(lines), line)
            buffer = bytearray(b"\r\n".join(lines))
    return bytes(buffer)


@FUZZ
@given(st.sampled_from(SEEDS), st.lists(_MUTATION, min_size=1, max_size=4))
def test_mutated_messages_only_raise_sip_parse_errors(seed: bytes, mutations: list) -> None:  # type: ignore[type-arg]
    parse_or_reject(mutate(seed, mutations))


# -- generated valid messages ------------------------------------------------------------

TOKEN = st.text(
    alphabet=string.ascii_letters + string.digits + "-.!%*_+`'~", min_size=1, max_size=12
)
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=20
)
ANY_TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
LABEL = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=8)
HOSTNAME = st.lists(LABEL, min_size=1, max_size=4).map(".".join)
IPV4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda parts: ".".join(map(str, parts)))
IPV6 = st.ip_addresses(v=6).map(str)
HOST = st.one_of(HOSTNAME, IPV4, IPV6)
PORT = st.none() | st.integers(1, 65535)
PARAM_NAME = st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=1, max_size=8)
URI_PARAMS = st.dictionaries(PARAM_NAME, st.none() | ANY_TEXT, max_size=3)
HEADER_PARAMS = st.dictionaries(
    PARAM_NAME.filter(lambda n: n != "tag"), st.none() | TOKEN, max_size=3
)


@st.composite
def sip_uris(draw: st.DrawFn) -> SipUri:
    user = draw(st.none() | ANY_TEXT)
    password = draw(st.none() | ANY_TEXT) if user is not None else None
    return SipUri(
        draw(st.sampled_from(["sip", "sips"])),
        user,
        password,
        draw(HOST),
        draw(PORT),
        draw(URI_PARAMS),
        draw(st.dictionaries(ANY_TEXT, st.text(max_size=8), max_size=2)),
    )


@st.composite
def name_addrs(draw: st.DrawFn, tag: bool) -> NameAddr:
    uri = draw(sip_uris())
    params = draw(HEADER_PARAMS)
    if tag:
        params["tag"] = draw(TOKEN)
    return NameAddr(draw(st.none() | TEXT), uri, params)


@st.composite
def vias(draw: st.DrawFn) -> Via:
    params: dict[str, str | None] = {"branch": "z9hG4bK" + draw(TOKEN)}
    if draw(st.booleans()):
        params["rport"] = draw(st.none() | st.integers(1, 65535).map(str))
    if draw(st.booleans()):
        params["received"] = draw(st.one_of(IPV4, IPV6))
    return Via(draw(st.sampled_from(["UDP", "TCP", "TLS", "SCTP"])), draw(HOST), draw(PORT), params)


@st.composite
def requests(draw: st.DrawFn) -> SipRequest:
    method = draw(st.sampled_from(["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"]) | TOKEN)
    request = SipRequest(method, draw(sip_uris()))
    request.uri.headers = {}  # RFC 3261 19.1.1: no headers in a Request-URI
    for via in draw(st.lists(vias(), min_size=1, max_size=3)):
        request.headers.add("Via", str(via))
    request.headers.add("Max-Forwards", str(draw(st.integers(0, 255))))
    request.headers.add("From", str(draw(name_addrs(tag=True))))
    request.headers.add("To", str(draw(name_addrs(tag=draw(st.booleans())))))
    request.headers.add("Call-ID", draw(TOKEN) + "@" + draw(HOSTNAME))
    request.headers.add("CSeq", str(CSeq(draw(st.integers(0, 2**31 - 1)), method)))
    for contact in draw(st.lists(name_addrs(tag=False), max_size=2)):
        request.headers.add("Contact", str(contact))
    request.headers.add("Subject", draw(TEXT))
    request.body = draw(st.binary(max_size=200))
    if request.body:
        request.headers.add("Content-Type", "application/octet-stream")
    return request


@FUZZ_MESSAGES
@given(requests())
def test_generated_requests_round_trip(request: SipRequest) -> None:
    parsed = parse_message(bytes(request))
    assert isinstance(parsed, SipRequest)
    assert parsed.method == request.method
    assert parsed.uri == request.uri
    assert parsed.call_id == request.call_id
    assert parsed.cseq == request.cseq
    assert parsed.vias == request.vias
    assert parsed.from_ == request.from_
    assert parsed.to == request.to
    assert parsed.contacts == request.contacts
    assert parsed.headers.get("Subject") == request.headers.get("Subject")
    assert parsed.body == request.body
    assert bytes(parse_message(bytes(parsed))) == bytes(parsed)
    exercise(parsed)


@FUZZ_MESSAGES
@given(requests(), st.integers(100, 699), st.none() | TEXT, TOKEN, st.binary(max_size=50))
def test_generated_responses_round_trip(
    request: SipRequest, status: int, reason: str | None, tag: str, body: bytes
) -> None:
    response = make_response(request, status, reason, to_tag=tag, body=body)
    parsed = parse_message(bytes(response))
    assert isinstance(parsed, SipResponse)
    assert parsed.status == status
    assert parsed.reason == response.reason
    assert parsed.vias == request.vias
    assert parsed.to.tag == (request.to.tag or (tag if status != 100 else None))
    assert parsed.body == body
    exercise(parsed)


@FUZZ
@given(name_addrs(tag=True))
def test_name_addr_round_trip_and_fast_path_agrees(address: NameAddr) -> None:
    text = str(address)
    assert NameAddr.parse(text) == address
    assert NameAddr._parse_full(text) == address


@FUZZ
@given(st.text(alphabet=' "<>;=,:@\\abc[]%1.\t', max_size=40))
def test_name_addr_fast_and_full_parsers_agree_on_odd_input(text: str) -> None:
    for candidate in (text, "sip:a@b" + text, '"x"' + text + "<sip:h>", "<sip:h>" + text):
        try:
            fast: NameAddr | SipParseError = NameAddr.parse(candidate)
        except SipParseError as error:
            fast = error
        try:
            full: NameAddr | SipParseError = NameAddr._parse_full(candidate)
        except SipParseError as error:
            full = error
        assert type(fast) is type(full)
        if isinstance(fast, NameAddr):
            assert fast == full


@FUZZ
@given(vias())
def test_via_round_trip_and_fast_path_agrees(via: Via) -> None:
    text = str(via)
    assert Via.parse(text) == via
    assert Via._parse_full(text) == via


@FUZZ
@given(sip_uris())
def test_uri_round_trip(uri: SipUri) -> None:
    assert SipUri.parse(str(uri)) == uri


# -- stream framing ----------------------------------------------------------------


# Whole messages as a stream carries them: re-serialized, so each has Content-Length.
FRAMEABLE = [bytes(parse_message(seed)) for seed in SEEDS]


@FUZZ
@given(
    st.lists(st.sampled_from(FRAMEABLE), min_size=1, max_size=4),
    st.lists(st.integers(1, 200), min_size=1, max_size=20),
    st.integers(0, 3),
)
def test_framer_reassembles_any_chunking(wire: list[bytes], sizes: list[int], pings: int) -> None:
    stream = (b"\r\n\r\n" * pings).join(wire)
    framer = StreamFramer()
    out: list[bytes] = []
    position = 0
    index = 0
    while position < len(stream):
        size = sizes[index % len(sizes)]
        out += framer.feed(stream[position : position + size])
        position += size
        index += 1
    assert out == wire
    assert framer.pings_received == pings * (len(wire) - 1)


@FUZZ
@given(st.lists(st.binary(max_size=100), max_size=8))
def test_framer_only_raises_sip_parse_errors(chunks: list[bytes]) -> None:
    framer = StreamFramer(max_message_bytes=2048)
    try:
        for chunk in chunks:
            for message in framer.feed(chunk):
                parse_or_reject(message)
    except SipParseError as error:
        assert error.reason
