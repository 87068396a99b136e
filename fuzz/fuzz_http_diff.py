"""Coverage-guided differential fuzzing of sniffd's HTTP/1.x parsing against
llhttp (httptools, strict mode: no lenient flag), and of _fields.c against
its Python reference (atheris, i.e. libFuzzer on instrumented Python).

Each input is one connection: a client stream and a server stream, cut into
segments and interleaved as a capture orders them.  sniffd's
``HttpSession`` must never raise and must give well-typed transactions that
make one-line records, whatever the bytes.  Where llhttp accepts the bytes,
sniffd must frame them as llhttp does (issue 9): every message llhttp
completed, in order, with the same offsets, start line, fields and body
length (tests/httpdiff.py normalises the two views and tells llhttp about
HEAD and about the end of the stream).  The comparison stops where llhttp
stops (its first error, an upgrade or CONNECT, the end of the input), and
where the two parsers are documented to part (``NORMALISED`` below, each
with the README section that says why).  Each stream's first head is also
given to ``_fields.head`` and ``_fields.fields`` and held to the Python
reference.

    byte 0        bit 0: sniffd parses heads with the Python reference alone
                  (_fields.c switched off); bits 1-3: client segment size,
                  SIZES[(b >> 1) & 7]; bits 4-6: server segment size,
                  SIZES[(b >> 4) & 7]; bit 7: the client's segments go
                  first whenever the order allows (else the server's)
    bytes 1-2 LE  length of the client stream (cut to what is left)
    then          the client stream, then the server stream (the rest)

Run (from the repository root):

    .venv/bin/python fuzz/fuzz_http_diff.py --make-seeds fuzz/corpus-http   # once (committed)
    mkdir -p fuzz/work-http fuzz/crashes
    .venv/bin/python fuzz/fuzz_http_diff.py -max_total_time=600 -timeout=20 -max_len=4096 \\
        -dict=fuzz/http.dict -artifact_prefix=fuzz/crashes/ fuzz/work-http/ fuzz/corpus-http/

A finding is written to fuzz/crashes/crash-<sha1>; replay it with
``.venv/bin/python fuzz/fuzz_http_diff.py fuzz/crashes/crash-<sha1>``, and
``--show FILE`` prints what the input is (streams, segments, both parsers'
messages).
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

try:
    import atheris
except ImportError:
    atheris = None

if atheris is not None and __name__ == "__main__" and "--make-seeds" not in sys.argv and "--show" not in sys.argv:
    with atheris.instrument_imports(include=["sniffd"]):
        import sniffd.http  # noqa: F401
        import sniffd.http.pairing  # noqa: F401
        import sniffd.http.reader  # noqa: F401
        import sniffd.http.session  # noqa: F401
        import sniffd.http.syntax  # noqa: F401

import httpdiff  # noqa: E402
from httpdiff import Seen, diff, llhttp_messages, sniffd_messages  # noqa: E402

# Segment sizes: 0 is the whole stream in one piece.
SIZES = (0, 1, 2, 3, 7, 16, 64, 536)
# Bound on what the head parity looks at, as the reader's defaults.
MAX_COUNT, MAX_BYTES, MAX_URI = 256, 65536, 8192
_LEN = struct.Struct("<H")


def decode(data: bytes) -> tuple[bytes, bytes, bool, int, int, bool]:
    """(client, server, python_only, client segment size, server segment size, client first)."""
    if not data:
        return b"", b"", False, 0, 0, True
    b0 = data[0]
    n = _LEN.unpack(data[1:3])[0] if len(data) >= 3 else 0
    rest = data[3:]
    return rest[:n], rest[n:], bool(b0 & 1), SIZES[(b0 >> 1) & 7], SIZES[(b0 >> 4) & 7], bool(b0 & 0x80)


def encode(client: bytes, server: bytes, python_only: bool = False, client_size: int = 0, server_size: int = 0,
           client_first: bool = True) -> bytes:
    b0 = int(python_only) | SIZES.index(client_size) << 1 | SIZES.index(server_size) << 4 | int(client_first) << 7
    return bytes([b0]) + _LEN.pack(len(client)) + client + server


# ------------------------------------------------------------- comparison

# Where sniffd and llhttp part on input llhttp accepts, by design (README,
# *What sniffd accepts*).  Each: what is left out of the comparison, and why.
# (Header values without their surrounding whitespace, and trailers among
# the fields, are tests/httpdiff.py's normalisation, for every comparison.)
NORMALISED = {
    "content_length_2_63": "A Content-Length of 2^63 or more: llhttp reads that many bytes (it takes up to 2^64-1); "
                           "sniffd flags http_cl_invalid and gives a request no body, a response the rest of the "
                           "connection (README *What sniffd accepts*, body framing).  That message and what follows "
                           "it in its direction are not compared.",
    "interim_with_body": "A 1xx response other than 100-103 that announces a body (Content-Length, chunked; a "
                         "server must not send either, RFC 9110 section 8.6): llhttp reads it; sniffd does not, "
                         "since a 1xx ends with its header section (RFC 9110 section 15.2; README *What sniffd "
                         "accepts*, body framing).  That response and the later ones are not compared.",
    "connect_without_target": "A CONNECT line without a target: llhttp's authority-form parser takes "
                              "\"CONNECT \\r\\n\" (an empty target) and \"CONNECT  HTTP/1.1\" (the version as the "
                              "target, HTTP/0.9); sniffd reads a request line without a target as README *What "
                              "sniffd accepts* says (uri null, the last word as version, http_start_line_lenient).  "
                              "Not compared (nothing after a CONNECT is).",
}
_CL_MAX = (1 << 63) - 1


def _interim_with_body(m: Seen) -> bool:
    return m.status is not None and 104 <= m.status < 200 and any(
        k in ("content-length", "transfer-encoding") for k, _ in m.headers)


def _beyond_cl(m: Seen) -> bool:
    for k, v in m.headers:
        if k == "content-length" and v.isascii() and v.isdigit() and int(v) > _CL_MAX:
            return True
    return False


def _upgrade_like(m: Seen) -> bool:
    """A request after which sniffd holds the client's bytes until the
    answer (README *CONNECT tunnels*; an Upgrade request likewise): what
    follows is compared no further."""
    return m.method == "CONNECT" or any(k == "upgrade" for k, _ in m.headers)


def compared(ll: httpdiff.Llhttp, requests: list[Seen] | None) -> list[Seen]:
    """The messages of llhttp's view that sniffd must reproduce exactly."""
    if requests is None:  # the client's side
        out = []
        for m in ll.messages:
            if _beyond_cl(m):
                break  # NORMALISED["content_length_2_63"]
            if m.method == "CONNECT" and m.version == "0.9" and (m.uri == "" or m.uri[:5].upper() == "HTTP/"):
                break  # NORMALISED["connect_without_target"]
            out.append(m)
            if _upgrade_like(m):
                break
        return out
    out = []
    for m, k in zip(ll.messages, ll.answers):
        if k is None or k >= len(requests):
            break  # answers a request llhttp did not read (or none)
        if _beyond_cl(m):
            break  # NORMALISED["content_length_2_63"]
        if _interim_with_body(m):
            break  # NORMALISED["interim_with_body"]
        req = requests[k]
        if req.method == "CONNECT":
            break  # a 2xx opens a tunnel llhttp cannot know of
        out.append(m)
        if m.status == 101:
            break  # another protocol follows
    return out


