"""Redaction (sniffd.redact.Redactor): headers, URIs, form and JSON bodies in,
the same values with every credential replaced by its keyed-hash token out.

Expected tokens come from ``tok`` below, an independent reference
(``hmac.new`` with the test key), never from the code under test.
"""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sniffd.redact import DEFAULT_HEADERS, DEFAULT_PARAMS, Redactor

KEY = b"0123456789abcdef-test-key"


def tok(secret: bytes | str, key: bytes = KEY) -> str:
    if isinstance(secret, str):
        secret = secret.encode()
    return "hmac:" + hmac.new(key, secret, hashlib.sha256).hexdigest()[:16]


R = Redactor(KEY)


# ------------------------------------------------------------------ tokens


def test_token_is_hmac_sha256_prefix():
    assert tok(b"hunter2") == R.token(b"hunter2")


def test_token_value_is_stable_across_versions():
    """Operators correlate tokens across log files and sniffd upgrades; a
    change of format would silently break that."""
    assert "hmac:85a80814197231ce" == R.token(b"hunter2")


def test_same_secret_gives_same_token_different_secret_another():
    assert R.token(b"s3cret") == R.token(b"s3cret")
    assert R.token(b"s3cret") != R.token(b"s3cret!")


def test_different_key_gives_different_token():
    other = Redactor(b"another-key-of-16-bytes")
    assert tok(b"s3cret", b"another-key-of-16-bytes") == other.token(b"s3cret")
    assert R.token(b"s3cret") != other.token(b"s3cret")


@pytest.mark.parametrize("key", [b"", b"short", "a str key of 20 chars"])
def test_bad_key_raises_naming_it(key):
    with pytest.raises(ValueError, match="redact key"):
        Redactor(key)


def test_default_sets():
    assert frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"}) == DEFAULT_HEADERS
    assert {"password", "token", "access_token", "api_key", "key", "sig", "code", "session"} <= DEFAULT_PARAMS


# ------------------------------------------------------------------ headers

HEADER_CASES = [
    # (name, headers in, headers out)
    ("bearer_keeps_scheme", {"authorization": "Bearer abc.def.ghi"}, {"authorization": "Bearer " + tok("abc.def.ghi")}),
    ("basic_keeps_scheme", {"authorization": "Basic dXNlcjpwYXNz"}, {"authorization": "Basic " + tok("dXNlcjpwYXNz")}),
    (
        "digest_keeps_scheme_tokenises_all_params",
        {"authorization": 'Digest username="bob", realm="x", nonce="n1", response="abcd"'},
        {"authorization": "Digest " + tok('username="bob", realm="x", nonce="n1", response="abcd"')},
    ),
    (
        "scheme_separator_kept",
        {"authorization": "Bearer  two-spaces"},
        {"authorization": "Bearer  " + tok("two-spaces")},
    ),
    ("single_token_is_all_credential", {"authorization": "sk_live_123"}, {"authorization": tok("sk_live_123")}),
    ("empty_authorization_stays_empty", {"authorization": ""}, {"authorization": ""}),
    (
        "proxy_authorization",
        {"proxy-authorization": "Basic Zm9vOmJhcg=="},
        {"proxy-authorization": "Basic " + tok("Zm9vOmJhcg==")},
    ),
    (
        "cookie_names_kept_values_tokenised",
        {"cookie": "a=1; sessionid=xyz"},
        {"cookie": f"a={tok('1')}; sessionid={tok('xyz')}"},
    ),
    ("cookie_empty_value_kept_empty", {"cookie": "a=; b=2"}, {"cookie": f"a=; b={tok('2')}"}),
    ("cookie_nameless_value_tokenised", {"cookie": "lonely; b=2"}, {"cookie": f"{tok('lonely')}; b={tok('2')}"}),
    ("cookie_quoted_value_hashed_as_sent", {"cookie": 'q="v 1"'}, {"cookie": "q=" + tok('"v 1"')}),
    ("cookie_value_with_equals", {"cookie": "b64=YQ=="}, {"cookie": "b64=" + tok("YQ==")}),
    (
        "set_cookie_attributes_kept",
        {"set-cookie": "sid=abc123; Path=/; Domain=example.test; Max-Age=3600; Secure; HttpOnly; SameSite=Lax"},
        {
            "set-cookie": f"sid={tok('abc123')}; Path=/; Domain=example.test; Max-Age=3600; Secure; HttpOnly; SameSite=Lax"
        },
    ),
    (
        "set_cookie_expires_date_is_not_a_separator",
        {"set-cookie": "sid=abc; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Path=/"},
        {"set-cookie": f"sid={tok('abc')}; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Path=/"},
    ),
    (
        "set_cookie_joined_with_expires_dates",
        {
            "set-cookie": "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Path=/, "
            "b=2; Expires=Thu, 22 Oct 2026 07:28:00 GMT, c=3"
        },
        {
            "set-cookie": f"a={tok('1')}; Expires=Wed, 21 Oct 2026 07:28:00 GMT; Path=/, "
            f"b={tok('2')}; Expires=Thu, 22 Oct 2026 07:28:00 GMT, c={tok('3')}"
        },
    ),
    (
        "set_cookie_joined_rfc850_date",
        {"set-cookie": "a=1; expires=Wednesday, 21-Oct-26 07:28:00 GMT, b=2; HttpOnly"},
        {"set-cookie": f"a={tok('1')}; expires=Wednesday, 21-Oct-26 07:28:00 GMT, b={tok('2')}; HttpOnly"},
    ),
    (
        "set_cookie_joined_plain",
        {"set-cookie": "a=1, b=2; Secure"},
        {"set-cookie": f"a={tok('1')}, b={tok('2')}; Secure"},
    ),
    (
        "set_cookie_comma_inside_value_not_a_separator",
        {"set-cookie": "list=a,b; Path=/"},
        {"set-cookie": f"list={tok('a,b')}; Path=/"},
    ),
    ("set_cookie_empty_value_kept", {"set-cookie": "gone=; Max-Age=0"}, {"set-cookie": "gone=; Max-Age=0"}),
    (
        "other_headers_untouched_order_kept",
        {"host": "h", "authorization": "Bearer t", "accept": "*/*"},
        {"host": "h", "authorization": "Bearer " + tok("t"), "accept": "*/*"},
    ),
    (
        "name_matched_in_any_case",
        {"Authorization": "Bearer t", "COOKIE": "a=1"},
        {"Authorization": "Bearer " + tok("t"), "COOKIE": "a=" + tok("1")},
    ),
]


