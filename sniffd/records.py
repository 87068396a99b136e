"""Records stage (pure): a finished transaction -> one JSON-ready dict, and
that dict -> one line of JSON.

The field names and their order are the log format operators depend on; the
README documents every one.  ``dumps`` escapes everything outside ASCII
(``ensure_ascii``), so a record is always one line of valid JSON whatever the
wire carried: a header value cannot contain a raw newline or quote that ends
the record early, and bytes that were not UTF-8 appear as ``\\xNN`` (with a
backslash that was sent doubled; see ``wire_text``).
"""

from __future__ import annotations

import binascii
import hashlib
import ipaddress
import itertools
import json
import re
import _socket as socket  # socket.py's C core: socket.py's IntEnums cost ~14 M instructions at start-up
import struct
import time

import orjson

from sniffd.http import Message, Transaction


def ip_text(packed: bytes) -> str:
    """An address's text: dotted quad for IPv4 (inet_ntop, ~10x cheaper than
    ipaddress and the same text); IPv6 as ipaddress writes it (RFC 5952; it
    differs from glibc's inet_ntop on IPv4-mapped addresses)."""
    if len(packed) == 4:
        return _ntop(_AF_INET, packed)
    return str(ipaddress.ip_address(packed))


_AF_INET = socket.AF_INET
_ntop = socket.inet_ntop


def community_id(src: bytes, sport: int, dst: bytes, dport: int, proto: int = 6, seed: int = 0) -> str:
    """Community ID v1 (https://github.com/corelight/community-id-spec):
    the same flow hashes the same in sniffd, Zeek, Suricata and others."""
    if src > dst or (src == dst and sport > dport):  # (src, sport) > (dst, dport), without the tuples
        src, sport, dst, dport = dst, dport, src, sport
    h = _sha1((_SEED_0 if seed == 0 else _SEED(seed)) + src + dst + _PORTS(proto, 0, sport, dport))
    return "1:" + _b64(h.digest(), newline=False).decode("ascii")


_SEED = struct.Struct("!H").pack
_SEED_0 = _SEED(0)
_PORTS = struct.Struct("!BBHH").pack
_sha1 = hashlib.sha1
_b64 = binascii.b2a_base64  # base64.b64encode's work, without its Python call


def rfc3339(ts: float) -> str:
    """UTC, microseconds, 'Z' (RFC 3339 section 5.6)."""
    sec = int(ts)
    usec = int(round((ts - sec) * 1_000_000))
    if usec >= 1_000_000:
        sec, usec = sec + 1, usec - 1_000_000
    global _second
    cached = _second
    if cached[0] != sec:
        # Records come in time order, many per second: format each second
        # once.  One tuple, swapped whole: safe from any thread.
        cached = _second = (sec, time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec)))
    return f"{cached[1]}{usec:06d}Z"


_second: tuple[int | None, str] = (None, "")


class Privacy:
    """What records hide and add: a ``sniffd.redact.Redactor`` (None: no
    redaction) and whether bodies are captured (then each message gets a
    ``body`` field, null when its type is not captured)."""

    __slots__ = ("redactor", "bodies")

    def __init__(self, redactor=None, bodies: bool = False) -> None:
        self.redactor = redactor
        self.bodies = bodies


_NO_PRIVACY = Privacy()


def _body(m: Message, rec: dict) -> None:
    if m.body is None:
        rec["body"] = None
        return
    body = m.body.finish()
    if body.get("truncated"):
        rec["body_truncated"] = True
    rec["body"] = body


def _after(rec: dict, key: str, name: str, value) -> dict:
    """``rec`` with ``name: value`` inserted after ``key`` (the optional
    fields keep their documented place; rare, so a copy is fine)."""
    out = {}
    for k, v in rec.items():
        out[k] = v
        if k == key:
            out[name] = value
    return out


def _request(m: Message, p: Privacy) -> dict:
    headers, uri = m.headers, m.uri
    if p.redactor is not None:
        headers = p.redactor.headers(headers, True)[0]
        if uri:
            uri = p.redactor.uri(uri)[0]
    rec = {
        "method": m.method,
        "uri": uri,
        "version": m.version,
        "host": m.headers.get("host"),
        "headers": headers,
        "body_len": m.body_len,
        "missed_bytes": m.missed_bytes,
        "body_truncated": m.body_truncated,
    }
    if m.start_line is not None:
        line = m.start_line if p.redactor is None else p.redactor.start_line(m.start_line)
        rec = _after(rec, "version", "start_line", line)
    if p.bodies:
        _body(m, rec)
    return rec


