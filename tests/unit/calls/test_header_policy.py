"""Headers that cross the B2BUA (gateway/calls/header_policy.py)."""

from __future__ import annotations

from gateway.calls.disposition import for_failure
from gateway.calls.header_policy import REQUEST_HEADERS, copy_headers
from gateway.sip.message import Headers


def test_identity_and_credentials_cross_but_dialog_headers_do_not() -> None:
    source = Headers()
    source.add("Via", "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1")
    source.add("Record-Route", "<sip:10.0.0.9;lr>")
    source.add("P-Asserted-Identity", "<sip:+12125550100@pbx>")
    source.add("Proxy-Authorization", 'Digest username="a", realm="r", response="x"')
    target = Headers()
    copy_headers(source, target, REQUEST_HEADERS)
    assert target.get("P-Asserted-Identity") == "<sip:+12125550100@pbx>"
    assert target.get("Proxy-Authorization", "").startswith("Digest username")
    assert target.get("Via") is None
    assert target.get("Record-Route") is None


def test_reliable_provisionals_are_not_offered_across() -> None:
    source = Headers()
    source.add("Supported", "100rel, timer, replaces")
    source.add("Require", "100rel")
    target = Headers()
    copy_headers(source, target, REQUEST_HEADERS)
    assert [v.strip() for v in target.get_all("Supported")] == ["timer", "replaces"]
    assert target.get("Require") is None


def test_failure_dispositions() -> None:
    assert for_failure(486) == "busy"
    assert for_failure(600) == "busy"
    assert for_failure(480) == "no_answer"
    assert for_failure(408) == "no_answer"
    assert for_failure(487) == "cancelled"
    assert for_failure(503) == "failed"
    assert for_failure(404) == "rejected"
    assert for_failure(603) == "rejected"
    assert for_failure(407) == "rejected"
