"""sniffd/http/_fields.c held to its Python reference.

``fields(block, names, max_count, max_bytes)`` is the fast path of
``MessageReader._fields`` and ``head(...)`` that of ``syntax.request_line`` /
``syntax.status_line`` plus ``_fields`` (see ``MessageReader._whole_head``).
Each may decline (None) and leave the input to the reference; when it
answers, the answer must be exactly the reference's, and the reference must
have found nothing odd in that input (no anomaly, no odd field name), since
the fast path names no anomaly.  For ``fields`` the converse holds too: it
declines exactly when the reference names something odd, so the common
header section never leaves the fast path.  Inputs: random bytes, and
realistic header sections mutated (odd names, whitespace before the colon,
obs-fold, bare LF, CR in values, non-UTF-8 values, repeated names, empty
values, more fields or bytes than the limits allow); random start-line
offsets for ``head``.

Both share the reader's cache of header names (bytes -> lowercase str,
bounded at 512 entries): after the C path and then the reference ran, as
the reader runs them, it holds exactly what the reference alone leaves.

The suite fails if the extension was not built (scripts/install provides
gcc and the Python headers), as test_batch_decode.py does for sniffd._batch.
"""

from __future__ import annotations

import os

import pytest
from httpdiff import NAMES_MAX, fields_parity, head_parity, python_fields, python_head
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sniffd.http import reader

try:
    from sniffd.http import _fields
except ImportError:  # reported by test_the_c_fields_extension_is_built_and_used
    _fields = None

needs_c = pytest.mark.skipif(_fields is None, reason="sniffd.http._fields not built")
EXAMPLES = int(os.environ.get("SNIFFD_FUZZ_EXAMPLES", "0"))


def test_the_c_fields_extension_is_built_and_used() -> None:
    """Without it sniffd is correct but slower, and that must not pass
    unnoticed."""
    assert _fields is not None
    assert (reader._cfields, reader._chead) == (_fields.fields, _fields.head)


# -------------------------------------------------------------- strategies

NAMES = st.one_of(
    st.sampled_from([b"Host", b"host", b"HOST", b"Accept", b"Content-Length", b"Transfer-Encoding", b"Set-Cookie",
                     b"X-Forwarded-For", b"x"]),
    st.text("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", min_size=1,
            max_size=12).map(lambda s: s.encode()),
)
ODD_NAMES = st.sampled_from([b"", b"Host ", b" Host", b"Bad Name", b"na(me)", b"a@b", b"\x80x", b"Host\t", b"\x00",
                             b"Caf\xc3\xa9", b"a\rb"])
SEPARATORS = st.sampled_from([b":", b": ", b":\t", b":  ", b" :", b"\t:", b"::"])
VALUES = st.one_of(
    st.sampled_from([b"", b"example.test", b"  padded  ", b"\tx\t", b"a\rb", b"\r", b"\xff\xfe", b"caf\xc3\xa9",
                     b"\xed\xa0\x80", b"\xe2\x82", b"a: b", b"\x00\x7f"]),
    st.binary(max_size=16).map(lambda v: v.replace(b"\n", b"")),
)
ENDINGS = st.sampled_from([b"\r\n", b"\r\n", b"\n", b"\r\r\n"])


@st.composite
def lines(draw) -> bytes:
    kind = draw(st.sampled_from(["field"] * 6 + ["odd name", "obs-fold", "no colon", "blank"]))
    if kind == "field":
        line = draw(NAMES) + draw(SEPARATORS) + draw(VALUES)
    elif kind == "odd name":
        line = draw(ODD_NAMES) + b":" + draw(VALUES)
    elif kind == "obs-fold":
        line = draw(st.sampled_from([b" ", b"\t", b"  "])) + draw(VALUES)
    elif kind == "no colon":
        line = draw(st.sampled_from([b"garbage", b"Host", b"GET / HTTP/1.1", b"\xff"]))
    else:
        line = draw(st.sampled_from([b"", b" ", b"\t"]))
    return line + draw(ENDINGS)


PLAIN_LINE = st.tuples(NAMES, st.sampled_from([b":", b": ", b":\t"]), VALUES, ENDINGS).map(b"".join)


PLAIN_BLOCK = st.lists(PLAIN_LINE, max_size=8).map(b"".join)


