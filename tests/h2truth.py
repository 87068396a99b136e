"""The answer key of a capture of real h2c traffic (tests/live/test_h2c_loopback.py
``h2c_traffic`` writes it from the two ends), and how sniffd's records are
held to it: by the tests on a fresh capture (tests/live) and on the committed
one (captures/h2c, tests/pcap/test_h2c_capture.py).

The key: ``{"server_port": N, "connections": {client port: {"name": ...,
"streams": {stream id: record_view of its record}}}}``.
"""

from __future__ import annotations


def record_view(rec: dict) -> dict:
    """What the answer key says of an HTTP/2 record: everything but times,
    addresses and the community id (the capture's, not the ends')."""
    req, resp = rec["request"], rec["response"]
    return {
        "request": None if req is None else {k: req[k] for k in ("method", "uri", "version", "headers", "body_len")},
        "response": None if resp is None else {k: resp[k] for k in ("status", "version", "headers", "body_len",
                                                                      "interim")},
        **{k: rec[k] for k in ("trans_depth", "stream_id", "pushed_by", "h2_error", "grpc", "end_reason", "anomalies")},
    }


# The records are compared with what was sent, cookies included: redaction
# of HTTP/2 records is tests/privacy/test_redaction_h2.py's.
NO_REDACTION = "[privacy]\nredact = false\n"


def check_against_key(records: list[dict], key: dict) -> None:
    """Every record of the capture is one the key has, and every one it has is written."""
    server_port = key["server_port"]
    got = {}
    for rec in records:
        assert (rec["kind"], rec["server"]["port"]) == ("http", server_port)
        got[(int(rec["client"]["port"]), int(rec["stream_id"]))] = record_view(rec)
    want = {(int(port), int(sid)): view for port, conn in key["connections"].items()
            for sid, view in conn["streams"].items()}
    assert sorted(want) == sorted(got)
    for k in want:
        assert want[k] == got[k], k
    assert len(records) == len(got)  # one record per stream
