"""The TlsSession in C (sniffd/tls/_session.c) held equal to its Python reference (TlsSessionPy).

Both are fed the same calls and every observable value is compared after
EVERY call (hellos, certificate, alerts, anomalies, times, byte counts, mem,
done, established, each direction's mode), and ``result()`` at the end.
The streams: every TLS connection of the shipped captures (captures/tls/*.pcap,
read back with dpkt, in capture order), the crafted exchanges of
test_tls_session.py and more crafted here (HelloRetryRequest, SSL 2.0 hellos,
a ClientHello over many records, alerts cut in two, resumption, TLS 1.3
middlebox CCS, oversized and bad records, a huge hello), each replayed by
hypothesis with any segmentation (1-byte cuts included), gaps, truncation and
byte flips/insertions/deletions; and pure random bytes.  The expected values
are the reference's: what is tested here is that the two agree, while the
reference's own behaviour is tested against hand-written values in
test_tls_session.py, test_tls_capture.py and the pcap tests (which run the C
one, as sniffd does).
"""

from __future__ import annotations

import json
import os
import random
import resource
from pathlib import Path

import pytest
import tlscraft as T
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_tls_session import CH12, CH13, DER, SERVER_FINISH12, SH12, SID, TLS12, TLS13

from sniffd.tls import detect, fingerprint, flow, session, starttls  # noqa: F401
from sniffd.tls.session import TlsSessionC, TlsSessionPy

CAPTURES = Path(__file__).resolve().parents[2] / "captures" / "tls"


def test_the_c_session_is_built_and_used():
    """scripts/install provides gcc and the Python headers, so the extension
    must have been built; without it sniffd is correct but slower, and that
    must not pass unnoticed."""
    from sniffd.tls import _session

    assert TlsSessionC is not None
    assert session.TlsSession is TlsSessionC
    assert isinstance(flow.TlsFlow().session, TlsSessionC)
    # The bounds are written in both languages: they must be the same.
    assert (session.MAX_HELLO_BYTES, session.MAX_CERTIFICATE_BYTES, session.MAX_ALERTS) == (
        _session.MAX_HELLO_BYTES, _session.MAX_CERTIFICATE_BYTES, _session.MAX_ALERTS)  # fmt: skip
    from sniffd.tls.records import MAX_RECORD_BYTES

    assert MAX_RECORD_BYTES == _session.MAX_RECORD_BYTES


# --- comparing the two ---------------------------------------------------------------------


def observe(s) -> dict:
    modes = s._modes if isinstance(s, TlsSessionC) else (s._client.mode.value, s._server.mode.value)
    return {
        # repr: the dataclasses' every field, with its type (False is not 0)
        "client_hello": repr(s.client_hello),
        "first_server_hello": repr(s.first_server_hello),
        "server_hello": repr(s.server_hello),
        "server_cert": s.server_cert,
        "alerts": list(s.alerts),
        "anomalies": sorted(s.anomalies),
        "times": repr((s.first_ts, s.last_ts, s.established_ts)),
        "missed_bytes": s.missed_bytes,
        "closed": s.closed,
        "established": s.established,
        "done": s.done,
        "mem": s.mem,
        "bytes": (s.client_bytes, s.server_bytes),
        "flags": (s._fatal_alert, s._sslv2_only, s.server_sent_ccs, s.server_saw_hello_done),
        "modes": modes,
        # the fingerprint memo's keys (an SSL 2.0 hello has no fingerprint: its key is not used)
        "keys": (None if s.client_hello is None or s.client_hello.sslv2 else s._client_memo_key, s._server_memo_key),
    }


def same(ops: list[tuple], close_at: float | None = 1e9) -> dict:
    """Runs ``ops`` on both sessions, comparing after every call; returns the result."""
    py, c = TlsSessionPy(), TlsSessionC()
    for i, op in enumerate(ops):
        for s in (py, c):
            getattr(s, op[0])(*op[1:])
        assert observe(py) == observe(c), (i, op[:2])
        if i % 3 == 0 or i == len(ops) - 1:  # result() may be asked at any time (TlsFlow.tick)
            assert py.result() == c.result(), (i, op[:2])
    if close_at is not None:
        py.close(close_at)
        c.close(close_at)
        assert observe(py) == observe(c)
    got = py.result()
    assert got == c.result()
    # the C result() and the Python one (session._Result) on the same C state
    assert got == session._Result.result(c)
    assert list(got) == list(c.result())  # the keys in the same order (the record's)
    # result() caches the fingerprints: a second call gives the same again
    assert got == c.result() == py.result()
    return got


def ops_of(segments: list[tuple[bool, bytes, float]]) -> list[tuple]:
    return [("feed", fc, data, ts) for fc, data, ts in segments]


