"""Redaction of HTTP/2 records through the real ``sniffd read``: header fields
decoded from HPACK are redacted as HTTP/1's are, ``:path`` as the request
target, and the userinfo of ``:authority`` (beside ``host``, or as the host of
a request that sent no Host field).  The header blocks are written by hand
with literal fields (tests/h2craft.py), so the secrets are on the wire as
written; expected tokens are computed here with hmac from the configured key."""

import hashlib
import hmac
import json
import sys
from pathlib import Path

import craft
import sent_secrets as S
from craft import TcpConversation
from h2craft import CLIENT_START, SERVER_START, block, data, headers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pcap"))
from pcapcheck import T0, run_sniffd  # noqa: E402

KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
KEY = bytes.fromhex(KEY_HEX)


def tok(secret: str) -> str:
    return "hmac:" + hmac.new(KEY, secret.encode(), hashlib.sha256).hexdigest()[:16]


def test_http2_headers_path_and_authority_userinfo_are_redacted(tmp_path):
    one = block((":method", "GET"), (":scheme", "http"), (":path", f"/login?user=bob&password={S.QUERY_PASSWORD}"),
                (":authority", f"bob:{S.AUTHORITY_PASSWORD}@example.com"), ("host", "example.com"),
                ("authorization", f"Bearer {S.BEARER}"), ("cookie", "theme=dark"),
                ("cookie", f"session={S.COOKIE_SESSION}"))
    three = block((":method", "GET"), (":scheme", "http"), (":path", "/"),
                  (":authority", f"carol:{S.AUTHORITY_HOST_PASSWORD}@example.com"))
    c = TcpConversation(("10.0.0.1", 40000), ("10.0.0.2", 80))
    segs = c.handshake()
    segs += c.client_data(CLIENT_START + headers(1, one, end_stream=True) + headers(3, three, end_stream=True))
    segs += c.server_data(SERVER_START + headers(1, block((":status", "200"), ("set-cookie",
                                                                               f"session={S.SET_COOKIE_SESSION}; Path=/")))
                          + data(1, b"ok", end_stream=True) + headers(3, block((":status", "204")), end_stream=True))
    segs += [c.client_ack(), *c.close()]
    pcap = tmp_path / "h2.pcap"
    craft.capture(pcap, [(T0 + i * 0.001, s) for i, s in enumerate(segs)])
    cfg = tmp_path / "sniffd.toml"
    cfg.write_text(f'[privacy]\nredact_key = "{KEY_HEX}"\n')
    out = tmp_path / "out.jsonl"
    proc = run_sniffd("read", "-c", cfg, pcap, "-o", out)
    assert (0, "") == (proc.returncode, proc.stderr)
    first, second = [json.loads(line) for line in out.read_text().splitlines()]
    assert {
        "uri": f"/login?user=bob&password={tok(S.QUERY_PASSWORD)}",
        "host": "example.com",
        "headers": {"host": "example.com", ":scheme": "http", "authorization": f"Bearer {tok(S.BEARER)}",
                    "cookie": f"theme={tok('dark')}; session={tok(S.COOKIE_SESSION)}",
                    ":authority": f"bob:{tok(S.AUTHORITY_PASSWORD)}@example.com"},
        "set-cookie": f"session={tok(S.SET_COOKIE_SESSION)}; Path=/",
        "anomalies": ["http2_malformed_headers"],  # Host differs from :authority (RFC 9113 section 8.3.1)
    } == {
        "uri": first["request"]["uri"],
        "host": first["request"]["host"],
        "headers": first["request"]["headers"],
        "set-cookie": first["response"]["headers"]["set-cookie"],
        "anomalies": first["anomalies"],
    }
    hidden = f"carol:{tok(S.AUTHORITY_HOST_PASSWORD)}@example.com"
    assert (3, hidden, {"host": hidden, ":scheme": "http"}) == (
        second["stream_id"], second["request"]["host"], second["request"]["headers"])
