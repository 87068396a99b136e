"""Issue 10, property: dropping any ONE data packet changes only the transactions whose bytes
it carried (each of them flagged) and never the pairing of any other transaction.

The packets are drawn (seeded) from the clean corpus by what they carry, as httpgen's own
reader frames the streams: a request's head, a request body, a 100 Continue, a response's
status line and headers, the middle of a body, a chunked body, a HEAD response, a segment
carrying several pipelined messages, a connection's first and last bytes, and a few at
random.  A packet whose bytes another packet of the capture also carries (the kernel
retransmitted it) is never drawn: dropping it loses nothing.
"""

from __future__ import annotations

import random

import pytest

import transform

pytestmark = pytest.mark.live

ROLES = ["request_head", "request_body", "several_requests", "first_request_bytes", "interim_100", "response_head",
         "response_body", "chunked_body", "head_response", "several_responses", "last_response_bytes",
         "random_0", "random_1", "random_2", "random_3"]


def _head_end(stream: bytes, start: int) -> int:
    return stream.index(b"\r\n\r\n", start) + 4


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def _within(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return b[0] <= a[0] and a[1] <= b[1]


@pytest.fixture(scope="session")
def packets_by_role(corpus, segment_spans) -> dict[str, list[int]]:
    """Input packet indexes of the corpus's data packets, by what their bytes are."""
    conns = {id(c): c for c in corpus.ref.conns}
    roles: dict[str, list[int]] = {r: [] for r in ROLES}
    for (cid, direction), items in segment_spans.items():
        c = conns.get(cid)
        if c is None:
            continue
        stream = c.streams[direction]
        last_end = max(e for _, e, _ in items)
        for s, e, index in items:
            span = (s, e)
            if any(_overlaps(span, (s2, e2)) for s2, e2, i2 in items if i2 != index):
                continue  # retransmitted: dropping one copy loses nothing
            roles["random_0"].append(index)
            if direction == transform.C2S:
                if s == 0:
                    roles["first_request_bytes"].append(index)
                reqs = [ex for ex in c.exchanges if _overlaps(span, ex.req)]
                if len(reqs) > 1:
                    roles["several_requests"].append(index)
                for ex in reqs:
                    head = (ex.req[0], _head_end(stream, ex.req[0]))
                    if _overlaps(span, head):
                        roles["request_head"].append(index)
                    elif _within(span, (head[1], ex.req[1])):
                        roles["request_body"].append(index)
            else:
                if e == last_end:
                    roles["last_response_bytes"].append(index)
                resps = [ex for ex in c.exchanges if _overlaps(span, ex.resp)]
                if len(resps) > 1:
                    roles["several_responses"].append(index)
                for ex in resps:
                    pos = ex.resp[0]
                    for _ in ex.interim:
                        end = _head_end(stream, pos)
                        if _overlaps(span, (pos, end)):
                            roles["interim_100"].append(index)
                        pos = end
                    head = (pos, _head_end(stream, pos))
                    if _overlaps(span, head):
                        roles["response_head"].append(index)
                    elif _within(span, (head[1], ex.resp[1])):
                        roles["response_body"].append(index)
                        if any(n == "transfer-encoding" for n, _ in ex.resp_headers):
                            roles["chunked_body"].append(index)
                    if ex.method == "HEAD":
                        roles["head_response"].append(index)
    for r in ("random_1", "random_2", "random_3"):
        roles[r] = roles["random_0"]
    return {r: sorted(set(v)) for r, v in roles.items()}


@pytest.mark.parametrize("role", ROLES)
def test_dropping_one_packet_damages_only_its_own_transactions(read_copy, packets_by_role, role):
    candidates = packets_by_role[role]
    assert candidates, f"the corpus has no data packet of role {role} (a corpus problem, not a sniffd result)"
    index = random.Random(f"single-drop/{role}").choice(candidates)
    run = read_copy([], drop_packets=(index,))
    v = run.verdict
    assert 1 == v.dropped_packets and v.damaged >= 1, run.report()
    assert v.ok, f"dropped input packet {index} ({role}):\n" + run.report()