def _response(m: Message, interim: list[tuple[int, str]], p: Privacy) -> dict:
    headers = m.headers if p.redactor is None else p.redactor.headers(m.headers, True)[0]
    rec = {
        "status": m.status,
        "reason": m.reason,
        "version": m.version,
        "headers": headers,
        "body_len": m.body_len,
        "missed_bytes": m.missed_bytes,
        "body_truncated": m.body_truncated,
        "interim": [{"status": s, "reason": r} for s, r in interim],
    }
    if m.start_line is not None:
        line = m.start_line if p.redactor is None else p.redactor.start_line(m.start_line)
        rec = _after(rec, "version", "start_line", line)
    if p.bodies:
        _body(m, rec)
    return rec


# The record field that holds each tunnel type's key (decode.Segment.ctx),
# None for the types that have none.
TUNNEL_KEYS = {"mpls": "labels", "pppoe": "session", "gre": "key", "erspan": "session", "vxlan": "vni",
               "geneve": "vni", "teredo": None, "ipip": None}


def encapsulation(ctx) -> dict | None:
    """The record fields for a connection's ``ctx`` (decode.Segment.ctx, as
    the client's packets carry it): ``vlan`` (VLAN ids, outer first) and
    ``tunnel`` (one object per tunnel, outer first: ``type``, the outer
    ``src`` and ``dst`` as text or null, and the type's key under its
    TUNNEL_KEYS name), each only when not empty; None for a plain frame."""
    if ctx is None:
        return None
    vlans, tunnels = ctx
    out: dict = {}
    if vlans:
        out["vlan"] = list(vlans)
    if tunnels:
        out["tunnel"] = []
        for kind, src, dst, key in tunnels:
            t = {"type": kind, "src": src and ip_text(src), "dst": dst and ip_text(dst)}
            name = TUNNEL_KEYS[kind]
            if name is not None:
                t[name] = list(key) if kind == "mpls" else key
            out["tunnel"].append(t)
    return out or None


# A connection's uid: "C" and 17 base62 digits (Zeek's alphabet and shape).
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_B62_PAIRS = [a + b for a in _B62 for b in _B62]
UID_DIGITS = 17
UID_SALT_BITS = 96  # 62**17 > 2**96 + 2**64: salt + counter always fits in 17 digits


class Uids:
    """Connection uids: ``"C"`` + base62(salt + n), 17 digits, n counting
    the connections of this process from 0.

    Unique within a process by the counter; across processes (restarts,
    fan-out workers, ``read --workers`` shards) by the salt, 96 random bits
    drawn per pipeline (``Pipeline`` passes ``os.urandom``; tests pass
    their own): two runs can only collide where their ranges
    [salt, salt + n) overlap, about (n1 + n2) / 2**96 for a pair of runs:
    1e-19 for two runs of a billion connections each.  A random salt rather
    than a hash of (sensor, start time, worker): no clock or host name to
    get wrong (a clock set back, a cloned VM, two workers started in the
    same second).  Consecutive uids share their leading digits; they are
    opaque names, not secrets.

    Cheap: the digits above the last two are made again only when they
    change (once every 3844 connections); per uid it is one divmod and a
    table look-up."""

    __slots__ = ("_next", "_high", "_prefix")

    def __init__(self, salt: int) -> None:
        if not 0 <= salt < 1 << UID_SALT_BITS:
            raise ValueError(f"uid salt must be {UID_SALT_BITS} bits")
        self._next = salt
        self._high = -1
        self._prefix = ""

    def __call__(self) -> str:
        high, low = divmod(self._next, 3844)
        self._next += 1
        if high != self._high:
            self._high = high
            digits = []
            for _ in range(UID_DIGITS - 2):
                high, d = divmod(high, 62)
                digits.append(_B62[d])
            self._prefix = "C" + "".join(reversed(digits))
        return self._prefix + _B62_PAIRS[low]


