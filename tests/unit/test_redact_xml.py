"""Redaction of XML bodies (sniffd.redact.Redactor.xml_text, applied by
sniffd.bodies to application/xml, text/xml and */*+xml): WS-Security
passwords and other secret-named elements and attributes become tokens.

Expected tokens come from ``tok``, an independent reference (``hmac.new``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from sniffd.bodies import BodyCapture
from sniffd.redact import Redactor

KEY = b"0123456789abcdef-test-key"
R = Redactor(KEY)


def tok(secret: str | bytes) -> str:
    if isinstance(secret, str):
        secret = secret.encode()
    return "hmac:" + hmac.new(KEY, secret, hashlib.sha256).hexdigest()[:16]


WSSE = (
    '<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Header>'
    '<wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">'
    "<wsse:UsernameToken><wsse:Username>bob</wsse:Username>"
    '<wsse:Password Type="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText">'
    "{pw}</wsse:Password><wsse:Nonce>bm9uY2U=</wsse:Nonce></wsse:UsernameToken></wsse:Security>"
    "</soap:Header><soap:Body><getQuote><symbol>ACME</symbol></getQuote></soap:Body></soap:Envelope>"
)

XML_CASES = [
    # (name, text in, text out or None for unchanged)
    ("wsse_password_text", WSSE.format(pw="s3cr3t-ws"), WSSE.format(pw=tok("s3cr3t-ws"))),
    (
        "any_prefix_and_digest_type",
        '<o:Password Type="...#PasswordDigest">ZGlnZXN0</o:Password>',
        f'<o:Password Type="...#PasswordDigest">{tok("ZGlnZXN0")}</o:Password>',
    ),
    ("no_prefix_whitespace_kept", "<Password>\n  pw 1\n</Password>", f"<Password>\n  {tok('pw 1')}\n</Password>"),
    ("entities_resolved_for_the_hash", "<Password>a&amp;b&#x21;</Password>", f"<Password>{tok('a&b!')}</Password>"),
    ("cdata_unwrapped_for_the_hash", "<Password><![CDATA[a<b]]></Password>", f"<Password>{tok('a<b')}</Password>"),
    (
        "secret_names_by_words",
        (
            "<r><SecretAccessKey>sk</SecretAccessKey><SessionToken>st</SessionToken><AccessKeyId>AKIA</AccessKeyId>"
            "<user_password>up</user_password><Expiration>2026</Expiration></r>"
        ),
        (
            f"<r><SecretAccessKey>{tok('sk')}</SecretAccessKey><SessionToken>{tok('st')}</SessionToken>"
            f"<AccessKeyId>{tok('AKIA')}</AccessKeyId><user_password>{tok('up')}</user_password><Expiration>2026</Expiration></r>"
        ),
    ),
    (
        "secret_attribute",
        '<login user="bob" password="p&lt;1" token=\'t1\' xmlns:password="urn:x"/>',
        f'<login user="bob" password="{tok("p<1")}" token=\'{tok("t1")}\' xmlns:password="urn:x"/>',
    ),
    (
        "saml_assertion_whole",
        (
            '<samlp:Response ID="r1"><saml:Assertion ID="a1"><saml:Subject>bob</saml:Subject></saml:Assertion>'
            "<x>1</x></samlp:Response>"
        ),
        (
            f'<samlp:Response ID="r1"><saml:Assertion ID="a1">{tok("<saml:Subject>bob</saml:Subject>")}</saml:Assertion>'
            "<x>1</x></samlp:Response>"
        ),
    ),
    ("container_named_like_a_secret_is_not_a_leaf", "<PasswordPolicy><MinLength>8</MinLength></PasswordPolicy>", None),
    ("empty_password_kept", "<Password></Password><Password/>", None),
    ("no_secrets", '<?xml version="1.0"?><a b="1"><c>2</c><!-- password: x --></a>', None),
    ("cut_inside_the_password", "<a><wsse:Password>abc", f"<a><wsse:Password>{tok('abc')}"),
    ("cut_inside_a_secret_attribute", '<a password="abc" b="1" token="de', f'<a password="{tok("abc")}" b="1" token="{tok("de")}'),
    ("cut_inside_an_assertion", "<saml:Assertion><a>1</a><b", f"<saml:Assertion>{tok('<a>1</a><b')}"),
    ("not_xml", "password: x < y", None),
]


@pytest.mark.parametrize("name,given,expected", XML_CASES, ids=[c[0] for c in XML_CASES])
def test_xml_text(name, given, expected):
    if expected is None:
        out = R.xml_text(given)
        assert (given, False) == out
        assert given is out[0]
    else:
        assert (expected, True) == R.xml_text(given)


def _capture(body: bytes, content_type: str) -> dict:
    buf = BodyCapture(redactor=R).start({"content-type": content_type})
    assert buf is not None
    buf.feed(body)
    return buf.finish()


def _value(**kw) -> dict:
    v = {"encoding": "utf-8", "data": None, "bytes": 0, "truncated": False, "gap": False, "content_encoding": None,
         "decoded": True, "decode_error": None, "decoded_truncated": False, "redacted": False}
    v.update(kw)
    return v


@pytest.mark.parametrize("content_type", ["text/xml; charset=utf-8", "application/soap+xml", "application/xml"])
def test_xml_body_wsse_password_redacted(content_type):
    body = WSSE.format(pw="s3cr3t-ws").encode()
    assert _value(data=WSSE.format(pw=tok("s3cr3t-ws")), bytes=len(body), redacted=True) == _capture(body, content_type)


def test_xml_body_not_utf8_redacted_and_base64():
    body = "<a>caf\xe9</a><Password>p\xe9</Password>".encode("latin-1")
    expected = b"<a>caf\xe9</a><Password>" + tok(b"p\xe9").encode() + b"</Password>"
    assert _value(encoding="base64", data=base64.b64encode(expected).decode(), bytes=len(body), redacted=True) == _capture(
        body, "text/xml")


def test_xml_body_in_utf16_is_withheld():
    """The scan reads ASCII-compatible text only; UTF-16 could hide a password from it."""
    body = "<Password>p</Password>".encode("utf-16")
    assert _value(encoding=None, bytes=len(body), redacted=True) == _capture(body, "text/xml")


def test_html_body_is_not_scanned_as_xml():
    body = b"<p>Password</p><Password>shown</Password>"
    assert _value(data=body.decode(), bytes=len(body)) == _capture(body, "text/html")