@pytest.mark.parametrize("name,given,expected", HEADER_CASES, ids=[c[0] for c in HEADER_CASES])
def test_headers(name, given, expected):
    out, names = R.headers(given)
    assert expected == out
    assert [k for k in given if k.lower() in DEFAULT_HEADERS] == names


def test_headers_does_not_modify_its_argument():
    given = {"cookie": "a=1"}
    R.headers(given)
    assert {"cookie": "a=1"} == given


def test_headers_extra_names_tokenised_whole():
    r = Redactor(KEY, headers=DEFAULT_HEADERS | {"X-Api-Key", "x-auth-token"})
    out, names = r.headers({"x-api-key": "abc def", "x-auth-token": "t", "x-other": "v", "cookie": "a=1"})
    assert {"x-api-key": tok("abc def"), "x-auth-token": tok("t"), "x-other": "v", "cookie": "a=" + tok("1")} == out
    assert ["x-api-key", "x-auth-token", "cookie"] == names


def test_headers_configured_set_replaces_defaults():
    r = Redactor(KEY, headers=frozenset({"x-api-key"}))
    assert ({"cookie": "a=1", "x-api-key": tok("k")}, ["x-api-key"]) == r.headers({"cookie": "a=1", "x-api-key": "k"})


def test_header_values_with_surrogate_escapes_hash_the_wire_bytes():
    """Invalid UTF-8 from the wire arrives as U+DC80..U+DCFF (surrogateescape)."""
    out, _ = R.headers({"authorization": "Bearer ab\udcff\udc80", "cookie": "s=\udce9t\udce9"})
    assert {"authorization": "Bearer " + tok(b"ab\xff\x80"), "cookie": "s=" + tok(b"\xe9t\xe9")} == out


# ------------------------------------------------------------------ URIs

