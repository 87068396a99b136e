"""Body capture (sniffd.bodies): headers and body bytes in, the JSON-ready
body value out.  Caps on raw and decoded size, content decoding (gzip,
deflate, br) bounded against bombs, text or base64, redaction of JSON and
form bodies.

Expected tokens come from ``tok``, an independent HMAC reference.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import tracemalloc
import zlib

import brotli
import pytest

from sniffd.bodies import DEFAULT_CONTENT_TYPES, BodyCapture
from sniffd.redact import Redactor

KEY = b"0123456789abcdef-test-key"
KIB = 1024
MIB = 1024 * 1024


def tok(secret: bytes | str) -> str:
    if isinstance(secret, str):
        secret = secret.encode()
    return "hmac:" + hmac.new(KEY, secret, hashlib.sha256).hexdigest()[:16]


def value(**changes) -> dict:
    """The body value of a clean, short, uncompressed capture, with changes."""
    v = {
        "encoding": "utf-8",
        "data": "",
        "bytes": 0,
        "truncated": False,
        "gap": False,
        "content_encoding": None,
        "decoded": True,
        "decode_error": None,
        "decoded_truncated": False,
        "redacted": False,
    }
    assert set(changes) <= set(v)
    v.update(changes)
    return v


def capture(body: bytes, headers: dict[str, str], cap: BodyCapture | None = None, pieces: int = 1) -> dict:
    buf = (cap or BodyCapture()).start(headers)
    assert buf is not None
    step = max(1, -(-len(body) // pieces))
    for i in range(0, len(body), step):
        buf.feed(body[i : i + step])
    return buf.finish()


TEXT = {"content-type": "text/plain"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ------------------------------------------------------------------ allowlist

ALLOW_CASES = [
    ("text/plain", True),
    ("text/html; charset=utf-8", True),
    ("Text/HTML", True),
    ("application/json", True),
    ("application/JSON; charset=UTF-8", True),
    ("application/vnd.api+json", True),
    ("application/x-www-form-urlencoded", True),
    ("application/xml", True),
    ("application/soap+xml; charset=utf-8", True),
    ("application/javascript", True),
    ("image/png", False),
    ("application/octet-stream", False),
    ("multipart/form-data; boundary=x", False),
    ("application/jsonp", False),
    ("", False),
    (None, False),
]


@pytest.mark.parametrize("content_type,allowed", ALLOW_CASES, ids=[str(c[0]) for c in ALLOW_CASES])
def test_content_type_allowlist(content_type, allowed):
    headers = {} if content_type is None else {"content-type": content_type}
    assert allowed == (BodyCapture().start(headers) is not None)


def test_content_type_header_name_any_case_and_custom_list():
    cap = BodyCapture(content_types=("image/*", "Application/Octet-Stream"))
    assert cap.start({"Content-Type": "image/png"}) is not None
    assert cap.start({"content-type": "application/octet-stream"}) is not None
    assert cap.start({"content-type": "text/plain"}) is None
    assert BodyCapture(content_types=("*/*",)).start({"content-type": "video/mp4"}) is not None


def test_default_content_types():
    assert (
        "text/*",
        "application/json",
        "application/*+json",
        "application/x-www-form-urlencoded",
        "application/xml",
        "application/*+xml",
        "application/javascript",
    ) == DEFAULT_CONTENT_TYPES


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"max_body_bytes": -1}, "max_body_bytes"),
        ({"max_decoded_bytes": "1"}, "max_decoded_bytes"),
        ({"content_types": "text/*"}, "content_types"),
        ({"content_types": ("text",)}, "content_types"),
        ({"json_keys": "password"}, "json_keys"),
    ],
)
def test_bad_configuration_raises_naming_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BodyCapture(**kwargs)


# ------------------------------------------------------------------ raw cap


def test_short_text_body_kept_whole():
    assert value(data="hello\r\nworld\t!", bytes=14) == capture(b"hello\r\nworld\t!", TEXT, pieces=3)


def test_empty_body():
    assert value() == capture(b"", TEXT)


def test_raw_cap_keeps_prefix_and_marks_truncated():
    cap = BodyCapture(max_body_bytes=10)
    assert value(data="0123456789", bytes=10, truncated=True) == capture(b"0123456789abcdef", TEXT, cap, pieces=5)


def test_raw_cap_exactly_reached_is_not_truncated():
    cap = BodyCapture(max_body_bytes=10)
    assert value(data="0123456789", bytes=10) == capture(b"0123456789", TEXT, cap, pieces=10)


def test_raw_cap_counts_dropped_bytes():
    buf = BodyCapture(max_body_bytes=4).start(TEXT)
    buf.feed(b"abc")
    buf.feed(b"defgh")
    buf.feed(b"ij")
    assert 6 == buf.dropped_bytes
    assert value(data="abcd", bytes=4, truncated=True) == buf.finish()


def test_gap_stops_capture_at_the_hole():
    buf = BodyCapture().start(TEXT)
    buf.feed(b"before ")
    buf.gap(100)
    buf.feed(b"after")
    assert value(data="before ", bytes=7, gap=True) == buf.finish()
    assert 5 == buf.dropped_bytes


def test_utf8_cut_by_raw_cap_drops_the_partial_character():
    cap = BodyCapture(max_body_bytes=4)
    # "aé€" = 61 c3a9 e282ac: the cap falls inside the euro sign.
    assert value(data="aé", bytes=4, truncated=True) == capture("aé€".encode(), TEXT, cap)


def test_utf8_incomplete_at_end_of_whole_body_is_binary():
    assert value(encoding="base64", data=b64(b"a\xe2\x82"), bytes=3) == capture(b"a\xe2\x82", TEXT)


def test_feed_after_finish_and_double_finish_raise():
    buf = BodyCapture().start(TEXT)
    buf.finish()
    with pytest.raises(RuntimeError):
        buf.feed(b"x")
    with pytest.raises(RuntimeError):
        buf.finish()


# ------------------------------------------------------------------ text or base64

ENCODING_CASES = [
    ("ascii", b"plain text\n", "utf-8"),
    ("utf8", "naïve café ☕ 🙂".encode(), "utf-8"),
    ("form_feed_is_text", b"page1\x0cpage2", "utf-8"),
    ("nul_is_binary", b"abc\x00def", "base64"),
    ("escape_is_binary", b"\x1b[31mred", "base64"),
    ("del_is_binary", b"a\x7f", "base64"),
    ("latin1_is_binary", "café".encode("latin-1"), "base64"),
    ("png_is_binary", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "base64"),
    ("encoded_surrogate_is_binary", b"\xed\xb2\x80", "base64"),
]


@pytest.mark.parametrize("name,body,encoding", ENCODING_CASES, ids=[c[0] for c in ENCODING_CASES])
def test_text_or_base64(name, body, encoding):
    data = body.decode() if encoding == "utf-8" else b64(body)
    assert value(encoding=encoding, data=data, bytes=len(body)) == capture(body, TEXT)


# ------------------------------------------------------------------ content decoding

HTML = ("<html><body>" + "Hello, world! " * 200 + "</body></html>").encode()


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


DECODE_CASES = [
    ("gzip", "gzip", gzip.compress(HTML)),
    ("x_gzip_alias", "x-gzip", gzip.compress(HTML)),
    ("gzip_any_case", "GZip", gzip.compress(HTML)),
    ("deflate_zlib_wrapped", "deflate", zlib.compress(HTML)),
    ("deflate_raw", "deflate", raw_deflate(HTML)),
    ("br", "br", brotli.compress(HTML)),
    ("identity_then_gzip", "identity, gzip", gzip.compress(HTML)),
    ("gzip_two_members", "gzip", gzip.compress(HTML[:1000]) + gzip.compress(HTML[1000:])),
]


@pytest.mark.parametrize("name,coding,body", DECODE_CASES, ids=[c[0] for c in DECODE_CASES])
def test_content_decoding(name, coding, body):
    expected = value(data=HTML.decode(), bytes=len(body), content_encoding=coding.split(", ")[-1].lower().lstrip("x-"))
    assert expected == capture(body, {"content-type": "text/html", "content-encoding": coding}, pieces=7)


def test_identity_is_no_content_encoding():
    assert value(data="abc", bytes=3) == capture(b"abc", {"content-type": "text/plain", "content-encoding": "identity"})


def test_empty_gzip_body_decodes_to_nothing():
    assert value(content_encoding="gzip") == capture(b"", {"content-type": "text/plain", "content-encoding": "gzip"})


@pytest.mark.parametrize("coding", ["zstd", "compress", "gzip, br"])
def test_unsupported_encoding_keeps_raw_bytes(coding):
    body = b"\x28\xb5\x2f\xfd\x00\x01"
    expected = value(
        encoding="base64",
        data=b64(body),
        bytes=6,
        content_encoding=coding,
        decoded=False,
        decode_error="unsupported_encoding",
    )
    assert expected == capture(body, {"content-type": "text/plain", "content-encoding": coding})


CORRUPT_CASES = [
    ("gzip_bad_header", "gzip", b"\x1f\x8b\x08\x00garbage-garbage-garbage"),
    ("gzip_not_gzip", "gzip", b"plain text pretending to be gzip"),
    ("gzip_bad_crc", "gzip", gzip.compress(b"hello")[:-8] + b"\x00\x00\x00\x00\x05\x00\x00\x00"),
    ("deflate_garbage", "deflate", b"\xff\xff\xff\xff\xff\xff"),
    ("br_garbage", "br", b"\xff\xff\xff\xff garbage"),
    ("br_trailing_garbage", "br", brotli.compress(b"hello") + b"garbage"),
]


@pytest.mark.parametrize("name,coding,body", CORRUPT_CASES, ids=[c[0] for c in CORRUPT_CASES])
def test_corrupt_compressed_body_sets_decode_error_without_raising(name, coding, body):
    got = capture(body, {"content-type": "text/plain", "content-encoding": coding})
    assert (
        value(
            encoding=got["encoding"],
            data=got["data"],
            bytes=len(body),
            content_encoding=coding,
            decoded=False,
            decode_error="corrupt",
        )
        == got
    )
    # The raw bytes as sent are what is kept.
    kept = got["data"].encode() if got["encoding"] == "utf-8" else base64.b64decode(got["data"])
    assert body == kept


@pytest.mark.parametrize(
    "coding,compress", [("gzip", gzip.compress), ("br", brotli.compress), ("deflate", zlib.compress)]
)
def test_compressed_body_cut_by_raw_cap_decodes_as_far_as_it_goes(coding, compress):
    text = "".join(f"line {i:05d} of a long log\n" for i in range(20000)).encode()
    body = compress(text)
    cap = BodyCapture(max_body_bytes=len(body) // 2)
    got = capture(body, {"content-type": "text/plain", "content-encoding": coding}, cap, pieces=3)
    decoded = got.pop("data").encode()
    assert len(decoded) > 1000
    assert text.startswith(decoded)
    expected = value(bytes=len(body) // 2, truncated=True, content_encoding=coding)
    del expected["data"]
    assert expected == got


@pytest.mark.parametrize("coding,compress", [("gzip", gzip.compress), ("br", brotli.compress)])
def test_compressed_stream_ending_early_is_incomplete(coding, compress):
    """Not cut by the cap or a gap: the sender stopped mid-stream."""
    text = "".join(f"line {i:05d}\n" for i in range(5000)).encode()
    body = compress(text)[:-20]
    got = capture(body, {"content-type": "text/plain", "content-encoding": coding})
    decoded = got.pop("data").encode()
    assert text.startswith(decoded)
    expected = value(bytes=len(body), content_encoding=coding, decode_error="incomplete")
    del expected["data"]
    assert expected == got


def test_decoded_size_exactly_at_cap_is_not_truncated():
    cap = BodyCapture(max_decoded_bytes=1000)
    for coding, compress in (("gzip", gzip.compress), ("br", brotli.compress)):
        body = compress(b"x" * 1000)
        headers = {"content-type": "text/plain", "content-encoding": coding}
        assert value(data="x" * 1000, bytes=len(body), content_encoding=coding) == capture(body, headers, cap)
        body = compress(b"x" * 1001)
        assert value(data="x" * 1000, bytes=len(body), content_encoding=coding, decoded_truncated=True) == capture(
            body, headers, cap
        )


def test_decoded_cap_zero():
    cap = BodyCapture(max_decoded_bytes=0)
    for coding, compress in (("gzip", gzip.compress), ("br", brotli.compress)):
        body = compress(b"abc")
        headers = {"content-type": "text/plain", "content-encoding": coding}
        assert value(bytes=len(body), content_encoding=coding, decoded_truncated=True) == capture(body, headers, cap)


# ------------------------------------------------------------------ bombs

BOMB_BYTES = 50 * MIB


def measure_finish(body: bytes, headers: dict[str, str], cap: BodyCapture) -> tuple[dict, int]:
    buf = cap.start(headers)
    buf.feed(body)
    tracemalloc.start()
    try:
        got = buf.finish()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return got, peak


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    text = b"A" * BOMB_BYTES
    zeros = bytes(BOMB_BYTES)
    return {
        "gzip_text": gzip.compress(text, 9),
        "br_text": brotli.compress(text, quality=11),
        "gzip_zeros": gzip.compress(zeros, 9),
        "br_zeros": brotli.compress(zeros, quality=11),
    }


@pytest.mark.parametrize("coding", ["gzip", "br"])
def test_text_bomb_costs_about_twice_max_decoded_bytes(bombs, coding):
    """50 MiB of text in ~50 KiB (gzip) or ~100 bytes (br): decoding stops at
    the cap; the peak is the decoded bytes plus the str made of them."""
    body = bombs[f"{coding}_text"]
    assert len(body) <= 64 * KIB
    got, peak = measure_finish(body, {"content-type": "text/plain", "content-encoding": coding}, BodyCapture())
    assert "A" * MIB == got.pop("data")
    expected = value(bytes=len(body), content_encoding=coding, decoded_truncated=True)
    del expected["data"]
    assert expected == got
    assert peak < 2.1 * MIB, peak


@pytest.mark.parametrize("coding", ["gzip", "br"])
def test_zero_bomb_is_base64_and_costs_under_three_times_max_decoded_bytes(bombs, coding):
    """NULs are binary: base64 is 4/3 the size, and the str is made from it."""
    body = bombs[f"{coding}_zeros"]
    got, peak = measure_finish(body, {"content-type": "text/plain", "content-encoding": coding}, BodyCapture())
    assert b64(bytes(MIB)) == got.pop("data")
    expected = value(encoding="base64", bytes=len(body), content_encoding=coding, decoded_truncated=True)
    del expected["data"]
    assert expected == got
    assert peak < 3 * MIB, peak


def test_bomb_with_small_cap_stays_small(bombs):
    cap = BodyCapture(max_decoded_bytes=64 * KIB)
    for coding in ("gzip", "br"):
        got, peak = measure_finish(
            bombs[f"{coding}_text"], {"content-type": "text/plain", "content-encoding": coding}, cap
        )
        assert (64 * KIB, True) == (len(got["data"]), got["decoded_truncated"])
        # brotli hands back ~32 KiB blocks whatever the limit: allow one.
        assert peak < 2 * 64 * KIB + 3 * 32 * KIB + len(bombs[f"{coding}_text"]), (coding, peak)


# ------------------------------------------------------------------ redaction

REDACTOR = Redactor(KEY)
JSON = {"content-type": "application/json; charset=utf-8"}
FORM = {"content-type": "application/x-www-form-urlencoded"}


def test_json_body_secret_keys_redacted_at_any_depth():
    body = json.dumps(
        {"user": "bob", "password": "hunter2", "items": [{"id": 1, "apiKey": "k"}, {"nested": {"token": [1, 2]}}]}
    ).encode()
    expected = (
        '{"user": "bob", "password": "' + tok("hunter2") + '", "items": [{"id": 1, "apiKey": "' + tok("k") + '"}, '
        '{"nested": {"token": "' + tok("[1,2]") + '"}}]}'
    )
    got = capture(body, JSON, BodyCapture(redactor=REDACTOR))
    assert value(data=expected, bytes=len(body), redacted=True) == got
    json.loads(got["data"])


def test_vendor_json_type_redacted():
    body = b'{"data":{"attributes":{"refresh_token":"r"}}}'
    got = capture(body, {"content-type": "application/vnd.api+json"}, BodyCapture(redactor=REDACTOR))
    assert (
        value(data='{"data":{"attributes":{"refresh_token":"' + tok("r") + '"}}}', bytes=len(body), redacted=True)
        == got
    )


def test_json_body_without_secrets_kept_as_sent():
    body = b'{ "a" : 1.50, "b": [true, null] }'
    assert value(data=body.decode(), bytes=len(body)) == capture(body, JSON, BodyCapture(redactor=REDACTOR))


def test_gzipped_json_body_redacted_after_decoding():
    body = gzip.compress(b'{"access_token":"at","expires_in":3600}')
    headers = {**JSON, "content-encoding": "gzip"}
    expected = value(
        data='{"access_token":"' + tok("at") + '","expires_in":3600}',
        bytes=len(body),
        content_encoding="gzip",
        redacted=True,
    )
    assert expected == capture(body, headers, BodyCapture(redactor=REDACTOR))


def test_json_body_cut_by_raw_cap_still_redacted():
    body = b'{"user":"bob","password":"a-very-long-password"}'
    cap = BodyCapture(max_body_bytes=30, redactor=REDACTOR)  # cut inside the password
    expected = value(data='{"user":"bob","password":"' + tok('"a-ve') + '"', bytes=30, truncated=True, redacted=True)
    assert expected == capture(body, JSON, cap)


def test_json_body_json_keys_override():
    body = b'{"ssn":"123","password":"p"}'
    cap = BodyCapture(redactor=REDACTOR, json_keys=frozenset({"ssn"}))
    assert value(data='{"ssn":"' + tok("123") + '","password":"p"}', bytes=len(body), redacted=True) == capture(
        body, JSON, cap
    )


def test_json_body_not_utf8_redacted_and_base64():
    body = b'{"token":"t","name":"caf\xe9"}'
    expected_bytes = b'{"token":"' + tok("t").encode() + b'","name":"caf\xe9"}'
    expected = value(encoding="base64", data=b64(expected_bytes), bytes=len(body), redacted=True)
    assert expected == capture(body, JSON, BodyCapture(redactor=REDACTOR))


def test_form_body_redacted():
    body = b"user=bob&password=hunter2&remember=on"
    expected = value(data="user=bob&password=" + tok("hunter2") + "&remember=on", bytes=len(body), redacted=True)
    assert expected == capture(body, FORM, BodyCapture(redactor=REDACTOR), pieces=4)


def test_without_redactor_bodies_kept_as_sent():
    body = b'{"password":"hunter2"}'
    assert value(data=body.decode(), bytes=len(body)) == capture(body, JSON)


@pytest.mark.parametrize("headers", [JSON, FORM])
def test_undecodable_body_that_needs_redaction_is_withheld(headers):
    """Secrets in compressed bytes cannot be found, so none of it is kept."""
    body = b"\x1f\x8b\x08\x00not really gzip"
    got = capture(body, {**headers, "content-encoding": "gzip"}, BodyCapture(redactor=REDACTOR))
    expected = value(
        encoding=None,
        data=None,
        bytes=len(body),
        content_encoding="gzip",
        decoded=False,
        decode_error="corrupt",
        redacted=True,
    )
    assert expected == got


def test_text_bodies_are_not_redacted():
    body = b"password=hunter2"
    assert value(data="password=hunter2", bytes=16) == capture(body, TEXT, BodyCapture(redactor=REDACTOR))


def test_finish_value_is_json_serialisable():
    got = capture(
        gzip.compress(b'{"token":"\xff"}'), {**JSON, "content-encoding": "gzip"}, BodyCapture(redactor=REDACTOR)
    )
    assert got == json.loads(json.dumps(got))