def check(client: bytes, server: bytes, python_only: bool, client_size: int, server_size: int,
          client_first: bool) -> dict:
    ll_req = llhttp_messages(client, True)
    methods = [m.method for m in ll_req.messages]
    ll_resp = llhttp_messages(server, False, lambda k: k < len(methods) and methods[k] == "HEAD")
    need = httpdiff.causal_need(len(server), len(client),
                                [(m.start, m.end, k) for m, k in zip(ll_resp.messages, ll_resp.answers)],
                                ll_req.head_ends)
    steps = httpdiff.schedule(len(client), len(server), httpdiff.every(len(client), client_size or len(client) + 1),
                              httpdiff.every(len(server), server_size or len(server) + 1), need, [client_first])
    sn = sniffd_messages(client, server, steps, python_only)
    httpdiff.check_well_typed(sn)

    reqs = compared(ll_req, None)
    resps = compared(ll_resp, reqs)
    # After a 101 (or a tunnel) sniffd parses neither direction any more
    # (README *What sniffd accepts*, body framing): what it framed before is
    # compared, the message it was reading then is not.
    off = sn.mode in ("tunnel", "non_http")
    for label, want, got, ll in (("request", reqs, sn.requests, ll_req), ("response", resps, sn.responses, ll_resp)):
        if off:
            want = want[: len(got)]
        problem = diff(label, want, got[: len(want)])
        assert problem is None, problem
        if not off and ll.error is None and not ll.upgrade and len(want) == len(ll.messages):
            # llhttp took the whole stream: sniffd has no other message,
            # but for one where llhttp had only begun one (its head not
            # read when the input ended: sniffd ends it as README *What
            # sniffd accepts* says, e.g. an HTTP/0.9 line with its line).
            extra = got[len(want):]
            assert not extra or (len(extra) == 1 and extra[0].start == ll.partial_start), \
                f"{label}: sniffd has {len(extra)} message(s) more than llhttp: {extra}"
    return {"ll_req": ll_req, "ll_resp": ll_resp, "sniffd": sn, "steps": steps}