URI_CASES = [
    # (name, uri in, uri out)
    ("password_in_query", "/login?user=bob&password=hunter2&x=1", f"/login?user=bob&password={tok('hunter2')}&x=1"),
    ("no_query_unchanged", "/index.html", None),
    ("query_without_secrets_unchanged", "/search?q=a%20b&page=2", None),
    ("name_case_insensitive", "/a?PassWord=x&TOKEN=y", f"/a?PassWord={tok('x')}&TOKEN={tok('y')}"),
    ("percent_encoded_name", "/a?pass%77ord=x&%70wd=y", f"/a?pass%77ord={tok('x')}&%70wd={tok('y')}"),
    ("separators_in_names_ignored", "/a?apiKey=k1&Access-Token=k2", f"/a?apiKey={tok('k1')}&Access-Token={tok('k2')}"),
    ("value_percent_decoded_and_plus_is_space", "/a?token=a+b%2Fc", f"/a?token={tok('a b/c')}"),
    ("other_params_encoding_kept", "/a?q=%41+b&token=t&z=%zz", f"/a?q=%41+b&token={tok('t')}&z=%zz"),
    ("param_without_equals_kept", "/a?token&password", None),
    ("empty_value_left_empty", "/a?token=&password=&x=1", None),
    ("empty_pairs_kept", "/a?&&token=t&&", f"/a?&&token={tok('t')}&&"),
    ("value_containing_equals", "/a?sig=abc==", f"/a?sig={tok('abc==')}"),
    ("semicolon_is_not_a_separator", "/a?x=1;token=t", None),
    ("repeated_param_each_redacted", "/a?key=1&key=2", f"/a?key={tok('1')}&key={tok('2')}"),
    ("bracketed_form_names", "/a?user[password]=p&pass[]=q", f"/a?user[password]={tok('p')}&pass[]={tok('q')}"),
    (
        "absolute_form",
        "http://h.example:8080/p?token=x&a=b",
        f"http://h.example:8080/p?token={tok('x')}&a=b",
    ),
    ("absolute_form_userinfo_password", "http://bob:pw%21@h/p", f"http://bob:{tok('pw!')}@h/p"),
    ("absolute_form_userinfo_without_password", "https://ghp_abc@h/p", f"https://{tok('ghp_abc')}@h/p"),
    ("fragment_kept", "/a?token=t#section-2", f"/a?token={tok('t')}#section-2"),
    ("fragment_params_redacted", "/cb#access_token=t&state=s", f"/cb#access_token={tok('t')}&state=s"),
    ("question_mark_in_query_value", "/a?next=/b?c=d&pwd=x", f"/a?next=/b?c=d&pwd={tok('x')}"),
    ("authority_form_unchanged", "example.test:443", None),
    ("asterisk_form_unchanged", "*", None),
    ("oauth_code_in_redirect", "/callback?code=AUTHCODE&state=xyz", f"/callback?code={tok('AUTHCODE')}&state=xyz"),
    (
        "aws_presigned_signature",
        "/o?X-Amz-Signature=abcd&X-Amz-Date=1",
        f"/o?X-Amz-Signature={tok('abcd')}&X-Amz-Date=1",
    ),
    ("surrogate_escaped_value", "/a?token=\udcff\udcfe&x=\udc80", "/a?token=" + tok(b"\xff\xfe") + "&x=\udc80"),
]


@pytest.mark.parametrize("name,given,expected", URI_CASES, ids=[c[0] for c in URI_CASES])
def test_uri(name, given, expected):
    if expected is None:
        assert (given, False) == R.uri(given)
    else:
        assert (expected, True) == R.uri(given)


def test_uri_params_configured_set():
    r = Redactor(KEY, params=frozenset({"Ssn"}))
    assert (f"/a?ssn={tok('1')}&password=p", True) == r.uri("/a?ssn=1&password=p")


# ------------------------------------------------------------------ form bodies


def test_form_body_redacted_other_bytes_kept():
    body = b"user=bob&password=hunter%32&remember=on&note=caf\xe9"
    assert b"user=bob&password=" + tok("hunter2").encode() + b"&remember=on&note=caf\xe9" == R.form(body)


def test_form_body_rails_style_names():
    body = b"user%5Bemail%5D=a%40b&user%5Bpassword%5D=p+q&user%5Bpassword_confirmation%5D=p+q"
    t = tok("p q").encode()
    assert b"user%5Bemail%5D=a%40b&user%5Bpassword%5D=" + t + b"&user%5Bpassword_confirmation%5D=" + t == R.form(body)