# --- the streams -------------------------------------------------------------------------------


def _capture_conversations() -> dict[str, list[tuple[bool, bytes, float]]]:
    out = {}
    key = json.loads((CAPTURES / "loopback_handshakes.json").read_text())
    for port, conn in T.connections(CAPTURES / "loopback_handshakes.pcap", set(key["server_ports"])).items():
        out[f"loopback-{key['connections'][str(port)]['name']}"] = conn.segments
    # STARTTLS: the TLS part begins with the client's hello (as the flow table hands it over)
    skey = json.loads((CAPTURES / "starttls.json").read_text())
    ports = {c["server"]["port"] for c in skey["connections"]}
    for port, conn in T.connections(CAPTURES / "starttls.pcap", ports).items():
        segs, started = [], False
        for fc, data, ts in conn.segments:
            if not started and fc:
                at = next((i for i in range(len(data)) if detect.looks_like_tls_client_hello(data[i:])), None)
                if at is None:
                    continue
                started, data = True, data[at:]
            if started:
                segs.append((fc, data, ts))
        assert segs, port
        out[f"starttls-{port}"] = segs
    return out


def _steps(steps, t0: float = 100.0) -> list[tuple[bool, bytes, float]]:
    return [(who == "c", data, t0 + i) for i, (who, data) in enumerate(steps)]