def parity(stream: bytes, is_request: bool) -> None:
    """The first head in ``stream``: _fields.c against its reference."""
    if httpdiff._fields is None:
        return
    eol = stream.find(b"\n")
    if eol < 0:
        return
    e1 = stream.find(b"\n\r\n", eol)
    e2 = stream.find(b"\n\n", eol)
    if e1 < 0 and e2 < 0:
        # No end of head: all of it, with the line end every block the
        # reader passes has (the C functions' documented input).
        if not stream.endswith(b"\n"):
            stream += b"\n"
        end = len(stream)
    else:
        end = (e2 if e1 < 0 or (0 <= e2 < e1) else e1) + 1
    httpdiff.head_parity(stream, 0, eol, end, is_request, {}, MAX_COUNT, MAX_BYTES, MAX_URI)
    httpdiff.fields_parity(stream[eol + 1 : end], {}, MAX_COUNT, MAX_BYTES)


def TestOneInput(data: bytes) -> None:  # noqa: N802 - atheris' name
    client, server, python_only, cs, ss, first = decode(data)
    parity(client, True)
    parity(server, False)
    check(client, server, python_only, cs, ss, first)


# ------------------------------------------------------------------ seeds

HOST = b"Host: example.test\r\n"
SEEDS = {
    "keepalive": (b"GET /a HTTP/1.1\r\n" + HOST + b"\r\nGET /b?q=%20 HTTP/1.1\r\n" + HOST + b"Accept: */*\r\n\r\n",
                  b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    "head-pipeline": (b"HEAD /h HTTP/1.1\r\n" + HOST + b"\r\nGET /g HTTP/1.1\r\n" + HOST + b"\r\n",
                      b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                      b"\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nTrailer-Field: t\r\n\r\n"),
    "continue": (b"POST /up HTTP/1.1\r\n" + HOST + b"Expect: 100-continue\r\nContent-Length: 4\r\n\r\nbody",
                 b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
                 b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"),
    "chunked-request": (b"PUT /c HTTP/1.1\r\n" + HOST + b"Transfer-Encoding: gzip, chunked\r\n\r\n"
                        b"00A;ext=\"q v\"\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\nDELETE /d HTTP/1.1\r\n\r\n",
                        b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"),
    "close-delimited": (b"GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /last HTTP/1.0\r\n\r\n",
                        b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nokHTTP/1.0 200 OK\r\n"
                        b"Content-Type: text/plain\r\n\r\nuntil the connection closes"),
    "fields": (b"\r\nOPTIONS * HTTP/1.1\r\nHost:example.test  \r\nX-A: 1\r\nx-a:\t2\r\nX-Empty:\r\n"
               b"X-Bin: \xff\xfe\x80\r\n\r\n",
               b"HTTP/1.1 599 \xc3\xa9 odd reason\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n"),
    "upgrade": (b"GET /ws HTTP/1.1\r\n" + HOST + b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00",
                b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x02hi"),
    "methods": (b"PATCH /p HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcM-SEARCH * HTTP/1.1\r\n\r\n"
                b"PROPFIND /dav HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
                b"HTTP/1.1 207 Multi-Status\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"),
    # Where the comparison with llhttp found sniffd bugs (see git log).
    "found": (b"GET /a\r\nfoo bar\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
              b"00000000000000000003\r\nabc\r\n0\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n",
              b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/2.0 200  OK\r\nContent-Length: 0\r\n\r\n"
              b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
              b"HTTP/1.1 413 Too Large\r\nContent-Length: 9223372036854775808\r\n\r\n"),
}


def make_seeds(directory: str) -> None:
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for name, (client, server) in SEEDS.items():
        for i, (size, first, py) in enumerate(((0, True, False), (1, True, True), (7, False, False))):
            (out / f"seed-{name}-{i}").write_bytes(encode(client, server, py, size, size if i != 2 else 3, first))


def show(path: str) -> None:
    client, server, python_only, cs, ss, first = decode(Path(path).read_bytes())
    print(f"client ({len(client)} bytes, segments of {cs or 'all'}): {client!r}")
    print(f"server ({len(server)} bytes, segments of {ss or 'all'}): {server!r}")
    print(f"python reference only: {python_only}; client first: {first}")
    for stream, is_request in ((client, True), (server, False)):
        try:
            parity(stream, is_request)
        except AssertionError as e:
            print(f"FINDING (_fields.c parity): {e}")
    try:
        got = check(client, server, python_only, cs, ss, first)
    except AssertionError as e:
        print(f"FINDING: {e}")
        got = None
    ll_req = llhttp_messages(client, True)
    print(f"llhttp requests (error {ll_req.error!r} at {ll_req.error_at}, upgrade {ll_req.upgrade}):")
    for m in ll_req.messages:
        print("   ", m)
    methods = [m.method for m in ll_req.messages]
    ll_resp = llhttp_messages(server, False, lambda k: k < len(methods) and methods[k] == "HEAD")
    print(f"llhttp responses (error {ll_resp.error!r} at {ll_resp.error_at}, upgrade {ll_resp.upgrade}):")
    for m in ll_resp.messages:
        print("   ", m)
    if got is not None:
        sn = got["sniffd"]
        for label, ms, hows in (("requests", sn.requests, sn.hows[0]), ("responses", sn.responses, sn.hows[1])):
            print(f"sniffd {label}:")
            for m, h in zip(ms, hows):
                print("   ", h, m)
        for t in sn.transactions:
            print("    transaction", t.depth, sorted(t.anomalies), t.end_reason)


def main() -> None:
    if "--make-seeds" in sys.argv:
        make_seeds(sys.argv[sys.argv.index("--make-seeds") + 1])
        return
    if "--show" in sys.argv:
        show(sys.argv[sys.argv.index("--show") + 1])
        return
    if atheris is None:
        sys.exit("atheris is not installed: .venv/bin/pip install atheris (or the 'fuzz' extra)")
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    os.environ.setdefault("SNIFFD_STRICT", "1")
    main()