@st.composite
def blocks(draw) -> bytes:
    """A header section (the fields after the start line): plain, realistic
    and mutated, or random bytes; always ending with a line end, as every
    block the reader passes does (the functions' documented input)."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        block = draw(st.binary(max_size=80))
    elif kind <= 2:
        block = draw(PLAIN_BLOCK)
    else:
        ls = draw(st.lists(lines(), max_size=10))
        if ls and draw(st.booleans()):
            ls.insert(draw(st.integers(0, len(ls))), ls[draw(st.integers(0, len(ls) - 1))].upper())  # a repeat
        block = b"".join(ls)
    if not block.endswith(b"\n"):
        block += b"\n"
    return block


LIMITS = st.one_of(st.just((256, 65536)), st.just((256, 65536)), st.tuples(st.integers(0, 6), st.integers(0, 120)))


@st.composite
def cache(draw) -> dict:
    """The names cache as the reader may hold it: empty, some names, or
    within a few entries of its bound."""
    size = draw(st.sampled_from([0, 0, 3, NAMES_MAX - 3, NAMES_MAX - 1, NAMES_MAX]))
    names = {}
    if size > 3:
        names = {f"Filler-{i}".encode(): f"filler-{i}" for i in range(size)}
    else:
        for raw in draw(st.lists(NAMES, max_size=size)):
            names[raw] = raw.decode().lower()
    return names


_TARGET_T = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
_TARGET_T = bytes(_TARGET_T[i % len(_TARGET_T)] for i in range(256))
COMMON_REQUEST_LINE = st.tuples(NAMES, st.binary(min_size=1, max_size=20), st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"])).map(
    lambda t: t[0] + b" /" + t[1].translate(_TARGET_T) + b" " + t[2])
COMMON_STATUS_LINE = st.tuples(st.sampled_from([b"HTTP/1.1 ", b"HTTP/1.0 "]), st.integers(0, 999),
                               st.sampled_from([b"", b" ", b" OK", b" Not Found", b" \t x \xff", b"  two"])).map(
    lambda t: t[0] + b"%03d" % t[1] + t[2])
REQUEST_LINES = st.one_of(
    COMMON_REQUEST_LINE,
    st.sampled_from([b"GET / HTTP/1.1", b"GET /a?b=c HTTP/1.0", b"A / HTTP/1.1", b"BREW /pot HTTP/1.1",
                     b"get / HTTP/1.1", b"OPTIONS * HTTP/1.1", b"GET  / HTTP/1.1", b"GET /\x80\xff HTTP/1.1",
                     b"GET /a\x7f HTTP/1.1", b"GET / HTTP/1.2", b"GET / HTTP/2.0", b"GET / HTTP/0.9", b"GET /",
                     b"GET / http/1.1", b"GET /a b HTTP/1.1", b"GET\t/ HTTP/1.1", b" GET / HTTP/1.1",
                     b"CONNECT h:443 HTTP/1.1", b"GET / HTTP/1.1 ", b"GET /" + b"x" * 40 + b" HTTP/1.1",
                     b"M-SEARCH * HTTP/1.1", b"GET /\r HTTP/1.1", b"GET / HTTP/1.1\r"]),
    st.binary(max_size=30).map(lambda v: v.replace(b"\n", b"")),
    st.tuples(st.binary(min_size=1, max_size=6), st.binary(max_size=12), st.sampled_from([b"HTTP/1.1", b"HTTP/1.0"])).map(
        lambda t: (t[0] + b" " + t[1] + b" " + t[2]).replace(b"\n", b"")),
)
STATUS_LINES = st.one_of(
    COMMON_STATUS_LINE,
    st.sampled_from([b"HTTP/1.1 200 OK", b"HTTP/1.0 404 Not Found", b"HTTP/1.1 200", b"HTTP/1.1 200 ",
                     b"HTTP/1.1 200  OK", b"HTTP/1.1 2XX OK", b"HTTP/1.1 20 OK", b"HTTP/1.1 2000 OK",
                     b"http/1.1 200 OK", b"HTTP/2.0 200 OK", b"HTTP/1.1  200 OK", b"HTTP/1.1\t200 OK",
                     b"HTTP/1.1 200 Caf\xc3\xa9", b"HTTP/1.1 200 \xff", b"HTTP/1.1 200 O\rK", b" HTTP/1.1 200 OK",
                     b"HTTP/1.1 200\tOK", b"HTTP/1.1 999 x", b"HTTP/1.12 200 OK"]),
    st.binary(max_size=30).map(lambda v: v.replace(b"\n", b"")),
    st.tuples(st.sampled_from([b"HTTP/1.1 ", b"HTTP/1.0 "]), st.binary(max_size=16)).map(
        lambda t: (t[0] + t[1]).replace(b"\n", b"")),
)


# ------------------------------------------------------------------ tests


@needs_c
@settings(max_examples=EXAMPLES or 400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(block=blocks(), limits=LIMITS, names=cache())
def test_c_fields_equal_the_python_reference_or_decline_exactly_when_it_finds_something_odd(block, limits,
                                                                                            names) -> None:
    event(fields_parity(block, names, *limits))


def head_input(draw, is_request: bool) -> tuple:
    line = draw(REQUEST_LINES if is_request else STATUS_LINES)
    block = draw(PLAIN_BLOCK if draw(st.booleans()) else blocks())
    before = draw(st.sampled_from([b"", b"", b"junk\r\n", b"\r\n"]))
    eol_mark = draw(st.sampled_from([b"\r\n", b"\n"]))
    data = before + line + eol_mark + block + draw(st.sampled_from([b"\r\n", b"\n"])) + draw(st.binary(max_size=8))
    start = len(before)
    eol = start + len(line) + len(eol_mark) - 1
    fields_end = eol + 1 + len(block)
    if draw(st.integers(0, 9)) == 0:
        # Offsets a caller should never pass: head() must refuse, not read outside data.
        start, eol, fields_end = (draw(st.integers(-3, len(data) + 3)) for _ in range(3))
    return data, start, eol, fields_end


@needs_c
@settings(max_examples=EXAMPLES or 400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), is_request=st.booleans(), limits=LIMITS, max_uri=st.sampled_from([8192, 8192, 4, 16]),
       names=cache())
def test_c_head_equals_the_python_reference_or_declines(data, is_request, limits, max_uri, names) -> None:
    buf, start, eol, fields_end = head_input(data.draw, is_request)
    event(head_parity(buf, start, eol, fields_end, is_request, names, *limits, max_uri))


@needs_c
def test_c_head_takes_the_common_heads() -> None:
    """The fast path is used where it should be: a plain request and status
    line with plain fields (the properties above allow any None)."""
    names: dict = {}
    for line, is_request in ((b"GET /a?b=%20 HTTP/1.1", True), (b"M-SEARCH * HTTP/1.0", True),
                             (b"HTTP/1.1 200 OK", False), (b"HTTP/1.0 404", False), (b"HTTP/1.1 204 ", False)):
        buf = line + b"\r\nHost: example.test\r\nAccept: */*\r\n\r\n"
        eol = len(line) + 1
        got = _fields.head(buf, 0, eol, len(buf) - 2, is_request, names, 256, 65536, 8192)
        want, odd = python_head(buf, 0, eol, len(buf) - 2, is_request, {}, 256, 65536, 8192)
        assert ([], want) == (odd, got)


@needs_c
def test_names_cache_stops_at_512_entries_on_both_paths() -> None:
    full = {f"Filler-{i}".encode(): f"filler-{i}" for i in range(NAMES_MAX - 2)}
    block = b"".join(b"New-%d: v\r\n" % i for i in range(5))
    c_names, py_names = dict(full), dict(full)
    got = _fields.fields(block, c_names, 256, 65536)
    want, odd = python_fields(block, py_names, 256, 65536)
    assert ([], want) == (odd, got)
    assert py_names == c_names
    assert {b"New-0": "new-0", b"New-1": "new-1"} == {k: v for k, v in c_names.items() if k not in full}
    # Full: names are still lowercased, only not remembered.
    got = _fields.fields(b"Another-Name: x\n", c_names, 256, 65536)
    assert ({"another-name": "x"}, 1, 17) == got
    assert NAMES_MAX == len(c_names)


@needs_c
def test_names_cache_entries_are_used_as_the_reader_leaves_them() -> None:
    """A cached name is looked up, not recomputed: both paths give the
    cached key (the reader only ever caches a token's lowercase form)."""
    block = b"Host: a\r\nX-Y: b\r\n"
    assert ({"host": "a", "x-y": "b"}, 2, 17) == _fields.fields(block, {b"Host": "host"}, 256, 65536)
    c_names, py_names = {b"Host": "host"}, {b"Host": "host"}
    assert python_fields(block, py_names, 256, 65536)[0] == _fields.fields(block, c_names, 256, 65536)
    assert {b"Host": "host", b"X-Y": "x-y"} == py_names == c_names


@needs_c
def test_c_functions_refuse_wrong_argument_types() -> None:
    with pytest.raises(TypeError):
        _fields.fields(bytearray(b"a: b\n"), {}, 1, 1)
    with pytest.raises(TypeError):
        _fields.fields(b"a: b\n", [], 1, 1)
    with pytest.raises(TypeError):
        _fields.head(b"GET / HTTP/1.1\n\n", 0, 14, 15, True, {}, 1, 1)
