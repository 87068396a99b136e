"""sniffd's HTTP/1.x framing held to llhttp (httptools, strict mode) on valid
conversations (issue 9: same messages, same framing).

Hypothesis builds conversations that llhttp accepts with no lenient flag:
requests with the methods llhttp knows, origin-form (and ``*``, absolute-form)
targets with %-escapes, queries and every byte llhttp takes in a target,
HTTP/1.0 and 1.1, token-named fields with valid values (repeated names,
empty values, whitespace around values, obs-text), bodies by Content-Length
and chunked (sizes in either case with leading zeros, chunk extensions,
trailers), pipelined requests, empty lines between them; responses with any
final status and reason, 100/102/103 interim responses before it, 204, 304,
answers to HEAD with Content-Length or chunked announced and no body, and a
close-delimited last body.  The two streams are cut at random points or into
segments of a random size, and interleaved as a capture would order them (a
response after the head of its request).

Each direction goes to llhttp (byte by byte for exact offsets, and in the
same pieces; tests/httpdiff.py says how HEAD and the end of the stream are
told to it) and both to sniffd's ``HttpSession``.  Asserted:

* the generator's own account (offsets, start lines, fields, body lengths)
  equals llhttp's: the strategies make what they mean to, and HEAD answers,
  which llhttp cannot know, end where RFC 9110 section 9.3.2 says;
* sniffd frames every message, interim responses included, exactly as
  llhttp does: same count, offsets, method, target, version, status,
  reason, fields (normalised as httpdiff.normalised says) and body length;
* its transactions pair them in order (interim responses as (status,
  reason)), end ``complete``, and carry no anomaly -- except the ones README
  *What sniffd accepts* documents for valid input that is still a framing
  risk: a Content-Length with leading zeros (``http_cl_leading_zeros``) and
  a response Transfer-Encoding whose final coding is not chunked
  (``http_te_invalid``), each with ``http_ambiguous_framing``.

Half the examples run with _fields.c switched off, so the Python reference
is held to llhttp too.  The suite runs 300 examples (a few seconds);
``SNIFFD_FUZZ_EXAMPLES=5000`` raises it, as for tests/fuzz.
"""

from __future__ import annotations

import os
import string
from dataclasses import dataclass, field

import httpdiff
from httpdiff import Seen, diff, llhttp_in_pieces, llhttp_messages, normalised, sniffd_messages
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sniffd.http.syntax import text

EXAMPLES = int(os.environ.get("SNIFFD_FUZZ_EXAMPLES", "0"))

TCHARS = "!#$%&'*+-.^_`|~" + string.digits + string.ascii_letters
# Fields that change framing or the connection's fate: the strategies set
# them deliberately, never at random.
SPECIAL = {"content-length", "transfer-encoding", "connection", "proxy-connection", "upgrade"}
COMMON_NAMES = ["Host", "Accept", "User-Agent", "Cookie", "Set-Cookie", "Cache-Control", "Vary", "Content-Type",
                "ETag", "Link", "Server", "Date", "Accept-Encoding", "X-Forwarded-For", "Authorization", "Expect",
                "If-None-Match", "Location", "Keep-Alive", "TE", "Trailer", "X-Empty"]
# field-vchar / obs-text (RFC 9110 section 5.5), and the whitespace allowed inside a value.
VCHAR = list(range(0x21, 0x7F)) + list(range(0x80, 0x100))
# Bytes llhttp accepts in a target (strict): every visible ASCII byte.
URL_BYTES = list(range(0x21, 0x7F))
PCHAR = string.ascii_letters + string.digits + "-._~!$&'()*+,;=:@"
REASONS = ["OK", "Created", "No Content", "Not Modified", "Not Found", "Internal Server Error", "Moved Permanently",
           "I'm a teapot", "Caf\u00e9".encode("utf-8").decode("latin-1")]


def b(s: str) -> bytes:
    return s.encode("latin-1")


@dataclass
class Conversation:
    client: bytes
    server: bytes
    requests: list[Seen]  # the generator's account, in llhttp's terms
    responses: list[Seen]
    request_heads: list[int]  # offset after each request's head
    answers: list[int]  # per response: the request it answers
    interim: list[list[tuple[int, str]]]  # per request: its interim responses
    anomalies: list[set[str]] = field(default_factory=list)  # per transaction: documented ones expected


# -------------------------------------------------------------- strategies
# Built once: hypothesis spends most of an example building strategies when
# composites make them afresh.  Bytes from an alphabet are drawn as any bytes
# and translated, one draw for a whole string.


def over(alphabet: bytes, min_size: int = 0, max_size: int = 24) -> st.SearchStrategy[bytes]:
    table = bytes(alphabet[i % len(alphabet)] for i in range(256))
    return st.binary(min_size=min_size, max_size=max_size).map(lambda x: x.translate(table))