def test_form_body_without_secrets_is_returned_as_is():
    body = b"a=1&b=2&token"
    assert body is R.form(body)


def test_form_body_binary_secret_hashed_as_bytes():
    assert b"pwd=" + tok(b"\xff\x00").encode() == R.form(b"pwd=%FF%00")


# ------------------------------------------------------------------ JSON values


def test_json_nested_keys_at_any_depth_including_arrays():
    obj = {
        "user": "bob",
        "password": "hunter2",
        "profile": {"settings": {"api_key": "k1", "theme": "dark"}},
        "devices": [{"name": "phone", "token": "t1"}, [{"Token": "t2"}], "token"],
    }
    expected = {
        "user": "bob",
        "password": tok("hunter2"),
        "profile": {"settings": {"api_key": tok("k1"), "theme": "dark"}},
        "devices": [{"name": "phone", "token": tok("t1")}, [{"Token": tok("t2")}], "token"],
    }
    assert expected == R.json(obj)
    assert "hunter2" == obj["password"], "the argument is not modified"


def test_json_non_string_values_hash_their_compact_serialisation():
    obj = {"pin": 1, "key": 1234, "secret": {"a": [1, 2.5, None, True]}, "sig": ["x", "y"], "token": None}
    expected = {
        "pin": 1,
        "key": tok("1234"),
        "secret": tok('{"a":[1,2.5,null,true]}'),
        "sig": tok('["x","y"]'),
        "token": tok("null"),
    }
    assert expected == R.json(obj)


def test_json_camel_case_and_custom_keys():
    assert {"accessToken": tok("a"), "clientSecret": tok("b")} == R.json({"accessToken": "a", "clientSecret": "b"})
    assert {"ssn": tok("1"), "password": "p"} == R.json({"ssn": "1", "password": "p"}, keys=frozenset({"SSN"}))


def test_json_scalar_and_deep_nesting():
    assert "x" == R.json("x")
    deep: object = {"token": "t"}
    for _ in range(5000):
        deep = [deep]
    out = R.json(deep)
    for _ in range(5000):
        out = out[0]
    assert {"token": tok("t")} == out


# ------------------------------------------------------------------ JSON text

JSON_TEXT_CASES = [
    # (name, text in, text out or None for unchanged)
    ("flat", '{"user":"bob","password":"hunter2"}', '{"user":"bob","password":"' + tok("hunter2") + '"}'),
    (
        "whitespace_and_order_kept",
        '{ "a" : 1 ,\n  "token" :  "t" , "b":[ 1 , 2 ] }',
        '{ "a" : 1 ,\n  "token" :  "' + tok("t") + '" , "b":[ 1 , 2 ] }',
    ),
    (
        "nested_in_arrays",
        '[{"x":{"y":[{"api_key":"k"}]}},{"secret":{"a":[1,{"b":2}]}}]',
        '[{"x":{"y":[{"api_key":"' + tok("k") + '"}]}},{"secret":"' + tok('{"a":[1,{"b":2}]}') + '"}]',
    ),
    ("number_value", '{"pin":7,"key":1234.50}', '{"pin":7,"key":"' + tok("1234.5") + '"}'),
    (
        "duplicate_members_both_redacted",
        '{"password":"a","password":"b"}',
        '{"password":"' + tok("a") + '","password":"' + tok("b") + '"}',
    ),
    ("escaped_name", '{"pass\\u0077ord":"x"}', '{"pass\\u0077ord":"' + tok("x") + '"}'),
    ("escaped_value_hashed_unescaped", '{"token":"a\\"b\\u00e9"}', '{"token":"' + tok('a"bé') + '"}'),
    ("name_text_inside_a_string_is_not_a_name", '{"note":"\\"password\\": no","x":"password"}', None),
    ("string_containing_colon_after_quote", '{"a":"x\\":","token":"t"}', '{"a":"x\\":","token":"' + tok("t") + '"}'),
    ("no_secrets", '{"a":[1,2,{"b":"c"}]}', None),
    ("truncated_inside_value", '{"a":1,"token":"abc', '{"a":1,"token":"' + tok('"abc') + '"'),
    ("truncated_inside_secret_object", '{"secret":{"k":[1,2', '{"secret":"' + tok('{"k":[1,2') + '"'),
    ("truncated_after_colon", '{"a":1,"token":', None),
    ("truncated_in_other_value", '{"password":"p","note":"abc', '{"password":"' + tok("p") + '","note":"abc'),
    ("not_json_at_all", "<html>password: x</html>", None),
    ("lone_surrogate_escape_does_not_raise", '{"token":"\\ud800"}', '{"token":"' + tok(b"\xed\xa0\x80") + '"}'),
]


