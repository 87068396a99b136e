"""Properties of TlsSession over generated input (hypothesis).

- Whatever bytes come (random, or a real handshake with bytes flipped, cut,
  inserted), in whatever pieces, with gaps and a close: no exception, a result
  that JSON writes, anomaly names from the published list, and memory within
  the bounds.
- However a handshake is cut into TCP segments, the result is the same.
"""

from __future__ import annotations

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_tls_session import TLS12, TLS12_RESULT, TLS13, run

from sniffd import records
from sniffd.tls import MAX_CERTIFICATE_BYTES, MAX_HELLO_BYTES, TLS_ANOMALIES, TlsSession, looks_like_sslv2_client_hello, looks_like_tls_client_hello

# A partial record header, a partial handshake header, one hello or certificate in
# progress per direction, an SSL 2.0 hello being gathered, half an alert.
MEM_BOUND = 2 * (5 + 4 + MAX_CERTIFICATE_BYTES + 1) + MAX_HELLO_BYTES


def check(s: TlsSession) -> None:
    got = s.result()
    # Wire strings (SNI, ALPN) may hold bytes that are not UTF-8, as lone
    # surrogates: the record writer escapes them (sniffd.records.dumps).
    assert orjson.loads(records.dumps({"tls": got}))["tls"].keys() == got.keys()
    assert s.anomalies <= set(TLS_ANOMALIES)
    assert s.mem <= MEM_BOUND


steps = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["c", "s"]), st.binary(min_size=0, max_size=300)),
        st.tuples(st.just("gap"), st.booleans(), st.integers(min_value=0, max_value=5000)),
    ),
    max_size=12,
)


@settings(max_examples=400, deadline=None)
@given(steps, st.integers(min_value=1, max_value=64))
def test_random_bytes_never_raise(steps, piece):
    s = run(steps, piece=piece, close=False)
    check(s)
    s.close(1e9)
    check(s)


@st.composite
def mutated_handshake(draw):
    """A real TLS 1.2 or 1.3 exchange with a few bytes changed, dropped or inserted."""
    flow = draw(st.sampled_from([TLS12, TLS13]))
    out = []
    for who, data in flow:
        data = bytearray(data)
        for _ in range(draw(st.integers(min_value=0, max_value=3))):
            if not data:
                break
            i = draw(st.integers(min_value=0, max_value=len(data) - 1))
            op = draw(st.sampled_from(["flip", "drop", "insert", "cut"]))
            if op == "flip":
                data[i] = draw(st.integers(min_value=0, max_value=255))
            elif op == "drop":
                del data[i]
            elif op == "insert":
                data[i:i] = draw(st.binary(min_size=1, max_size=8))
            else:
                del data[i:]
        out.append((who, bytes(data)))
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_handshake(), st.integers(min_value=1, max_value=700))
def test_mutated_handshakes_never_raise(flow, piece):
    s = run(flow, piece=piece)
    check(s)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_segmentation_gives_the_same_result(data):
    s = TlsSession()
    for i, (who, chunk) in enumerate(TLS12):
        cuts = sorted(set(data.draw(st.lists(st.integers(min_value=1, max_value=len(chunk) - 1), max_size=12))))
        for a, b in zip([0] + cuts, cuts + [len(chunk)]):
            s.feed(who == "c", chunk[a:b], 100.0 + i)
    s.close(100.0 + len(TLS12))
    assert (TLS12_RESULT, set()) == (s.result(), s.anomalies)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80))
def test_detectors_never_raise_and_agree_with_their_prefixes(data):
    """A definite answer (True/False) never changes when more bytes come."""
    for f in (looks_like_tls_client_hello, looks_like_sslv2_client_hello):
        answers = [f(data[:n]) for n in range(len(data) + 1)]
        decided = [a for a in answers if a is not None]
        assert all(a == decided[0] for a in decided), (f.__name__, answers)


@st.composite
def record_soup(draw):
    """Well-framed TLS records with random insides: a ClientHello header with a random
    body first, then records of any content type, from either side."""
    hello_body = draw(st.binary(max_size=200))
    first = bytes([22, 3, 1]) + (len(hello_body) + 4).to_bytes(2, "big") + b"\x01" + len(hello_body).to_bytes(3, "big") + hello_body
    out = [("c", first)]
    for _ in range(draw(st.integers(min_value=0, max_value=10))):
        ctype = draw(st.sampled_from([20, 21, 22, 23, 24]))
        body = draw(st.binary(max_size=120))
        if ctype == 22 and draw(st.booleans()):
            mtype = draw(st.sampled_from([1, 2, 11, 14, 4, 12]))
            body = bytes([mtype]) + len(body).to_bytes(3, "big") + body
        out.append((draw(st.sampled_from(["c", "s"])), bytes([ctype, 3, 3]) + len(body).to_bytes(2, "big") + body))
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record_soup(), st.integers(min_value=1, max_value=300))
def test_well_framed_random_records_never_raise(flow, piece):
    s = run(flow, piece=piece)
    check(s)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_parsers_never_raise(data):
    from sniffd.tls.hello import parse_client_hello, parse_server_hello, parse_sslv2_client_hello
    from sniffd.tls.x509 import certificate_summary, first_certificate

    for f in (parse_client_hello, parse_server_hello, parse_sslv2_client_hello, first_certificate):
        f(data)
    summary, parsed = certificate_summary(data)
    assert summary["sha256"] and (parsed or summary["subject"] is None)