SPECIAL_B = {b(n) for n in SPECIAL}
COMMON_B = [b(n) for n in COMMON_NAMES]
COMMON_VALUES = [b"", b"*/*", b"example.test", b"gzip, deflate", b'W/"xyz"', b"a=1; b=2", b"\xe2\x82\xac"]
OWS = [b"", b"", b" ", b"\t", b"  ", b" \t "]
_TCHAR_T = bytes(b(TCHARS)[i % len(TCHARS)] for i in range(256))
_VALUE_ALPHABET = bytes(VCHAR) + b" \t" * 8
_VALUE_T = bytes(_VALUE_ALPHABET[i % len(_VALUE_ALPHABET)] for i in range(256))


def _field(blob: bytes) -> tuple[bytes, bytes]:
    """One field from one draw of bytes (fast to make, still shrinkable):
    blob[0] picks the name's kind, length and case, blob[1] the whitespace
    and the value's kind, the rest is their bytes."""
    h, w, rest = blob[0], blob[1], blob[2:]
    if h % 4 == 0:
        name, rest = COMMON_B[rest[:1][0] % len(COMMON_B) if rest else 0], rest[1:]
    else:
        n = 1 + (h >> 2) % 10
        name, rest = (rest[:n].translate(_TCHAR_T) or b"x"), rest[n:]
    if name.lower() in SPECIAL_B:
        name = b"X-" + name
    name = (name, name, name.lower(), name.upper())[h >> 6]
    if w & 1:
        core = COMMON_VALUES[(w >> 1) % len(COMMON_VALUES)]
    else:
        core = rest.translate(_VALUE_T).strip(b" \t")
    return name, OWS[(w >> 4) % len(OWS)] + core + OWS[(w >> 1) % len(OWS)]


FIELD = st.binary(min_size=2, max_size=30).map(_field)
VALUE = FIELD.map(lambda f: f[1])
FIELDS = {n: st.lists(FIELD, max_size=n) for n in (2, 6)}
BOOL = st.booleans()
D = {n: st.integers(0, n - 1) for n in (2, 3, 4, 5, 10)}  # a 1-in-n choice
SEGMENT = st.one_of(
    over(b(PCHAR), 1, 8),
    st.sampled_from([b"/", b"/", b"%20", b"%2F", b"%e2%82%ac", b"%", b"%zz", b"?", b"?q=1&r=%41", b"#frag", b"//"]),
    over(bytes(URL_BYTES), 1, 6),
)
SEGMENTS = st.lists(SEGMENT, max_size=6)
CHUNK_EXT = st.sampled_from([b"", b"", b";a", b";a=b", b';name="quoted value"', b";x=1;y", b';q="\\"esc\\""',
                             b';n="\x80\t"'])
CHUNK_SIZES = st.lists(st.integers(1, 40), max_size=4)
ZEROS = st.sampled_from([0, 0, 0, 1, 2, 20])  # leading zeros of a chunk size: 1*HEXDIG, any number
BODY = st.binary(max_size=40)
TE_VALUES = st.sampled_from([b"chunked", b"Chunked", b"CHUNKED", b"gzip, chunked", b"gzip,chunked", b",chunked",
                             b" chunked "])
CL_NAME = st.sampled_from([b"Content-Length", b"content-length"])
INTERIM = st.lists(st.sampled_from([(100, b"Continue"), (102, b"Processing"), (103, b"Early Hints")]), max_size=2)
STATUS = st.one_of(st.sampled_from([200, 200, 201, 204, 206, 301, 304, 404, 500]), st.integers(200, 599))
REASON = st.one_of(st.sampled_from(REASONS).map(b), st.just(b""), over(bytes(VCHAR) + b" \t", 0, 12))
VERSION = st.sampled_from(["1.1", "1.1", "1.0"])
METHOD = st.sampled_from(httpdiff.LLHTTP_METHODS)
EMPTY_LINES = st.sampled_from([0, 0, 0, 1, 2])
HEAD_CL = st.integers(0, 10**6)
PIPELINE = st.integers(1, 4)


@st.composite
def fields(draw, max_size: int = 6) -> list[tuple[bytes, bytes]]:
    out = draw(FIELDS[max_size])
    if out and draw(BOOL):
        # Repeat a name, in another case: sniffd joins the values.
        name = out[draw(st.integers(0, len(out) - 1))][0]
        name = (name, name.lower(), name.upper())[draw(D[3])]
        out.insert(draw(st.integers(0, len(out))), (name, draw(VALUE)))
    return out