def _crafted() -> dict[str, list[tuple[bool, bytes, float]]]:
    hrr = T.server_hello(0x1301, [(0x002B, b"\x03\x04"), (0x0033, b"\x00\x17"), (0x002C, T.vec16(b"cookie"))], session_id=SID, random=T.HRR_RANDOM)
    ch2 = T.client_hello([0x1301], [T.ext_sni("second.test"), T.ext_supported_versions([0x0304]), T.ext_key_share([(0x0017, 65)])], session_id=SID)
    sh13 = T.server_hello(0x1301, [(0x002B, b"\x03\x04"), (0x0033, b"\x00\x17" + T.vec16(os.urandom(65)))], session_id=SID)
    ch_resume = T.client_hello([0xC02F], [(0x0023, os.urandom(160))], session_id=SID)
    sh_resume = T.server_hello(0xC02F, [(0x0023, b"")], session_id=SID)
    psk = T.server_hello(0x1301, [(0x002B, b"\x03\x04"), (0x0029, b"\x00\x00")], session_id=SID)
    sh13_bare = T.server_hello(0x1302, [(0x002B, b"\x03\x04")], session_id=SID)
    v2 = T.sslv2_client_hello(0x0301, [0x000039, 0x00002F, 0x010080])
    flights = {
        "tls12": TLS12,
        "tls13-middlebox-ccs": TLS13,
        "hello-retry": [("c", T.record(22, CH13)), ("s", T.record(22, hrr) + T.CCS), ("c", T.CCS + T.record(22, ch2)),
                        ("s", T.record(22, sh13) + T.app_data(500)), ("c", T.app_data(60))],
        "tls12-abbreviated": [("c", T.record(22, ch_resume)), ("s", T.record(22, sh_resume + T.handshake(4, os.urandom(170))) + SERVER_FINISH12),
                              ("c", T.CCS + T.record(22, os.urandom(40)))],
        "tls13-psk": [TLS13[0], ("s", T.record(22, psk) + T.app_data(100)), ("c", T.app_data(50))],
        "hellos-over-many-records": [("c", T.records(22, CH12, 7)), ("s", T.records(22, SH12 + T.certificate([DER]) + T.SERVER_HELLO_DONE, 50)),
                                     ("c", T.CCS), ("s", T.CCS)],
        "two-hellos-in-one-record": [("c", T.record(22, CH12 + CH13)), ("s", T.record(22, SH12 + SH12))],
        "sslv2-compatible": [("c", v2 + T.record(22, T.handshake(16, b"x" * 12))), ("s", T.record(22, SH12) + T.CCS), ("c", T.CCS)],
        "sslv2-only": [("c", T.sslv2_client_hello(0x0002, [0x010080, 0x020080])), ("s", b"\x80\x30" + os.urandom(48))],
        "alerts": [TLS12[0], ("s", T.alert(1, 90) + T.alert(2, 40)[:6]), ("s", T.alert(2, 40)[6:] + T.alert(2, 250) * 20)],
        "alert-record-of-three-bytes": [TLS12[0], ("c", T.record(21, b"\x02\x28\x01")), ("c", T.record(21, b"\x00"))],
        "oversized-record": [TLS12[0], ("s", b"\x16\x03\x03\xff\xff" + os.urandom(100))],
        "bad-record": [TLS12[0], ("c", b"\x63\x03\x03\x00\x02ab")],
        "server-not-tls": [TLS12[0], ("s", b"HTTP/1.1 400 Bad Request\r\n\r\n")],
        "server-bad-first-record": [TLS12[0], ("s", b"\x16\x02\x03\x00\x02ab")],
        "not-tls": [("c", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"), ("s", b"HTTP/1.1 200 OK\r\n\r\n")],
        "client-first-message-not-hello": [("c", T.record(22, T.handshake(16, b"k" * 20) + CH12))],
        "huge-hello": [("c", T.record(22, b"\x01\xff\xff\xff" + bytes(1000)) + T.records(22, bytes(80_000), 16384))],
        "early-data-before-server-hello": [("c", T.record(22, CH13) + T.app_data(40)), ("s", T.record(22, sh13_bare) + T.app_data(30)),
                                           ("c", T.app_data(20))],
        "heartbeat": [TLS12[0], ("s", T.record(24, b"\x01\x00\x03abc") + T.record(22, SH12))],
        "too-many-values-to-remember": [("c", T.record(22, T.client_hello(list(range(1, 601)), [T.ext_sni("many.test")]))),
                                        ("s", T.record(22, T.server_hello(0x002F, [(0x1000 + i, b"") for i in range(600)])))],
        "empty-records": [("c", T.record(22, b"") + T.record(22, CH12)), ("s", T.record(23, b"") + T.record(22, b""))],
        # result()'s branches that the flights above do not reach (see test_result_branches)
        "tls12-resumed-by-session-id": [("c", T.record(22, ch_resume)), ("s", T.record(22, sh_resume))],
        "tls12-new-session-id": [("c", T.record(22, ch_resume)), ("s", T.record(22, T.server_hello(0xC02F, [], session_id=b"\x07" * 32)))],
        "tls12-empty-session-id": [("c", T.record(22, T.client_hello([0xC02F], []))), ("s", T.record(22, T.server_hello(0xC02F, [])))],
        "odd-codes-and-alpn": [("c", T.record(22, T.client_hello([0xBEEF], [T.ext_alpn([b"h2", b"\xff\xfe", b"caf\xc3\xa9", b""])], version=0x0399))),
                               ("s", T.record(22, T.server_hello(0xBEEF, [T.ext_alpn([b"\xc3\x28"])], version=0x7F1C)))],
        "client-hello-only-odd-version": [("c", T.record(22, T.client_hello([0x1301], [T.ext_supported_versions([0x0A0A, 0x7F17, 0x0303])])))],
        "server-alpn-and-certificate": [("c", T.record(22, T.client_hello([0xC02F], [T.ext_alpn([b"http/1.1"])]))),
                                        ("s", T.record(22, T.server_hello(0xC02F, [T.ext_alpn([b"http/1.1"])]) + T.certificate([DER])
                                                       + T.SERVER_HELLO_DONE))],
    }
    return {name: _steps(steps) for name, steps in flights.items()}


CONVERSATIONS = {**_capture_conversations(), **_crafted()}
NAMES = sorted(CONVERSATIONS)


def test_the_capture_streams_are_all_here():
    """Five loopback handshakes and the STARTTLS capture's connections."""
    names = [n for n in NAMES if n.startswith(("loopback-", "starttls-"))]
    assert 5 == sum(n.startswith("loopback-") for n in names)
    assert sum(n.startswith("starttls-") for n in names) >= 3


@pytest.mark.parametrize("name", NAMES)
def test_every_stream_as_captured_and_byte_by_byte(name):
    segments = CONVERSATIONS[name]
    same(ops_of(segments))
    if sum(len(d) for _, d, _ in segments) < 40_000:
        same(ops_of([(fc, data[i : i + 1], ts) for fc, data, ts in segments for i in range(len(data))]))


# --- result() in C ----------------------------------------------------------------------------------


def test_the_c_result_is_used():
    """TlsSessionC's result() is the extension's, not the Python mixin's (the reference)."""
    from sniffd.tls import _session

    assert TlsSessionC.result is _session.Session.result
    assert TlsSessionPy.result is session._Result.result


# Each of result()'s branches, with the values written by hand; same() holds the C
# result() equal to the reference's on every stream here, these say the streams
# reach the branches.
BRANCHES = {
    "not-tls": {"version": None, "negotiated": False, "cipher": None, "sni": None, "alpn_offered": [], "alpn": None,
                "resumed": None, "hello_retry": False, "ja3": None, "ja4": None, "ja3s": None, "ja4s": None, "server_cert": None},
    "sslv2-only": {"version": "SSLv2", "negotiated": False, "cipher": None, "resumed": None, "ja3": None, "ja4": None},
    "hello-retry": {"version": "TLSv1.3", "cipher": "TLS_AES_128_GCM_SHA256", "hello_retry": True, "resumed": False, "sni": "tls13.test"},
    "tls13-psk": {"version": "TLSv1.3", "hello_retry": False, "resumed": True, "established": True},
    "tls12-abbreviated": {"version": "TLSv1.2", "resumed": True, "server_cert": None},  # by the server's CCS
    "tls12-resumed-by-session-id": {"resumed": True, "established": False},
    "tls12-new-session-id": {"resumed": False},
    "tls12-empty-session-id": {"resumed": False},
    "tls12": {"resumed": False, "sni": "www.example.test", "alpn_offered": ["h2", "http/1.1"], "alpn": "h2"},
    "odd-codes-and-alpn": {"version": "0x7f1c", "cipher": "0xbeef", "negotiated": True,
                           "alpn_offered": ["h2", "\udcff\udcfe", "caf\u00e9", ""], "alpn": "\udcc3("},
    "client-hello-only-odd-version": {"version": "0x7f17", "negotiated": False, "cipher": None, "alpn": None, "resumed": None,
                                      "ja3s": None, "ja4s": None},
    "alerts": {"negotiated": False, "established": False},
}


@pytest.mark.parametrize("name", sorted(BRANCHES))
def test_result_branches(name):
    got = same(ops_of(CONVERSATIONS[name]))
    expected = BRANCHES[name]
    assert expected == {k: got[k] for k in expected}


def test_result_alerts_and_certificate_are_the_records_own():
    """The alerts list and the certificate's dict and dns_names are copies: changing the
    record does not change the session (a record written early, then the session's at close)."""
    for name in ("tls12", "server-alpn-and-certificate", "alerts"):
        c = TlsSessionC()
        for fc, data, ts in CONVERSATIONS[name]:
            c.feed(fc, data, ts)
        got = c.result()
        if name == "alerts":
            assert 16 == len(got["alerts"]) == len(c.alerts)
            got["alerts"].clear()
            assert 16 == len(c.alerts)
            continue
        assert ["unit.test", "*.unit.test"] == got["server_cert"]["dns_names"]
        assert got["server_cert"] == c.server_cert and got["server_cert"] is not c.server_cert
        got["server_cert"]["dns_names"].append("x")
        got["server_cert"]["subject"] = "y"
        assert c.result()["server_cert"] == c.server_cert != got["server_cert"]


def test_the_fingerprint_memos_are_used_as_by_the_python_result(monkeypatch):
    """The C result() reads a memo hit itself (without the Python frames of
    client_fingerprints and Memo.get): the same fingerprints, and the memos end with
    the same hits, misses, values and first sightings as with the Python result()."""
    from sniffd.tls.memo import Memo

    ends = []
    for cls in (TlsSessionPy, TlsSessionC):
        monkeypatch.setattr(fingerprint, "CLIENT_MEMO", Memo(4))  # small: entries are dropped too
        monkeypatch.setattr(fingerprint, "SERVER_MEMO", Memo(4))
        results = []
        for _ in range(3):
            for name in NAMES:
                s = cls()
                for fc, data, ts in CONVERSATIONS[name]:
                    s.feed(fc, data, ts)
                results.append((s.result(), s.result()))
        memos = [(m.hits, m.misses, dict(m._values), list(m._seen)) for m in (fingerprint.CLIENT_MEMO, fingerprint.SERVER_MEMO)]
        ends.append((results, memos))
    assert ends[0] == ends[1]
    assert ends[1][1][0][0] > 20 and ends[1][1][1][0] > 20  # hits, both memos


# --- replays chosen by hypothesis ---------------------------------------------------------------


@st.composite
def replay(draw, mutate: bool = False, shuffle: bool = False):
    """One stream, cut anywhere, with gaps, truncation and (``mutate``) changed bytes;
    (``shuffle``) the two directions interleaved in any order."""
    segments = CONVERSATIONS[draw(st.sampled_from(NAMES))]
    rnd = random.Random(draw(st.integers(0, 2**32 - 1)))
    ops = []
    for fc, data, ts in segments:
        if mutate and rnd.random() < 0.4:
            data = bytearray(data)
            for _ in range(rnd.randint(1, 4)):
                at = rnd.randrange(min(len(data), 600) + 1)
                what = rnd.random()
                if what < 0.5 and at < len(data):
                    data[at] ^= 1 << rnd.randrange(8)
                elif what < 0.8:
                    data[at:at] = bytes([rnd.randrange(256)])
                else:
                    del data[at : at + rnd.randint(1, 5)]
            data = bytes(data)
        cut = rnd.choice([1, 2, 3, 5, 7, 64, 1000, 100_000])
        pos = 0
        while pos < len(data):
            n = rnd.randint(1, cut)
            piece = data[pos : pos + n]
            pos += n
            if rnd.random() < 0.02:
                ops.append(("gap", fc, len(piece)))  # lost, as a capture loses it
            else:
                ops.append(("feed", fc, piece, ts))
        if rnd.random() < 0.05:
            ops.append(("feed", fc, b"", ts))
    if shuffle:
        client = [o for o in ops if o[1]]
        server = [o for o in ops if not o[1]]
        ops = []
        while client or server:
            side = client if (client and (not server or rnd.random() < 0.5)) else server
            ops.append(side.pop(0))
    if ops and draw(st.booleans()):
        ops = ops[: draw(st.integers(0, len(ops)))]  # truncated: the rest never came
    return ops


FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FAST
@given(replay())
def test_any_segmentation_gaps_and_truncation(ops):
    same(ops)


@FAST
@given(replay(mutate=True))
def test_flipped_inserted_and_deleted_bytes(ops):
    same(ops)


@FAST
@given(replay(shuffle=True))
def test_the_two_directions_in_any_order(ops):
    same(ops)


@FAST
@given(st.lists(st.one_of(
    st.tuples(st.just("feed"), st.booleans(), st.binary(max_size=200), st.floats(0, 10, allow_nan=False)),
    st.tuples(st.just("feed"), st.booleans(), st.builds(lambda b, h: bytes([h]) + b"\x03" + bytes([b[0] % 5]) + b[1:],
                                                        st.binary(min_size=3, max_size=80), st.sampled_from([20, 21, 22, 23, 24])),
              st.floats(0, 10, allow_nan=False)),
    st.tuples(st.just("gap"), st.booleans(), st.integers(-2, 3000)),
    st.tuples(st.just("close"), st.floats(0, 10, allow_nan=False)),
), max_size=16))  # fmt: skip
def test_random_bytes_and_record_soup(ops):
    same(ops)


def test_memoryview_and_bytearray_input_and_int_times():
    data = CONVERSATIONS["tls12"]
    ops = [("feed", fc, memoryview(d) if i % 2 else bytearray(d), i) for i, (fc, d, _) in enumerate(data)]
    same(ops, close_at=7)


def assert_peak_rss_flat(run, n: int) -> None:
    """``run(n)`` after a warm-up ``run(10_000)`` leaves the peak RSS within 2 MiB."""
    run(10_000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    run(n)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert after - before < 2048, (before, after)  # KiB


def test_many_sessions_do_not_leak():
    """100k sessions through handshakes, alerts, a huge hello and SSL 2.0: the
    process's peak RSS does not grow after the first 10k (refcounts and buffers)."""

    def run(n):
        flows = [CONVERSATIONS[k] for k in ("tls12", "hello-retry", "alerts", "sslv2-compatible", "two-hellos-in-one-record", "not-tls")]
        for i in range(n):
            s = TlsSessionC()
            for fc, data, ts in flows[i % len(flows)]:
                s.feed(fc, data[:9], ts)
                s.feed(fc, data[9:], ts)
            s.gap(True, 3)
            s.close(1e9)
            if i % 10 == 0:
                s.result()

    assert_peak_rss_flat(run, 100_000)


# --- TlsFlow in C (flow.TlsFlow) held equal to flow.TlsFlowPy ------------------------------------

from sniffd.budget import Meter  # noqa: E402


def observe_flow(t) -> dict:
    return {
        "session": observe(t.session),
        "charged": t.charged,
        "times": repr((t.last_ts, t.done_at)),
        "written": t.written,
        "anomalies": sorted(t.anomalies),
        "starttls": t.starttls,
        "open_transactions": t.open_transactions,
        "meter": (t.meter.http_bytes, t.meter.over),
        "loose": t.loose,
        "records": [record_of(r) for r in t.pairing.done],
    }


def record_of(r) -> tuple:
    # repr of the numbers: a float is not an int (the record's JSON would differ)
    return (type(r).__name__, repr(r.ts), r.tls, list(r.tls), repr(r.duration_ms), r.end_reason, sorted(r.anomalies), type(r.anomalies))


class Fresh(list):
    """Chunks given to each flow as a new iterator (any iterable, not only a list)."""


def same_flow(ops: list[tuple], anomalies=(), starttls=None, limit: int = 1 << 62) -> list[tuple]:
    """Runs ``ops`` on a TlsFlowPy and a TlsFlow, comparing after every call; returns the records taken."""
    meters = Meter(), Meter()
    for m in meters:
        m.limit = limit
    py = flow.TlsFlowPy(meters[0], anomalies, starttls=starttls)
    c = flow.TlsFlow(meters[1], anomalies, starttls=starttls)
    taken = []
    for i, op in enumerate(ops):
        got = [getattr(t, op[0])(*[iter(a) if isinstance(a, Fresh) else a for a in op[1:]]) for t in (py, c)]
        if op[0] == "take":
            assert [record_of(r) for r in got[0]] == [record_of(r) for r in got[1]], i
            taken += [record_of(r) for r in got[0]]
        else:
            assert got[0] is got[1] is None
        assert observe_flow(py) == observe_flow(c), (i, op[:2])
    return taken


def flow_ops(session_ops: list[tuple], rnd: random.Random) -> list[tuple]:
    """A session's calls as the flow table makes them of a TlsFlow: feed_data, feed with
    every chunk shape, notes, ticks, take, and a close with any reason."""
    out = []
    for op in session_ops:
        if op[0] == "gap":
            out.append(("feed", op[1], [op[2]], 0.5))
        elif op[0] == "close":
            out.append(("close", rnd.choice([None, "", "idle_timeout"]), op[1], rnd.choice(["fin", "rst", "idle", "end_of_input"])))
        else:
            _, fc, data, ts = op
            what = rnd.random()
            if what < 0.6:
                out.append(("feed_data", fc, data, ts) + ((rnd.choice([None, 7]),) if rnd.random() < 0.3 else ()))
            elif what < 0.75:
                out.append(("feed", fc, [(data, ts)], ts + 1))
            elif what < 0.85:
                out.append(("feed", fc, [(data[:3], ts, 9), data[3:], 0] if len(data) > 3 else [data], ts))
            else:
                out.append(("feed", fc, Fresh([data]), ts))
        if rnd.random() < 0.1:
            out.append(("note", rnd.random() < 0.5, ("tcp_gap",)))
        if rnd.random() < 0.1:
            out.append(("tick", rnd.choice([0.0, 50.0, 1e6])))
        if rnd.random() < 0.1:
            out.append(("take",))
    if rnd.random() < 0.8:
        out.append(("close", rnd.choice([None, "cut_by_shutdown"]), 1e6 + 1, rnd.choice(["fin", "shutdown", "end_of_input"])))
    if rnd.random() < 0.3:  # a second close and a late note change nothing
        out += [("close", "idle_timeout", 2e6), ("note", True, ("late",))]
    out.append(("take",))
    return out


def test_the_c_flow_is_used():
    from sniffd.tls import _session, starttls

    assert flow.TlsFlow.__mro__[1] is _session.Flow
    assert flow.TlsFlowPy.session_type is TlsSessionPy
    assert starttls.TlsFlow is flow.TlsFlow


@pytest.mark.parametrize("name", NAMES)
def test_flow_on_every_stream(name):
    segments = CONVERSATIONS[name]
    for seed in range(3):
        rnd = random.Random(seed)
        records = same_flow(flow_ops(ops_of(segments), rnd), anomalies={"tcp_data_after_rst"} if seed == 1 else (),
                            starttls="smtp" if seed == 2 else None)
        assert len(records) <= 1
    # byte by byte, with a tight memory limit: the charge goes up and down, and over is raised
    if sum(len(d) for _, d, _ in segments) < 20_000:
        ops = [("feed_data", fc, data[i : i + 1], ts) for fc, data, ts in segments for i in range(len(data))]
        same_flow(ops + [("close", None, 1e9), ("take",)], limit=50)


@FAST
@given(replay(mutate=True), st.integers(0, 2**32 - 1))
def test_flow_any_segmentation_and_mutation(ops, seed):
    same_flow(flow_ops(ops, random.Random(seed)))


def test_flow_records_by_hand():
    """A TLS 1.2 handshake through the C flow: the record's values written by hand."""
    t = flow.TlsFlow(Meter(), ("tcp_gap",), starttls="smtp")
    for fc, data, ts in CONVERSATIONS["tls12"]:
        t.feed_data(fc, data, ts)
    assert (103.0, 0, True) == (t.done_at, t.open_transactions, t.session.established)
    t.tick(103.0 + flow.EARLY_RECORD_S)
    (rec,) = t.take()
    assert (flow.TlsRecord, 100.0, 13000.0, "open", {"tcp_gap"}, "smtp", "TLSv1.2") == (
        type(rec), rec.ts, rec.duration_ms, rec.end_reason, rec.anomalies, rec.tls["starttls"], rec.tls["version"])
    t.close("idle_timeout", 200.0, "fin")
    assert ([], True) == (t.take(), t.written)
    u = flow.TlsFlow()
    u.feed_data(True, CONVERSATIONS["tls12"][0][1][:20], 5)
    assert (20 - 5 - 4, 20 - 5 - 4) == (u.charged, u.meter.http_bytes)  # record and handshake headers read, 11 bytes of hello held
    u.close("idle_timeout", 9, "idle")
    (rec,) = u.take()
    assert (5, 0.0, "idle", {"idle_timeout", "tls_truncated_handshake"}, 0, 0) == (
        rec.ts, rec.duration_ms, rec.end_reason, rec.anomalies, u.charged, u.meter.http_bytes)


def test_many_flows_do_not_leak():
    """50k flows through whole handshakes to their record: peak RSS flat after the first 10k."""

    def run(n):
        segs = CONVERSATIONS["tls12"]
        meter = Meter()
        for i in range(n):
            t = flow.TlsFlow(meter, ("x",), starttls=None)
            for fc, data, ts in segs:
                t.feed_data(fc, data[:7], ts)
                t.feed(fc, [(data[7:], ts), 0], ts)
            t.tick(1e9)
            t.close("idle_timeout", 1e9 + 1, "fin")
            t.take()

    assert_peak_rss_flat(run, 50_000)


# --- the hello parsers alone --------------------------------------------------------------------

from sniffd.tls import _session as C_SESSION  # noqa: E402
from sniffd.tls.hello import parse_client_hello, parse_server_hello  # noqa: E402

EXT_TYPES = [0, 10, 11, 13, 16, 41, 43, 0x0A0A, 23, 0xFF01, 51]


@st.composite
def ext_body(draw, etype: int, server: bool) -> bytes:
    kind = {3: "random", 4: "off"}.get(draw(st.integers(0, 5)), "good")
    if kind == "random":
        return draw(st.binary(max_size=12))
    if etype == 0:
        names = draw(st.lists(st.tuples(st.sampled_from([0, 0, 1, 255]), st.binary(max_size=6)), max_size=3))
        if draw(st.integers(0, 3)) == 1:
            names.append((draw(st.sampled_from([0, 7])), b""))  # an empty name last: its header ends the list
        inner = b"".join(bytes([t]) + T.vec16(n) for t, n in names)
        body = T.vec16(inner) if draw(st.booleans()) or not inner else inner
    elif etype == 16:
        body = T.vec16(b"".join(T.vec8(p) for p in draw(st.lists(st.binary(max_size=5), max_size=3))))
    elif etype in (43, 11):
        vals = draw(st.lists(st.sampled_from([0x0304, 0x0303, 0x0A0A, 0x7F1C, 0x0302, 0xFAFA, 0x1A1A]), min_size=1, max_size=4))
        raw = b"".join(T.u16(v) for v in vals)
        body = T.vec8(raw) if etype == 43 else T.vec8(bytes(v & 0xFF for v in vals))
        if etype == 43 and server != (draw(st.integers(0, 5)) == 3):
            body = raw[:2]  # a ServerHello's selected_version
    elif etype in (10, 13):
        raw = b"".join(T.u16(v) for v in draw(st.lists(st.integers(0, 0xFFFF), max_size=4)))
        body = T.vec16(raw + b"\x01" if draw(st.integers(0, 3)) == 2 else raw)  # odd: half a value
    else:
        body = draw(st.binary(max_size=4))
    if kind == "off" and body:
        body = body[:-1] if draw(st.booleans()) else body + b"\x00"
    return body


@st.composite
def hello_body(draw, server: bool) -> bytes:
    out = T.u16(draw(st.sampled_from([0x0303, 0x0301, 0x0304, 0x0300, 0x0002, 0x1234])))
    out += T.HRR_RANDOM if server and draw(st.booleans()) else draw(st.binary(min_size=32, max_size=32))
    out += T.vec8(bytes(draw(st.sampled_from([0, 1, 16, 32, 33, 40]))))  # at most 32 is valid
    if server:
        out += T.u16(draw(st.integers(0, 0xFFFF))) + b"\x00"
    else:
        suites = b"".join(T.u16(v) for v in draw(st.lists(st.integers(0, 0xFFFF), max_size=5)))
        if not draw(st.integers(0, 9)):
            suites += b"\x00"  # half a suite
        out += T.vec16(suites) + T.vec8(draw(st.binary(min_size=0, max_size=2)))
    if draw(st.integers(0, 7)):
        exts = []
        for etype in draw(st.lists(st.sampled_from(EXT_TYPES), max_size=8, unique=draw(st.booleans()))):
            exts.append((etype, draw(ext_body(etype, server))))
        block = b"".join(T.u16(t) + T.vec16(b) for t, b in exts)
        out += T.vec16(block) if draw(st.integers(0, 6)) else T.u16(max(0, len(block) + draw(st.sampled_from([-1, 1, 4])))) + block
    cut = draw(st.integers(0, 7))
    if cut == 1:
        out = out[: draw(st.integers(0, len(out)))]
    elif cut == 2:
        out += draw(st.binary(min_size=1, max_size=4))
    return out


def hellos_agree(body: bytes, server: bool) -> None:
    c_hello, version, key = (C_SESSION.parse_server_hello if server else C_SESSION.parse_client_hello)(body)
    py_hello = (parse_server_hello if server else parse_client_hello)(body)
    assert repr(py_hello) == repr(c_hello)
    if py_hello is None:
        assert (None, None) == (version, key)
    else:
        assert (py_hello.version if server else py_hello.highest_version()) == version
        assert (fingerprint._server_key(py_hello) if server else fingerprint._client_key(py_hello)) == key


@settings(max_examples=600, deadline=None)
@given(st.booleans().flatmap(lambda server: st.tuples(st.just(server), hello_body(server))))
def test_hello_parsers_agree_on_generated_hellos(case):
    server, body = case
    hellos_agree(body, server)


def _real_hellos() -> list[tuple[bool, bytes]]:
    """The first handshake message of each direction of every stream here."""
    out = []
    for segments in CONVERSATIONS.values():
        for fc in (True, False):
            stream = b"".join(d for f, d, _ in segments if f == fc)
            if len(stream) > 9 and stream[0] == 22 and stream[5] in (1, 2):
                length = int.from_bytes(stream[6:9], "big")
                out.append((stream[5] == 2, stream[9 : 9 + length]))
    return out


REAL_HELLOS = _real_hellos()


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(REAL_HELLOS), st.randoms(use_true_random=False))
def test_hello_parsers_agree_on_real_hellos_with_changed_bytes(hello, rnd):
    server, body = hello
    body = bytearray(body)
    for _ in range(rnd.randint(0, 3)):
        at = rnd.randrange(len(body) + 1)
        if rnd.random() < 0.6 and at < len(body):
            body[at] ^= 1 << rnd.randrange(8)
        elif rnd.random() < 0.5:
            body[at:at] = bytes([rnd.randrange(256)])
        else:
            del body[at : at + rnd.randint(1, 3)]
    hellos_agree(bytes(body), server)
    hellos_agree(bytes(body), not server)


def test_real_hellos_are_many():
    assert len(REAL_HELLOS) >= 20


# --- the ClientHello detector -------------------------------------------------------------------


def test_the_c_detector_is_used():
    from sniffd import flows
    from sniffd.tls import starttls

    assert detect.looks_like_tls_client_hello is C_SESSION.looks_like_tls_client_hello
    assert flows.looks_like_tls_client_hello is C_SESSION.looks_like_tls_client_hello
    assert starttls.looks_like_tls_client_hello is C_SESSION.looks_like_tls_client_hello


def detectors_agree(data) -> None:
    assert detect.looks_like_tls_client_hello_py(data) is C_SESSION.looks_like_tls_client_hello(data)


def test_detectors_agree_on_every_prefix_of_every_client_stream():
    for segments in CONVERSATIONS.values():
        stream = b"".join(d for fc, d, _ in segments if fc)[:200]
        for n in range(len(stream) + 1):
            detectors_agree(stream[:n])
            detectors_agree(memoryview(stream)[:n])


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([22, 22, 22, 23, 0x80]), st.sampled_from([3, 3, 2]), st.sampled_from([1, 3, 4, 5]),
                          st.sampled_from([0, 1, 3, 6, 40, 16384, 16385]), st.binary(max_size=10)), max_size=7),
       st.integers(0, 200))  # fmt: skip