@pytest.mark.parametrize("name,given,expected", JSON_TEXT_CASES, ids=[c[0] for c in JSON_TEXT_CASES])
def test_json_text(name, given, expected):
    if expected is None:
        out, changed = R.json_text(given)
        assert (given, False) == (out, changed)
        assert given is out
    else:
        assert (expected, True) == R.json_text(given)


def test_json_text_custom_keys():
    assert ('{"ssn":"' + tok("1") + '","token":"t"}', True) == R.json_text(
        '{"ssn":"1","token":"t"}', frozenset({"ssn"})
    )


# ------------------------------------------------------------------ one secret, one token


def test_same_credential_same_token_wherever_it_was_sent():
    """So an operator can follow one credential from a login form to the
    bearer header and the API calls that use it."""
    t = tok("s3cr3t/+x")
    assert "Bearer " + t == R.headers({"authorization": "Bearer s3cr3t/+x"})[0]["authorization"]
    assert "/a?access_token=" + t == R.uri("/a?access_token=s3cr3t%2F%2Bx")[0]
    assert b"token=" + t.encode() == R.form(b"token=s3cr3t%2F%2Bx")
    assert {"accessToken": t} == R.json({"accessToken": "s3cr3t/+x"})
    assert ('{"access_token":"' + t + '"}', True) == R.json_text('{"access_token":"s3cr3t\\/+x"}')


def test_redact_headers_with_mixed_case_names_are_still_redacted():
    """The no-copy shortcut for headers with nothing to redact must not
    skip names that are configured but not lowercase."""
    r = Redactor(b"k" * 32)
    tok = "hmac:" + hmac.new(b"k" * 32, b"abc", hashlib.sha256).hexdigest()[:16]
    assert ({"Proxy-Authorization": f"Basic {tok}"}, ["Proxy-Authorization"]) == r.headers(
        {"Proxy-Authorization": "Basic abc"})


# Redactor.uri answers "no configured name in this query" from a memo of
# query shapes (the tuple of names); the values of a shape that holds one
# must still be redacted every time, and the answer must be what reading
# every pair gives (Redactor._pairs, the path a query with a secret takes).
def test_redact_uri_same_shape_twice_redacts_each_value() -> None:
    assert ("/a?x=1&token=" + tok("v1"), True) == R.uri("/a?x=1&token=v1")
    assert ("/a?x=2&token=" + tok("v2"), True) == R.uri("/a?x=2&token=v2")
    assert ("/a?x=3&token=", False) == R.uri("/a?x=3&token=")
    assert ("/a?x=1&y=2", False) == R.uri("/a?x=1&y=2")


def test_redact_uri_shape_memo_is_bounded_and_still_answers() -> None:
    r = Redactor(KEY)
    for i in range(5000):
        assert (f"/p?n{i}=v", False) == r.uri(f"/p?n{i}=v")
    assert len(r._shapes) <= 4096
    assert ("/p?n1=v&pwd=" + tok("s"), True) == r.uri("/p?n1=v&pwd=s")


_NAME = st.sampled_from(["x", "token", "Access-Token", "pass%77ord", "user[password]", "a+b", "", "seed", "key"])
_VALUE = st.sampled_from(["", "1", "s3cr3t", "a=b", "%41", "+"])


@settings(max_examples=300, deadline=None)
@given(pairs=st.lists(st.tuples(_NAME, st.sampled_from(["=", ""]), _VALUE), max_size=5), path=st.sampled_from(["/", "/a/b", ""]))
def test_redact_uri_agrees_with_reading_every_pair(pairs, path) -> None:
    query = "&".join(n + eq + (v if eq else "") for n, eq, v in pairs)
    r = Redactor(KEY)
    expected_query, changed = r._pairs(query, lambda s: s.encode(), r._params_norm)
    assert (path + "?" + expected_query, changed) == r.uri(path + "?" + query)
    assert (path + "?" + expected_query, changed) == r.uri(path + "?" + query)  # from the memo