def field_lines(pairs: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(n + b":" + v + b"\r\n" for n, v in pairs)


def target(draw, method: str) -> bytes:
    if method == "OPTIONS" and draw(D[4]) == 0:
        return b"*"
    path = b"/" + b"".join(draw(SEGMENTS))
    if draw(D[10]) == 0:
        return b"http://example.test:8080" + path
    return path


def chunked_body(draw) -> tuple[bytes, int, list[tuple[bytes, bytes]]]:
    """(body bytes, de-chunked length, trailer fields)."""
    out = b""
    total = 0
    for size in draw(CHUNK_SIZES):
        hexs = format(size, "xX"[draw(D[2])])
        out += b"0" * draw(ZEROS) + b(hexs) + draw(CHUNK_EXT) + b"\r\n" + bytes(size) + b"\r\n"
        total += size
    trailers = draw(FIELDS[2])
    out += b"0" * (1 + draw(ZEROS)) + draw(CHUNK_EXT) + b"\r\n" + field_lines(trailers) + b"\r\n"
    return out, total, trailers


def body(draw, version: str):
    """(framing fields, body bytes, body_len, trailer fields, leading zeros)."""
    kind = draw(D[3]) if version == "1.1" else draw(D[2])
    if kind == 0:
        return [], b"", 0, [], False
    if kind == 1:
        data = draw(BODY)
        zeros = draw(D[10]) == 0  # valid (1*DIGIT), documented as a framing risk
        cl = (b"00" if zeros else b"") + b(str(len(data)))
        return [(draw(CL_NAME), cl)], data, len(data), [], zeros
    data, total, trailers = chunked_body(draw)
    if draw(D[5]) == 0:
        te = [(b"Transfer-Encoding", b"gzip"), (b"Transfer-Encoding", b"chunked")]  # one list in two fields
    else:
        te = [(b"Transfer-Encoding", draw(TE_VALUES))]
    return te, data, total, trailers, False


def placed(draw, own: list, special: list) -> list:
    """The framing fields among the others, anywhere, in their order."""
    out = list(own)
    at = 0
    for f in special:
        at = draw(st.integers(at, len(out)))
        out.insert(at, f)
        at += 1
    return out


@st.composite
def conversations(draw) -> Conversation:
    n = draw(PIPELINE)
    client = b""
    requests: list[Seen] = []
    heads: list[int] = []
    methods: list[str] = []
    anomalies: list[set[str]] = []
    for i in range(n):
        last = i == n - 1
        client += b"\r\n" * draw(EMPTY_LINES)  # RFC 9112 section 2.2
        method = draw(METHOD)
        target_ = target(draw, method)
        version = draw(VERSION)
        framing, data, body_len, trailers, zeros = body(draw, version)
        extra = []
        if version == "1.0" and not last:
            extra = [(b"Connection", b"keep-alive")]  # else llhttp refuses what follows
        elif last and draw(D[5]) == 0:
            extra = [(b"Connection", b"close")]
        own = placed(draw, draw(fields()), framing + extra)
        start = len(client)
        head = b(method) + b" " + target_ + b" HTTP/" + b(version) + b"\r\n" + field_lines(own) + b"\r\n"
        client += head + data
        heads.append(start + len(head))
        requests.append(Seen(start, len(client), method, text(target_), None, None, version,
                             normalised(own + trailers), body_len))
        methods.append(method)
        anomalies.append({"http_cl_leading_zeros", "http_ambiguous_framing"} if zeros else set())

    server = b""
    responses: list[Seen] = []
    answers: list[int] = []
    interim: list[list[tuple[int, str]]] = []
    for i in range(n):
        last = i == n - 1
        interim.append([])
        for code, reason in draw(INTERIM):
            own = draw(fields(max_size=2))
            start = len(server)
            server += b"HTTP/1.1 " + b(str(code)) + b" " + reason + b"\r\n" + field_lines(own) + b"\r\n"
            responses.append(Seen(start, len(server), None, None, code, reason.decode(), "1.1", normalised(own), 0))
            answers.append(i)
            interim[i].append((code, reason.decode()))
        status = draw(STATUS)
        reason = draw(REASON)
        version = draw(VERSION)
        head_only = methods[i] == "HEAD" or status in (204, 304)
        extra = []
        if version == "1.0" and not last:
            extra = [(b"Connection", b"keep-alive")]
        flags: set[str] = set()
        if head_only:
            # What the headers announce, with no body (RFC 9110 sections 9.3.2, 15.3.5, 15.4.5).
            data, body_len, trailers = b"", 0, []
            kind = 0 if status == 204 else draw(D[2]) if status == 304 else draw(D[3])
            framing = [[], [(b"Content-Length", b(str(draw(HEAD_CL))))], [(b"Transfer-Encoding", b"chunked")]][kind]
        elif last and draw(D[4]) == 0:
            # Close-delimited: the body runs to the end of the connection.
            data = draw(BODY)
            body_len, trailers = len(data), []
            framing = []
            if version == "1.1" and draw(D[3]) == 0:
                framing = [(b"Transfer-Encoding", b"gzip")]  # a final coding other than chunked: to the close too
                flags = {"http_te_invalid", "http_ambiguous_framing"}
        else:
            framing, data, body_len, trailers, zeros = body(draw, version)
            if not framing:
                framing = [(b"Content-Length", b"0")]  # not the last response: it needs an end
            if zeros:
                flags = {"http_cl_leading_zeros", "http_ambiguous_framing"}
        own = placed(draw, draw(fields()), framing + extra)
        start = len(server)
        line = b"HTTP/" + b(version) + b" " + b(str(status))
        if reason or draw(BOOL):
            line += b" " + reason  # "HTTP/1.1 200" and "HTTP/1.1 200 " both have an empty reason
        server += line + b"\r\n" + field_lines(own) + b"\r\n" + data
        responses.append(Seen(start, len(server), None, None, status, text(reason), version,
                              normalised(own + trailers), body_len))
        answers.append(i)
        anomalies[i] |= flags
    return Conversation(client, server, requests, responses, heads, answers, interim, anomalies)


# Where a stream is cut into segments: at random points (a fraction of its
# length, so one strategy serves every stream), every k bytes, or nowhere.
CUTS = st.one_of(
    st.tuples(st.just("at"), st.lists(st.floats(0, 1), max_size=8)),
    st.tuples(st.just("every"), st.integers(1, 64)),
    st.just(("whole", None)),
)
PREFER = st.lists(st.booleans(), min_size=1, max_size=8)


def cut_points(n: int, how: tuple) -> list[int]:
    kind, arg = how
    if kind == "at":
        return [int(f * n) for f in arg]
    if kind == "every":
        return httpdiff.every(n, arg)
    return []


# ------------------------------------------------------------------- tests


@settings(max_examples=EXAMPLES or 300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                             HealthCheck.data_too_large])
@given(conv=conversations(), data=st.data())
def test_sniffd_frames_valid_conversations_exactly_as_llhttp_does(conv: Conversation, data) -> None:
    client_cuts = cut_points(len(conv.client), data.draw(CUTS, label="client cuts"))
    server_cuts = cut_points(len(conv.server), data.draw(CUTS, label="server cuts"))
    prefer = data.draw(PREFER, label="client first")
    python_only = data.draw(BOOL, label="python reference only")

    # llhttp, byte by byte and in the pieces sniffd gets.
    ll_req = llhttp_messages(conv.client, True)
    assert (None, False) == (ll_req.error, ll_req.upgrade), f"llhttp refused a request stream: {ll_req.error}"
    methods = [m.method for m in ll_req.messages]

    def bodiless(k: int) -> bool:
        return k < len(methods) and methods[k] == "HEAD"

    ll_resp = llhttp_messages(conv.server, False, bodiless)
    assert (None, False) == (ll_resp.error, ll_resp.upgrade), f"llhttp refused a response stream: {ll_resp.error}"
    for stream, is_request, cut, ll in ((conv.client, True, client_cuts, ll_req),
                                        (conv.server, False, server_cuts, ll_resp)):
        again = llhttp_in_pieces(stream, is_request, bodiless, cut, ll.restarts)
        assert [m.content() for m in ll.messages] == [m.content() for m in again.messages]

    # The generator's account is llhttp's (and, for HEAD answers, RFC 9110's).
    assert diff("request (generator vs llhttp)", conv.requests, ll_req.messages) is None
    assert diff("response (generator vs llhttp)", conv.responses, ll_resp.messages) is None

    # sniffd, the two directions interleaved as a capture orders them.
    need = httpdiff.causal_need(len(conv.server), len(conv.client),
                                [(m.start, m.end, k) for m, k in zip(conv.responses, conv.answers)], conv.request_heads)
    steps = httpdiff.schedule(len(conv.client), len(conv.server), client_cuts, server_cuts, need, prefer)
    sn = sniffd_messages(conv.client, conv.server, steps, python_only)
    assert diff("request", ll_req.messages, sn.requests) is None
    assert diff("response", ll_resp.messages, sn.responses) is None
    assert all(h == "complete" for h in sn.hows[0])
    assert all(h in ("complete", "close") for h in sn.hows[1])

    # Transactions: in order, each request with its response and interims.
    finals = [m for m, r in zip(sn.messages[1], sn.responses) if not 100 <= r.status < 200]
    assert len(conv.requests) == len(sn.transactions)
    for i, t in enumerate(sn.transactions):
        assert (i + 1, sn.messages[0][i], finals[i]) == (t.depth, t.request, t.response)
        assert conv.interim[i] == t.interim
        assert (conv.anomalies[i], "complete") == (t.anomalies, t.end_reason)
    assert [] == sn.loose
