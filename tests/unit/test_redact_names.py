"""Redaction by name words (sniffd.redact.secret_by_words): a parameter,
JSON member or header name is secret when it is built from a secret word, not
only when it equals a listed name; and names that merely contain the letters
of one (``monkey``, ``keyword``, ``country_code``) are not.

Expected tokens come from ``tok``, an independent reference (``hmac.new``).
"""

from __future__ import annotations

import hashlib
import hmac

import pytest

from sniffd.redact import Redactor, name_words, secret_by_words

KEY = b"0123456789abcdef-test-key"
R = Redactor(KEY)


def tok(secret: str) -> str:
    return "hmac:" + hmac.new(KEY, secret.encode(), hashlib.sha256).hexdigest()[:16]


@pytest.mark.parametrize(
    "name,words",
    [
        ("user_password", ["user", "password"]),
        ("login.password", ["login", "password"]),
        ("userPassword", ["user", "password"]),
        ("X-Api-Key", ["x", "api", "key"]),
        ("user[sid]", ["user", "sid"]),
        ("SAMLResponse", ["saml", "response"]),
        ("APIKey", ["api", "key"]),
        ("api_key_2", ["api", "key"]),
        ("keyword", ["keyword"]),
    ],
)
def test_name_words(name, words):
    assert words == name_words(name)


SECRET = [
    # the shapes: a secret word inside a longer name
    "user_password", "login.password", "private_token", "oauth_token", "userPassword", "user[password]",
    # stems with the separators removed
    "accesstoken", "newpwd", "passphrase_hint", "client_secret", "AppSecret", "SAMLart", "x-jwt-assertion",
    # words anywhere
    "db_pass", "otp_code", "cvv2",
    # last words and phrases
    "x-api-key", "subscription-key", "basic_auth", "user_session", "user[sid]", "oauth_signature", "service_ticket",
    "client_assertion", "code_verifier", "auth_code", "device_code", "authorizationCode",
    # pagination cursors: opaque, often account state; redacted (the token keeps equality)
    "page_token", "next_token", "nextPageToken",
    # over-redacted by the "key" rule, on purpose
    "sort_key", "idempotency_key",
]  # fmt: skip
NOT_SECRET = [
    "keyword", "monkey", "key_id", "keyId", "keys_count", "country_code", "error_code", "zip_code", "passenger",
    "bypass", "footprint", "session_timeout", "author", "auth_type", "state", "nonce", "q", "page", "username",
    "signature_method", "sig_alg", "",
]  # fmt: skip


@pytest.mark.parametrize("name", SECRET)
def test_secret_by_words(name):
    assert secret_by_words(name)


@pytest.mark.parametrize("name", NOT_SECRET)
def test_not_secret_by_words(name):
    assert not secret_by_words(name)


@pytest.mark.parametrize("name", ["user_password", "login.password", "private_token", "oauth_token", "userPassword"])
def test_query_form_and_json_names_matched_by_words(name):
    assert (
        f"/a?{name}={tok('s1')}&q=1",
        f"{name}={tok('s2')}&q=1".encode(),
        {name: tok("s3"), "q": 1},
        ('{"' + name + '":"' + tok("s4") + '","q":1}', True),
    ) == (
        R.uri(f"/a?{name}=s1&q=1")[0],
        R.form(f"{name}=s2&q=1".encode()),
        R.json({name: "s3", "q": 1}),
        R.json_text('{"' + name + '":"s4","q":1}'),
    )


def test_innocuous_names_that_contain_a_secret_word_are_kept():
    uri = "/search?keyword=shoes&monkey=1&key_id=k7&country_code=FR&bypass=1"
    assert (uri, False) == R.uri(uri)
    assert ('{"keyword":"a","key_id":"b"}', False) == R.json_text('{"keyword":"a","key_id":"b"}')


def test_percent_encoded_word_name():
    assert (f"/a?user%5Fpassword={tok('p')}", True) == R.uri("/a?user%5Fpassword=p")


def test_word_rules_off_only_listed_names():
    r = Redactor(KEY, match_words=False)
    assert ("/a?user_password=p&upload_token=t", False) == r.uri("/a?user_password=p&upload_token=t")
    assert (f"/a?password={tok('p')}", True) == r.uri("/a?password=p")


def test_explicit_json_keys_are_matched_whole_without_word_rules():
    """``keys`` given to json_text replaces the names, word rules included."""
    assert ('{"user_password":"p","ssn":"' + tok("1") + '"}', True) == R.json_text(
        '{"user_password":"p","ssn":"1"}', frozenset({"ssn"}))


def test_the_redactors_own_params_passed_as_keys_keep_the_word_rules():
    """BodyCapture passes ``redactor.params`` as its JSON keys."""
    assert ('{"user_password":"' + tok("p") + '"}', True) == R.json_text('{"user_password":"p"}', R.params)
