"""Multipart bodies (gateway/sip/multipart.py, RFC 2046 5.1)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sip.errors import SipParseError
from gateway.sip.multipart import BodyPart, Multipart, boundary_of, parse_multipart

TYPE = "multipart/mixed; boundary=b1"


def test_boundary_parameter() -> None:
    assert boundary_of('multipart/mixed;boundary="a b"') == "a b"
    assert boundary_of("multipart/related; type=x; BOUNDARY=zz") == "zz"
    assert boundary_of("application/sdp") is None
    assert boundary_of("multipart/mixed") is None


def test_parts_headers_preamble_and_epilogue() -> None:
    body = (
        b"preamble\r\n--b1\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n"
        b"\r\n--b1\r\nContent-Type: text/plain\r\n  ;charset=utf-8\r\n\r\nhi"
        b"\r\n--b1--\r\nepilogue"
    )
    parsed = parse_multipart(TYPE, body)
    assert parsed.preamble == b"preamble"
    assert [p.content_type for p in parsed.parts] == ["application/sdp", "text/plain"]
    assert parsed.parts[0].body == b"v=0\r\n"
    assert parsed.parts[1].headers == [("Content-Type", "text/plain ;charset=utf-8")]
    assert parsed.epilogue == b"epilogue"


def test_part_without_headers_defaults_to_text_plain() -> None:
    parsed = parse_multipart(TYPE, b"--b1\r\n\r\nplain\r\n--b1--")
    assert parsed.parts[0].content_type == "text/plain"
    assert parsed.parts[0].body == b"plain"


@pytest.mark.parametrize(
    "body",
    [
        b"no boundary at all",
        b"--b1\r\nContent-Type: a/b\r\n\r\nunterminated",
        b"--b1garbage\r\n\r\nx\r\n--b1--",
        b"--b1\r\nnot a header line\r\n\r\nx\r\n--b1--",
    ],
)
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(SipParseError):
        parse_multipart(TYPE, body)


def test_missing_boundary_parameter_is_refused() -> None:
    with pytest.raises(SipParseError, match="boundary"):
        parse_multipart("multipart/mixed", b"--b1\r\n\r\nx\r\n--b1--")


payloads = st.binary(max_size=200).filter(lambda b: b"--b1" not in b and b"\n" not in b)


@given(st.lists(payloads, min_size=1, max_size=4), payloads)
def test_round_trip(bodies: list[bytes], epilogue: bytes) -> None:
    original = Multipart(
        "b1", [BodyPart([("Content-Type", "application/x")], b) for b in bodies], b"", epilogue
    )
    parsed = parse_multipart(TYPE, bytes(original))
    assert [p.body for p in parsed.parts] == bodies
    assert parsed.epilogue == epilogue


@given(st.binary(max_size=300))
def test_random_bytes_only_raise_parse_errors(data: bytes) -> None:
    with contextlib.suppress(SipParseError):
        parse_multipart(TYPE, data)


def test_bare_lf_framing_is_read() -> None:
    parsed = parse_multipart(TYPE, b"--b1\nContent-Type: application/sdp\n\nv=0\n--b1--\n")
    assert parsed.parts[0].body == b"v=0"