def build(txn: Transaction, client: dict, server: dict, cid: str, uid: str, sensor: str, interface: str | None,
          privacy: Privacy = _NO_PRIVACY, encap: dict | None = None) -> dict:
    """``uid``: the connection's (``Uids``); ``sensor``, ``interface``: where
    it was captured (``Pipeline``); ``encap``: ``encapsulation(ctx)`` of the
    transaction's connection.  (The pipeline passes all by position: keyword
    arguments cost ~1% of `sniffd read`'s instructions here.)"""
    req, resp = txn.request, txn.response
    start = req.start_ts if req is not None else (resp.start_ts if resp is not None else 0.0)
    duration = None
    if req is not None and resp is not None:
        duration = round(max(0.0, resp.end_ts - req.start_ts) * 1000.0, 3)
    rec = {
        "kind": "http",
        "ts": rfc3339(start),
        "uid": uid,
        "client": client,
        "server": server,
        "request": _request(req, privacy) if req is not None else None,
        "response": _response(resp, txn.interim, privacy) if resp is not None else None,
        "duration_ms": duration,
        "trans_depth": txn.depth,
        "community_id": cid,
        "end_reason": txn.end_reason or "complete",
        "anomalies": sorted(txn.anomalies),
        "sensor": sensor,
        "interface": interface,
    }
    if encap is not None:
        # vlan and tunnel go right after server: the record made again in
        # that order (a plain record, the common one, is built once).
        items = iter(rec.items())
        rec = dict(itertools.islice(items, 5))
        rec.update(encap)
        rec.update(items)
    if txn.stream_id is not None:
        rec = _http2(rec, txn, privacy)
    if txn.connect is not None:
        last = "tunnel" if encap is not None and "tunnel" in encap else (
            "vlan" if encap is not None and "vlan" in encap else "server")
        target = txn.connect[0] if privacy.redactor is None else privacy.redactor.connect_target(txn.connect[0])
        rec = _after(rec, last, "connect_tunnel", {"target": target, "trans_depth": txn.connect[1]})
    return rec


def _http2(rec: dict, txn: Transaction, privacy: Privacy) -> dict:
    """An HTTP/2 stream's record (``sniffd.http2``): its four fields after
    ``trans_depth``, always all four (null when they do not apply), so an
    HTTP/2 record has one shape; HTTP/1 records have none of them and stay
    as they were.  A request's host that came from ``:authority`` is
    redacted as ``:authority`` is (a userinfo, which HTTP/2 forbids but
    clients send)."""
    req = rec["request"]
    if privacy.redactor is not None and req is not None and req["version"] == "2":
        host = req["host"]
        if host and "@" in host:
            hidden = privacy.redactor.authority(host)
            req["host"] = hidden
            if req["headers"].get("host") == host:
                req["headers"] = {**req["headers"], "host": hidden}
    grpc = txn.grpc
    out = {}
    for k, v in rec.items():
        out[k] = v
        if k == "trans_depth":
            out["stream_id"] = txn.stream_id
            out["pushed_by"] = txn.pushed_by
            out["h2_error"] = txn.h2_error
            out["grpc"] = None if grpc is None else {"status": grpc[0], "message": grpc[1]}
    return out


def build_tls(t, client: dict, server: dict, cid: str, uid: str, sensor: str, interface: str | None,
              encap: dict | None = None) -> dict:
    """One TLS connection's record from its ``sniffd.tls.TlsRecord`` ``t``:
    the connection fields an HTTP record has, in the same places, and the
    ``tls`` object (``TlsSession.result``, with the byte counts each way)."""
    rec = {"kind": "tls", "ts": rfc3339(t.ts), "uid": uid, "client": client, "server": server}
    if encap is not None:
        rec.update(encap)
    rec["tls"] = t.tls
    rec["duration_ms"] = t.duration_ms
    rec["community_id"] = cid
    rec["end_reason"] = t.end_reason
    rec["anomalies"] = sorted(t.anomalies)
    rec["sensor"] = sensor
    rec["interface"] = interface
    return rec


_encode = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), check_circular=False).encode
_orjson = orjson.dumps

# Bytes that were not UTF-8 reach here as lone surrogates U+DC80..U+DCFF (one
# per byte, http.syntax.text); a backslash sent on the wire is itself escaped
# so that the two cannot be confused.
_WIRE_ESCAPES = re.compile("[\\\\\udc80-\udcff]")


def _wire_escape(m: re.Match) -> str:
    c = m.group()
    return "\\\\" if c == "\\" else f"\\x{ord(c) - 0xDC00:02x}"


def wire_text(value: str) -> str:
    """A wire string as it is written: every byte that was not UTF-8 as the four
    characters ``\\xNN`` (NN its hex value) and every backslash that was sent as
    two backslashes, so the text is valid Unicode for every strict JSON parser
    and still gives back the exact bytes (``unescape_wire_text``)."""
    return _WIRE_ESCAPES.sub(_wire_escape, value)


_UNESCAPES = re.compile(r"\\(\\|x[0-9a-f]{2})")


def unescape_wire_text(value: str) -> bytes:
    """The bytes a written wire string stands for (the inverse of ``wire_text``)."""
    out = bytearray()
    pos = 0
    for m in _UNESCAPES.finditer(value):
        out += value[pos : m.start()].encode("utf-8")
        esc = m.group(1)
        out += b"\\" if esc == "\\" else bytes([int(esc[1:], 16)])
        pos = m.end()
    out += value[pos:].encode("utf-8")
    return bytes(out)


