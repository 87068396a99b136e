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
    assert frozenset({
        "authorization", "proxy-authorization", "cookie", "set-cookie", "cookie2", "set-cookie2",
        "referer", "location", "content-location", "refresh", "link", "sec-websocket-protocol", ":authority",
        "x-api-key", "api-key", "apikey", "x-auth-token", "x-access-token", "x-amz-security-token",
        "x-csrf-token", "x-xsrf-token", "x-csrftoken", "x-amzn-oidc-accesstoken", "x-amzn-oidc-data",
    }) == DEFAULT_HEADERS  # fmt: skip
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
    # A second cookie whose name is no RFC 6265 token (PHP's user[sid]) after attributes.
    (
        "set_cookie_php_array_name_after_attributes",
        {"set-cookie": "a=1; Path=/; HttpOnly, user[sid]=SECRET"},
        {"set-cookie": f"a={tok('1')}; Path=/; HttpOnly, user[sid]={tok('SECRET')}"},
    ),
    (
        "set_cookie_php_array_name_after_expires_date",
        {"set-cookie": "a=1; Expires=Wed, 21 Oct 2026 07:28:00 GMT, user[sid]=S2; Path=/"},
        {"set-cookie": f"a={tok('1')}; Expires=Wed, 21 Oct 2026 07:28:00 GMT, user[sid]={tok('S2')}; Path=/"},
    ),
    (
        "set_cookie_three_cookies_odd_names",
        {"set-cookie": "a=1; Secure, cart[items]=2; HttpOnly, my cookie=3; Path=/"},
        {"set-cookie": f"a={tok('1')}; Secure, cart[items]={tok('2')}; HttpOnly, my cookie={tok('3')}; Path=/"},
    ),
    (
        "set_cookie_nameless_cookie_after_attributes",
        {"set-cookie": "a=1; HttpOnly, SECRETVALUE; Path=/"},
        {"set-cookie": f"a={tok('1')}; HttpOnly, {tok('SECRETVALUE')}; Path=/"},
    ),
    (
        "set_cookie_comma_in_an_attribute_ends_it",
        {"set-cookie": "a=1; Path=/x, y"},
        {"set-cookie": f"a={tok('1')}; Path=/x, {tok('y')}"},
    ),
    ("set_cookie2", {"set-cookie2": 'a="1"; Version="1"'}, {"set-cookie2": f'a={tok(chr(34) + "1" + chr(34))}; Version="1"'}),
    ("cookie2", {"cookie2": "b=2"}, {"cookie2": f"b={tok('2')}"}),
    # API keys and auth tokens by default, tokenised whole.
    (
        "api_key_and_auth_token_headers",
        {"x-api-key": "k-123", "x-auth-token": "t-456", "api-key": "a", "x-access-token": "b"},
        {"x-api-key": tok("k-123"), "x-auth-token": tok("t-456"), "api-key": tok("a"), "x-access-token": tok("b")},
    ),
    (
        "csrf_token_headers",
        {"x-csrf-token": "c1", "x-xsrf-token": "c2", "x-csrftoken": "c3"},
        {"x-csrf-token": tok("c1"), "x-xsrf-token": tok("c2"), "x-csrftoken": tok("c3")},
    ),
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


