"""SIP/SIPS/tel URIs, name-addr values and header lists (RFC 3261 19.1, 20.10, 7.3.1)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.sip.errors import SipParseError
from gateway.sip.uri import (
    TOKEN_RE,
    NameAddr,
    SipUri,
    is_token,
    parse_name_addr_list,
    split_header_list,
)

# -- SipUri -------------------------------------------------------------------------


def test_parses_every_part_of_a_full_sip_uri() -> None:
    uri = SipUri.parse(
        "sips:alice:secret@atlanta.example.com:5061;transport=TCP;lr?subject=hi&to=x"
    )
    assert uri.scheme == "sips"
    assert uri.user == "alice"
    assert uri.password == "secret"
    assert uri.host == "atlanta.example.com"
    assert uri.port == 5061
    assert uri.params == {"transport": "TCP", "lr": None}
    assert uri.headers == {"subject": "hi", "to": "x"}
    assert uri.transport == "tcp"


def test_minimal_uri_has_no_optional_parts() -> None:
    uri = SipUri.parse("sip:example.com")
    assert (uri.user, uri.password, uri.port, uri.params, uri.headers) == (None, None, None, {}, {})
    assert uri.transport is None
    assert str(uri) == "sip:example.com"


def test_scheme_and_parameter_names_are_lowercased_values_kept() -> None:
    uri = SipUri.parse("SIP:bob@Example.COM;Transport=UDP;MAddr=Host.Example")
    assert uri.scheme == "sip"
    assert uri.host == "Example.COM"
    assert uri.params == {"transport": "UDP", "maddr": "Host.Example"}


def test_parameter_order_is_kept() -> None:
    uri = SipUri.parse("sip:h;b=1;a;c=3")
    assert list(uri.params) == ["b", "a", "c"]
    assert str(uri) == "sip:h;b=1;a;c=3"


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("sip:alice@[2001:db8::10]:5070", "2001:db8::10", 5070),
        ("sip:[::1]", "::1", None),
        ("sip:bob@[2001:db8::192.0.2.1];transport=udp", "2001:db8::192.0.2.1", None),
        ("sip:192.0.2.4:5060", "192.0.2.4", 5060),
    ],
)
def test_ip_hosts_ipv6_without_brackets(text: str, host: str, port: int | None) -> None:
    uri = SipUri.parse(text)
    assert (uri.host, uri.port) == (host, port)
    assert str(uri) == text


def test_str_adds_brackets_to_an_ipv6_host() -> None:
    uri = SipUri("sip", "carol", None, "2001:db8::1", 5060, {"transport": "tcp"}, {})
    assert str(uri) == "sip:carol@[2001:db8::1]:5060;transport=tcp"


def test_escaped_characters_are_decoded_and_reescaped() -> None:
    uri = SipUri.parse("sip:%75se%72@example.com;n%61me=v%61lue%25%34%31")
    assert uri.user == "user"
    assert uri.params == {"name": "value%41"}
    assert str(uri) == "sip:user@example.com;name=value%2541"


def test_user_with_characters_needing_escapes_round_trips() -> None:
    uri = SipUri.parse("sip:I%20have%20spaces%40home@example.net")
    assert uri.user == "I have spaces@home"
    assert str(uri) == "sip:I%20have%20spaces%40home@example.net"
    assert SipUri.parse(str(uri)) == uri


def test_escaped_nul_survives_a_round_trip() -> None:
    uri = SipUri.parse("sip:null-%00-null@example.com")
    assert uri.user == "null-\x00-null"
    assert str(uri) == "sip:null-%00-null@example.com"


def test_non_utf8_escapes_round_trip_byte_for_byte() -> None:
    uri = SipUri.parse("sip:a%FFb@example.com")
    assert str(uri) == "sip:a%FFb@example.com"


def test_user_part_may_hold_semicolons_and_question_marks() -> None:
    # RFC 4475 3.1.1.9: the user part is "user;par=u@example.net".
    uri = SipUri.parse("sip:user;par=u%40example.net@example.com")
    assert uri.user == "user;par=u@example.net"
    assert uri.host == "example.com"
    assert uri.params == {}


def test_uri_headers_are_decoded() -> None:
    uri = SipUri.parse("sip:user@example.com?Route=%3Csip:sip.example.com%3E")
    assert uri.headers == {"Route": "<sip:sip.example.com>"}
    assert str(uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"


def test_tel_uri_keeps_the_number_in_host() -> None:
    uri = SipUri.parse("tel:+1-201-555-0123;phone-context=example.com")
    assert (uri.scheme, uri.host, uri.user, uri.port) == ("tel", "+1-201-555-0123", None, None)
    assert uri.params == {"phone-context": "example.com"}
    assert str(uri) == "tel:+1-201-555-0123;phone-context=example.com"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "sip:",
        "sip:@example.com",
        "sip:bob@",
        "sip:bob@exa mple.com",
        "sip:bob@example.com:99999",
        "sip:bob@example.com:50x0",
        "sip:bob@[2001:db8::1",
        "sip:bob@[not-ipv6]",
        "sip:bob@[1:2:3:4:5:6:7:8:9]",
        "sip:bob@example.com;",
        "sip:bob@example.com;;lr",
        "sip:bob@example.com;a=",
        "sip:bob@example.com;a=b=c",
        "sip:bob%2@example.com",
        "sip:bob%zz@example.com",
        "sip:b<o>b@example.com",
        "<sip:bob@example.com>",
        "sip:bob@example.com?novalue",
        "tel:",
        "tel:+1 555",
        ":foo",
        "1sip:x",
    ],
)
def test_malformed_uris_raise(text: str) -> None:
    with pytest.raises(SipParseError) as raised:
        SipUri.parse(text)
    assert raised.value.status == 400
    assert raised.value.reason


@pytest.mark.parametrize("text", ["http://www.example.com", "isbn:2983792873", "mailto:a@b"])
def test_unknown_scheme_asks_for_416(text: str) -> None:
    with pytest.raises(SipParseError) as raised:
        SipUri.parse(text)
    assert raised.value.status == 416  # RFC 3261 8.2.2.1
    assert raised.value.reason == "Unsupported URI Scheme"


def test_with_params_and_copy_do_not_share_state() -> None:
    uri = SipUri.parse("sip:bob@example.com;transport=udp")
    updated = uri.with_params({"Transport": "tcp", "lr": None})
    assert updated.params == {"transport": "tcp", "lr": None}
    assert uri.params == {"transport": "udp"}
    dropped = updated.without_params("LR")
    assert dropped.params == {"transport": "tcp"}
    copied = uri.copy()
    copied.params["x"] = "1"
    assert "x" not in uri.params


# -- NameAddr ------------------------------------------------------------------------


def test_quoted_display_name_with_escaped_quote_and_comma() -> None:
    address = NameAddr.parse('"Bob \\"The Builder\\", Jr" <sip:bob@biloxi.example.com>;tag=a6c85cf')
    assert address.display_name == 'Bob "The Builder", Jr'
    assert address.uri.user == "bob"
    assert address.tag == "a6c85cf"
    assert str(address) == '"Bob \\"The Builder\\", Jr" <sip:bob@biloxi.example.com>;tag=a6c85cf'


def test_escaped_backslash_in_display_name() -> None:
    address = NameAddr.parse('"J Rosenberg \\\\\\"" <sip:jdrosen@example.com>')
    assert address.display_name == 'J Rosenberg \\"'
    assert NameAddr.parse(str(address)) == address


def test_unquoted_display_name_tokens() -> None:
    address = NameAddr.parse("Alice  Smith <sip:alice@atlanta.example.com>")
    assert address.display_name == "Alice Smith"
    assert str(address) == '"Alice Smith" <sip:alice@atlanta.example.com>'


def test_display_name_without_space_before_angle_bracket() -> None:
    address = NameAddr.parse("caller<sip:caller@example.com>;tag=323")
    assert address.display_name == "caller"
    assert address.tag == "323"


def test_no_display_name() -> None:
    address = NameAddr.parse("<sip:carol@chicago.example.com>")
    assert address.display_name is None
    assert str(address) == "<sip:carol@chicago.example.com>"


def test_addr_spec_params_are_header_params() -> None:
    # RFC 3261 20.10: without <>, ";tag" and ";user" belong to the header field.
    address = NameAddr.parse("sip:+12125551212@server.example.com;user=phone;tag=887s")
    assert address.uri.params == {}
    assert address.params == {"user": "phone", "tag": "887s"}
    assert str(address) == "<sip:+12125551212@server.example.com>;user=phone;tag=887s"


def test_uri_params_inside_angle_brackets_stay_on_the_uri() -> None:
    address = NameAddr.parse("<sip:alice@atlanta.example.com;transport=tcp>;expires=60;q=0.5")
    assert address.uri.params == {"transport": "tcp"}
    assert address.params == {"expires": "60", "q": "0.5"}


def test_params_without_values_and_whitespace_around_equals() -> None:
    address = NameAddr.parse(
        '"Quoted string \\"\\"" <sip:jdrosen@example.com> ; newparam = newvalue ;'
        " secondparam ; q = 0.33"
    )
    assert address.display_name == 'Quoted string ""'
    assert address.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}


def test_quoted_param_value_keeps_its_quotes() -> None:
    address = NameAddr.parse('<sip:a@b>;x="semi;colon, comma";tag=1')
    assert address.params == {"x": '"semi;colon, comma"', "tag": "1"}
    assert NameAddr.parse(str(address)) == address


def test_addr_spec_with_whitespace_before_params() -> None:
    address = NameAddr.parse("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n")
    assert address.uri.host == "chair-dnrc.example.com"
    assert address.tag == "1918181833n"


def test_ipv6_uri_in_name_addr() -> None:
    address = NameAddr.parse("<sip:alice@[2001:db8::1]:5080>;tag=x")
    assert address.uri.host == "2001:db8::1"
    assert address.uri.port == 5080
    assert str(address) == "<sip:alice@[2001:db8::1]:5080>;tag=x"


def test_spaces_inside_angle_brackets_are_tolerated_and_dropped() -> None:
    # RFC 4475 3.1.2.14: liberal elements may ignore them but must not reproduce them.
    address = NameAddr.parse('"Watson, Thomas" < sip:t.watson@example.org >')
    assert str(address) == '"Watson, Thomas" <sip:t.watson@example.org>'


def test_control_characters_in_display_name_are_escaped_on_output() -> None:
    address = NameAddr.parse('"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:x@example.com>')
    assert address.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    text = str(address)
    assert text == '"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f" <sip:x@example.com>'
    assert NameAddr.parse(text) == address


def test_tag_setter_and_with_tag() -> None:
    address = NameAddr.parse("<sip:bob@example.com>")
    assert address.tag is None
    tagged = address.with_tag("abc")
    assert tagged.tag == "abc"
    assert address.tag is None
    tagged.uri.params["lr"] = None
    assert address.uri.params == {}
    address.tag = "xyz"
    assert str(address) == "<sip:bob@example.com>;tag=xyz"
    address.tag = None
    assert address.params == {}


@pytest.mark.parametrize(
    "text",
    [
        "",
        '"Mr. J. User <sip:j.user@example.com>',
        "<sip:bob@example.com",
        "sip:bob@example.com>",
        "Bell, Alexander <sip:a.g.bell@example.com>",
        '"Bob" sip:bob@example.com',
        '"Bob" x <sip:bob@example.com>',
        "<sip:bob@example.com> tag=1",
        "<sip:bob@example.com>;;tag=1",
        "<sip:bob@example.com>;tag=",
        "<sip:bob@example.com>;tag=a b",
        '<sip:bob@example.com>;x="unterminated',
        "<sip:bob@exa mple.com>",
        "<>",
        "*",
    ],
)
def test_malformed_name_addr_raises(text: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(text)


# -- header lists ----------------------------------------------------------------


def test_split_header_list_respects_quotes_and_angle_brackets() -> None:
    value = (
        '"Doe, John" <sip:john@a.example.com;x=1,2>;q=0.5 ,<sip:b@example.com?h=a,b>,'
        ' sip:c@example.com, "Quote \\" , inside" <sip:d@example.com>'
    )
    assert split_header_list(value) == [
        '"Doe, John" <sip:john@a.example.com;x=1,2>;q=0.5',
        "<sip:b@example.com?h=a,b>",
        "sip:c@example.com",
        '"Quote \\" , inside" <sip:d@example.com>',
    ]


def test_split_header_list_simple_and_empty_elements() -> None:
    assert split_header_list("INVITE, ACK ,BYE") == ["INVITE", "ACK", "BYE"]
    assert split_header_list("a,,b, ,") == ["a", "b"]
    assert split_header_list("  ") == []
    assert split_header_list("single") == ["single"]


def test_split_header_list_with_unterminated_quote_keeps_the_rest_whole() -> None:
    assert split_header_list('a, "b, c') == ["a", '"b, c']


def test_parse_name_addr_list() -> None:
    contacts = parse_name_addr_list(
        '"Mr. Watson" <sip:watson@worcester.example.com>;q=0.7; expires=3600,'
        " <sip:watson@[2001:db8::7]:5070>;q=0.1, sip:w@bell.example.com;q=0.2"
    )
    assert [(c.display_name, c.uri.host, c.params) for c in contacts] == [
        ("Mr. Watson", "worcester.example.com", {"q": "0.7", "expires": "3600"}),
        (None, "2001:db8::7", {"q": "0.1"}),
        (None, "bell.example.com", {"q": "0.2"}),
    ]


def test_parse_name_addr_list_rejects_a_bad_element() -> None:
    with pytest.raises(SipParseError):
        parse_name_addr_list("<sip:a@example.com>, <sip:b@example.com")


@given(
    st.one_of(
        st.text(alphabet=st.characters(codec="ascii"), max_size=12),
        st.text(max_size=12),
        st.from_regex(r"[A-Za-z0-9]{1,12}", fullmatch=True),
    )
)
def test_is_token_is_the_token_rule(text: str) -> None:
    """The letters-and-digits shortcut decides as RFC 3261 25.1's token rule does."""
    assert is_token(text) == (TOKEN_RE.fullmatch(text) is not None)


@pytest.mark.parametrize("text", ["INVITE", "z9hG4bK", "Call-ID", "a.b!%*_+`'~", "1"])
def test_tokens(text: str) -> None:
    assert is_token(text)


@pytest.mark.parametrize("text", ["", "a b", "a:b", "é", "٣", "a\n"])
def test_not_tokens(text: str) -> None:
    assert not is_token(text)