def test_detectors_agree_on_record_soup(records, cut):
    data = b"".join(bytes([t, major, minor]) + T.u16(length) + body for t, major, minor, length, body in records)
    data = data.replace(b"\x16\x03\x01\x00\x28", b"\x16\x03\x01\x00\x28\x01\x00\x00\x30\x03\x03")  # hello-looking starts
    detectors_agree(data[:cut])
    detectors_agree(data)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from([1, 1, 1, 2]), st.sampled_from([0, 40, 41, 0x101]), st.sampled_from([3, 3, 2]), st.sampled_from([0, 3, 4, 5]),
       st.lists(st.integers(1, 7), min_size=1, max_size=7), st.sampled_from([None, None, 0, 16384, 16385]), st.integers(0, 80))  # fmt: skip
def test_detectors_agree_on_hello_starts_cut_into_records(mtype, length, major, minor, sizes, declared, cut):
    """A hello's first bytes (type, length, version) over records of 1-7 bytes;
    ``declared``: the first record's header claims that length instead."""
    hello = bytes([mtype]) + length.to_bytes(3, "big") + bytes([major, minor]) + bytes(40)
    data, pos = b"", 0
    for i, size in enumerate(sizes):
        piece = hello[pos : pos + size]
        pos += size
        data += bytes([22, 3, 1]) + T.u16(declared if i == 0 and declared is not None else len(piece)) + piece
    detectors_agree(data)
    detectors_agree(data[:cut])