def _escaped(value, keep: str | None = None):
    """``value`` with ``wire_text`` applied to every string (and dict key) in it,
    but for its own key ``keep`` (see ``_KEPT``)."""
    if type(value) is str:
        return wire_text(value)
    if type(value) is dict:
        return {wire_text(k): (v if k == keep else _escaped(v)) for k, v in value.items()}
    if type(value) is list:
        return [_escaped(v) for v in value]
    return value


# The one field of a record's object written as it is: a message's captured
# ``body`` (it says its own encoding) and a TLS record's ``server_cert``
# (made by the X.509 library: RFC 4514 escapes, hex, dates; not wire text).
# Only there: a header named "body" is wire text like any other.
_KEPT = {"request": "body", "response": "body", "tls": "server_cert"}


# Record fields that come from the configuration, not the wire: written as
# they are (a sensor name may hold a backslash; it is no escape).
_NOT_FROM_WIRE = frozenset(("sensor", "interface"))


def _escaped_record(record: dict) -> dict:
    """``_escaped`` of a whole record, but for its ``_NOT_FROM_WIRE`` fields."""
    return {wire_text(k): (v if k in _NOT_FROM_WIRE else _escaped(v, _KEPT.get(k))) for k, v in record.items()}


def _kept_backslashes(record: dict) -> int:
    """How many escaped backslashes (``\\\\`` in orjson's output) of ``record``
    lie in fields ``_escaped_record`` leaves as they are: the configured
    ``sensor`` and ``interface``, and a TLS record's ``tls.server_cert``
    (RFC 4514 escapes a comma in a name as ``\\,``: a certificate whose
    organisation has one, common, would otherwise send its record through
    ``_escaped_record``, ~50 strings walked, for nothing).  When they are all
    of the output's, no wire string holds a backslash (orjson writes each
    value alike alone or inside the record), and the output stands as it is.
    Other fields kept as they are (captured bodies) are not counted: a
    backslash there still takes the long way, which gives the same line."""
    n = 0
    tls = record.get("tls")
    if tls.__class__ is dict and "server_cert" in tls:
        n = _orjson(tls["server_cert"]).count(b"\\\\")
    for k in _NOT_FROM_WIRE:
        if k in record:
            n += _orjson(record[k]).count(b"\\\\")
    return n


def dumps(record: dict) -> str:
    """One record as one line of JSON (no trailing newline), ASCII only.

    Strings from the wire go through ``wire_text``: bytes that were not UTF-8
    become ``\\xNN`` and a backslash that was sent becomes two, so every record
    is valid for strict parsers (orjson, serde_json, jq), and lossless.  The
    common record has neither and is written as is.

    orjson writes a record ~4x faster than the json module, and for the
    common record, all ASCII, byte for byte the same text (compact
    separators, the same short escapes, the same shortest float repr for
    the only float, ``duration_ms``: a millisecond count rounded to 3
    decimals, printed without exponent by both below 1e16).  It cannot
    escape non-ASCII (``ensure_ascii``) and escapes no DEL (0x7f): such
    records, rare, are written by the json module, so the output never
    depends on which encoder ran (tests/unit/test_records.py compares both).
    orjson refuses lone surrogates (bytes that were not UTF-8), and an
    escaped backslash in its output is a backslash from the wire (or from a
    configured sensor name, which ``_escaped_record`` leaves as it is): both
    send the record through ``_escaped_record`` first."""
    try:
        out = _orjson(record)
        # One byte first: memchr is ~4x faster than the two-byte search, and
        # the common record has no escape at all.
        if b"\\" in out and b"\\\\" in out and out.count(b"\\\\") != _kept_backslashes(record):
            raise ValueError("a backslash from the wire")
    except (orjson.JSONEncodeError, ValueError):
        record = _escaped_record(record)
        try:
            out = _orjson(record)
        except orjson.JSONEncodeError:
            return _encode(record)  # a surrogate not from the wire: never raise
    if out.isascii() and b"\x7f" not in out:
        return out.decode("ascii")
    return _encode(record)


def serializer(fmt: str):
    """The function that writes a record as one line in output format
    ``fmt`` (``[output] format``, ``sniffd read --format``): ``dumps`` for
    ``"json"``, the native record; ``sniffd.ecs.dumps`` for ``"ecs"``,
    imported only then, so the default format costs nothing more."""
    if fmt == "json":
        return dumps
    if fmt == "ecs":
        from sniffd.ecs import dumps as ecs_dumps

        return ecs_dumps
    raise ValueError(f"unknown output format {fmt!r}")