# Headers whose rule redacts only what is secret inside them: (name, headers
# in, headers out, names listed).
PARTIAL_HEADER_CASES = [
    (
        "referer_query_token_and_password",
        {"referer": "https://a.example/p?q=shoes&token=T1&password=P1"},
        {"referer": f"https://a.example/p?q=shoes&token={tok('T1')}&password={tok('P1')}"},
        ["referer"],
    ),
    (
        "location_fragment_access_token_oauth_implicit",
        {"location": "https://app.example/cb#access_token=AT1&state=S&expires_in=3600"},
        {"location": f"https://app.example/cb#access_token={tok('AT1')}&state=S&expires_in=3600"},
        ["location"],
    ),
    (
        "location_query_code_oauth_authorization_code",
        {"location": "https://app.example/cb?code=C1&state=S"},
        {"location": f"https://app.example/cb?code={tok('C1')}&state=S"},
        ["location"],
    ),
    (
        "location_relative_with_path_param",
        {"location": "/app;jsessionid=J1?next=/"},
        {"location": f"/app;jsessionid={tok('J1')}?next=/"},
        ["location"],
    ),
    (
        "content_location",
        {"content-location": "/r/1?sig=S1&v=2"},
        {"content-location": f"/r/1?sig={tok('S1')}&v=2"},
        ["content-location"],
    ),
    (
        "refresh_url",
        {"refresh": "0; url=https://app.example/cb?code=C2&state=S"},
        {"refresh": f"0; url=https://app.example/cb?code={tok('C2')}&state=S"},
        ["refresh"],
    ),
    (
        "refresh_quoted_url_without_space",
        {"refresh": "5;URL='/next?password=P2'"},
        {"refresh": f"5;URL='/next?password={tok('P2')}'"},
        ["refresh"],
    ),
    ("refresh_delay_only", {"refresh": "30"}, {"refresh": "30"}, []),
    (
        "link_pagination_urls",
        {"link": '<https://api.example/x?page=2&access_token=A1>; rel="next", <https://api.example/x?page=9>; rel="last"'},
        {"link": f'<https://api.example/x?page=2&access_token={tok("A1")}>; rel="next", <https://api.example/x?page=9>; rel="last"'},
        ["link"],
    ),
    (
        "url_without_secrets_unchanged_and_not_listed",
        {"referer": "https://a.example/search?q=a;b&page=2#top", "location": "/x"},
        {"referer": "https://a.example/search?q=a;b&page=2#top", "location": "/x"},
        [],
    ),
    (
        "proxy_copy_of_the_uri_by_its_name",
        {"x-original-url": "/p?token=T3", "x-forwarded-uri": "/q?password=P3", "x-envoy-original-path": "/r?x=1"},
        {"x-original-url": f"/p?token={tok('T3')}", "x-forwarded-uri": f"/q?password={tok('P3')}",
         "x-envoy-original-path": "/r?x=1"},
        ["x-original-url", "x-forwarded-uri"],
    ),
    # Bearer tokens as WebSocket subprotocols.
    (
        "websocket_protocol_kubernetes_bearer",
        {"sec-websocket-protocol": "base64.binary.k8s.io, base64url.bearer.authorization.k8s.io.azhzLXRva2VuLTE"},
        {"sec-websocket-protocol": f"base64.binary.k8s.io, base64url.bearer.authorization.k8s.io.{tok('k8s-token-1')}"},
        ["sec-websocket-protocol"],
    ),
    (
        "websocket_protocol_authorization_bearer_jwt",
        {"sec-websocket-protocol": "graphql-ws, authorization.bearer.eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln"},
        {"sec-websocket-protocol": f"graphql-ws, authorization.bearer.{tok('eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln')}"},
        ["sec-websocket-protocol"],
    ),
    (
        "websocket_protocol_appsync_header",
        {"sec-websocket-protocol": "graphql-ws, header-eyJob3N0IjoiYSJ9"},
        {"sec-websocket-protocol": f"graphql-ws, header-{tok('eyJob3N0IjoiYSJ9')}"},
        ["sec-websocket-protocol"],
    ),
    (
        "websocket_protocol_token_after_its_name",
        {"sec-websocket-protocol": "access_token, s3cr3t-ws"},
        {"sec-websocket-protocol": f"access_token, {tok('s3cr3t-ws')}"},
        ["sec-websocket-protocol"],
    ),
    (
        "websocket_protocol_bare_jwt",
        {"sec-websocket-protocol": "eyJhbGciOiJub25lIn0.eyJhIjoxfQ."},
        {"sec-websocket-protocol": tok("eyJhbGciOiJub25lIn0.eyJhIjoxfQ.")},
        ["sec-websocket-protocol"],
    ),
    (
        "websocket_protocol_plain_names_unchanged",
        {"sec-websocket-protocol": "chat, superchat, v4.channel.k8s.io", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="},
        {"sec-websocket-protocol": "chat, superchat, v4.channel.k8s.io", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="},
        [],
    ),
]


@pytest.mark.parametrize("name,given,expected,listed", PARTIAL_HEADER_CASES, ids=[c[0] for c in PARTIAL_HEADER_CASES])
def test_headers_partial_rules(name, given, expected, listed):
    assert (expected, listed) == R.headers(given, True)


def test_kubernetes_websocket_token_hashes_like_the_bearer_header():
    """The subprotocol carries base64url(token): decoded, it gives the token's own hash."""
    ws = R.headers({"sec-websocket-protocol": "base64url.bearer.authorization.k8s.io.azhzLXRva2VuLTE"})[0]
    auth = R.headers({"authorization": "Bearer k8s-token-1"})[0]
    assert auth["authorization"].split()[1] == ws["sec-websocket-protocol"].rsplit(".", 1)[1]


# Header names secret by their words (sniffd.redact.secret_by_words), not on a
# list: (headers in, headers out, names listed).
WORD_HEADER_CASES = [
    (
        {"x-vault-token": "v", "private-token": "g", "x-goog-api-key": "k", "ocp-apim-subscription-key": "s"},
        {"x-vault-token": tok("v"), "private-token": tok("g"), "x-goog-api-key": tok("k"),
         "ocp-apim-subscription-key": tok("s")},
        ["x-vault-token", "private-token", "x-goog-api-key", "ocp-apim-subscription-key"],
    ),
    (
        {"x-forwarded-authorization": "Bearer f1", "x-session-id": "s1", "cf-access-client-secret": "c1"},
        {"x-forwarded-authorization": "Bearer " + tok("f1"), "x-session-id": tok("s1"), "cf-access-client-secret": tok("c1")},
        ["x-forwarded-authorization", "x-session-id", "cf-access-client-secret"],
    ),
    (
        # Not secret: a public nonce, cache tags, a CORS flag, a key's id.
        {"sec-websocket-key": "n", "surrogate-key": "t1 t2", "access-control-allow-credentials": "true",
         "x-amz-server-side-encryption-aws-kms-key-id": "arn", "keep-alive": "timeout=5", "x-request-id": "r"},
        {"sec-websocket-key": "n", "surrogate-key": "t1 t2", "access-control-allow-credentials": "true",
         "x-amz-server-side-encryption-aws-kms-key-id": "arn", "keep-alive": "timeout=5", "x-request-id": "r"},
        [],
    ),
]


@pytest.mark.parametrize("given,expected,listed", WORD_HEADER_CASES)
def test_headers_secret_by_name_words(given, expected, listed):
    assert (expected, listed) == R.headers(given, True)


def test_headers_word_rules_off():
    r = Redactor(KEY, match_words=False)
    assert ({"x-vault-token": "v", "x-original-url": "/p?token=t"}, []) == r.headers(
        {"x-vault-token": "v", "x-original-url": "/p?token=t"})


def test_headers_plain_section_returned_as_is_also_the_second_time():
    """The memo of plain names must not change the answer."""
    h = {"host": "h", "user-agent": "u", "Accept": "*/*"}
    assert (h, []) == R.headers(h)
    assert R.headers(h)[0] is h
    assert ({"host": "h", "Cookie": "a=" + tok("1")}, ["Cookie"]) == R.headers({"host": "h", "Cookie": "a=1"})


def test_headers_name_memo_is_bounded_and_still_answers():
    r = Redactor(KEY)
    for i in range(5000):
        r.headers({f"x-n{i}": "v"})
    assert len(r._header_rules) <= 4096 and len(r._plain_headers) <= 4096
    assert ({"x-n1": "v", "x-api-key": tok("k")}, ["x-api-key"]) == r.headers({"x-n1": "v", "x-api-key": "k"})


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
    # ";" separates parameters too (issue 11): servers that split there see a token.
    ("semicolon_separates_parameters", "/a?x=1;token=t", f"/a?x=1;token={tok('t')}"),
    ("semicolon_separated_password", "/a?a=1;password=P", f"/a?a=1;password={tok('P')}"),
    ("secret_value_runs_to_the_ampersand", "/a?password=p;q&x=1", f"/a?password={tok('p;q')}&x=1"),
    ("semicolon_without_secret_unchanged", "/a?x=1;y=2", None),
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
    # Path parameters (RFC 3986 section 3.3; servlet URL rewriting).
    ("path_param_jsessionid", "/app/cart;jsessionid=0A1B2C?item=3", f"/app/cart;jsessionid={tok('0A1B2C')}?item=3"),
    ("path_param_in_a_middle_segment", "/a;jsessionid=X/b;v=1/c", f"/a;jsessionid={tok('X')}/b;v=1/c"),
    ("path_param_after_another", "/a;v=1;JSESSIONID=X", f"/a;v=1;JSESSIONID={tok('X')}"),
    ("path_param_value_runs_to_the_segment_end", "/a;jsessionid=X;v=1/b", f"/a;jsessionid={tok('X;v=1')}/b"),
    ("path_param_percent_decoded", "/a;sid=%41B", f"/a;sid={tok('AB')}"),
    ("path_params_without_secret_unchanged", "/a;v=1/b;type=a?x=1", None),
    ("path_param_in_absolute_form", "http://h/a;jsessionid=X?y=1", f"http://h/a;jsessionid={tok('X')}?y=1"),
    # Single sign-on: CAS tickets, SAML messages (HTTP-Redirect binding) and artifacts.
    (
        "cas_service_ticket",
        "/cas/serviceValidate?service=https%3A%2F%2Fapp.example%2F&ticket=ST-1-abc-cas",
        f"/cas/serviceValidate?service=https%3A%2F%2Fapp.example%2F&ticket={tok('ST-1-abc-cas')}",
    ),
    (
        "cas_proxy_granting_ticket_callback",
        "/pgtCallback?pgtIou=PGTIOU-1-x&pgtId=PGT-1-y",
        f"/pgtCallback?pgtIou={tok('PGTIOU-1-x')}&pgtId={tok('PGT-1-y')}",
    ),
    (
        "saml_request_and_signature",
        "/sso?SAMLRequest=fZJNb%2B&RelayState=r1&SigAlg=rsa-sha256&Signature=c2ln",
        f"/sso?SAMLRequest={tok('fZJNb+')}&RelayState=r1&SigAlg=rsa-sha256&Signature={tok('c2ln')}",
    ),
    ("saml_response", "/acs?SAMLResponse=PHNhbWxw", f"/acs?SAMLResponse={tok('PHNhbWxw')}"),
    ("saml_artifact", "/acs?SAMLart=AAQAAM", f"/acs?SAMLart={tok('AAQAAM')}"),
    # The userinfo of an authority, wherever a URI has one.
    ("connect_authority_userinfo_password", "proxyuser:pa55@origin.example:443", f"proxyuser:{tok('pa55')}@origin.example:443"),
    ("connect_authority_userinfo_without_password", "ghp_abc@origin.example:443", f"{tok('ghp_abc')}@origin.example:443"),
    ("network_path_userinfo", "//bob:pw@h/p?x=1", f"//bob:{tok('pw')}@h/p?x=1"),
    ("at_sign_in_origin_form_is_not_userinfo", "/u/bob@example.test/x", None),
    ("at_sign_in_query_is_not_userinfo", "/a?email=bob@example.test", None),
    ("fragment_semicolon_parameters", "/cb#state=s;access_token=t", f"/cb#state=s;access_token={tok('t')}"),
]


@pytest.mark.parametrize("name,given,expected", URI_CASES, ids=[c[0] for c in URI_CASES])
def test_uri(name, given, expected):
    if expected is None:
        assert (given, False) == R.uri(given)
    else:
        assert (expected, True) == R.uri(given)


def test_uri_params_configured_set_without_word_rules_is_the_whole_set():
    r = Redactor(KEY, params=frozenset({"Ssn"}), match_words=False)
    assert (f"/a?ssn={tok('1')}&password=p", True) == r.uri("/a?ssn=1&password=p")


def test_uri_params_configured_set_keeps_the_word_rules():
    r = Redactor(KEY, params=frozenset({"Ssn"}))
    assert (f"/a?ssn={tok('1')}&password={tok('p')}&key_id=k", True) == r.uri("/a?ssn=1&password=p&key_id=k")


def test_connect_target_redacts_the_userinfo_password():
    """records' connect_tunnel.target is the CONNECT request's target."""
    assert (f"u:{tok('p')}@h.example:443", "h.example:443", None, "") == (
        R.connect_target("u:p@h.example:443"), R.connect_target("h.example:443"), R.connect_target(None),
        R.connect_target(""))


def test_start_line_kept_raw_has_its_url_redacted():
    """A start line that could not be parsed is kept in start_line."""
    assert (f"GE\x01T /login?user=a&password={tok('pw')} HTTP/1.1", "junk line without url") == (
        R.start_line("GE\x01T /login?user=a&password=pw HTTP/1.1"), R.start_line("junk line without url"))


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


_NAME = st.sampled_from(["x", "token", "Access-Token", "pass%77ord", "user[password]", "a+b", "", "seed", "key",
                         "user_pass", "keyword", "page_token", "country_code"])
_VALUE = st.sampled_from(["", "1", "s3cr3t", "a=b", "%41", "+", "a;b"])


@settings(max_examples=300, deadline=None)
@given(pairs=st.lists(st.tuples(_NAME, st.sampled_from(["=", ""]), _VALUE, st.sampled_from(["&", ";"])), max_size=5),
       path=st.sampled_from(["/", "/a/b", "", "/a;v=1"]))
def test_redact_uri_agrees_with_reading_every_pair(pairs, path) -> None:
    query = "".join((sep if i else "") + n + eq + (v if eq else "") for i, (n, eq, v, sep) in enumerate(pairs))
    r = Redactor(KEY)
    expected_query, changed = r._pairs(query, lambda s: s.encode(), r._params_norm)
    assert (path + "?" + expected_query, changed) == r.uri(path + "?" + query)
    assert (path + "?" + expected_query, changed) == r.uri(path + "?" + query)  # from the memo


def test_readme_redaction_section_lists_every_default():
    """Operators read the README, not the code: every default header, name
    and word the rules use is written there."""
    from pathlib import Path

    from sniffd import redact

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("\n## Redaction (on by default)\n", 1)[1].split("\n## ", 1)[0]
    words = set(section.lower().replace("`", " ").replace(",", " ").split())
    missing = sorted(
        n for n in (DEFAULT_HEADERS | DEFAULT_PARAMS | redact.NOT_SECRET_HEADERS | redact.URL_HEADER_WORDS
                    | set(redact.SECRET_STEMS) | redact.SECRET_WORDS | redact.SECRET_LAST_WORDS)
        if n not in words
    )
    phrases = sorted(" ".join(p) for p in redact.SECRET_LAST_PHRASES if "`" + " ".join(p) + "`" not in section)
    assert ([], []) == (missing, phrases)
