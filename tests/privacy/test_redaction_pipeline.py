"""Redaction and body capture through the whole pipeline (the real
``sniffd read`` on crafted captures): what goes in with secrets comes out
with keyed tokens, and only there.  Expected tokens are computed here with
hmac from the key the test configures: an independent reference."""

import gzip
import hashlib
import hmac
import json
import sys
from pathlib import Path

import craft
import sent_secrets as S
from craft import TcpConversation

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "pcap"))
from pcapcheck import T0, run_sniffd  # noqa: E402

KEY_HEX = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
KEY = bytes.fromhex(KEY_HEX)


def tok(secret: str) -> str:
    return "hmac:" + hmac.new(KEY, secret.encode(), hashlib.sha256).hexdigest()[:16]


def conversation(path: Path, exchanges: list[tuple[bytes, bytes]]) -> None:
    c = TcpConversation(("10.0.0.1", 40000), ("10.0.0.2", 80))
    segs = c.handshake()
    for req, resp in exchanges:
        segs += c.client_data(req) + c.server_data(resp) + [c.client_ack()]
    segs += c.close()
    craft.capture(path, [(T0 + i * 0.001, s) for i, s in enumerate(segs)])


def read(tmp_path: Path, pcap: Path, config: str) -> list[dict]:
    cfg = tmp_path / "sniffd.toml"
    cfg.write_text(config)
    out = tmp_path / "out.jsonl"
    proc = run_sniffd("read", "-c", cfg, pcap, "-o", out)
    assert (0, "") == (proc.returncode, proc.stderr)
    return [json.loads(line) for line in out.read_text().splitlines()]


PRIVACY = f'[privacy]\nredact_key = "{KEY_HEX}"\n'


def test_credentials_in_headers_and_query_become_keyed_tokens(tmp_path):
    basic = __import__("base64").b64encode(S.BASIC_USERPASS.encode()).decode()
    pcap = tmp_path / "creds.pcap"
    request = (f"GET /login?user=bob&password={S.QUERY_PASSWORD}&x=1 HTTP/1.1\r\nHost: h\r\n"
               f"Authorization: Bearer {S.BEARER}\r\nCookie: theme=dark; session={S.COOKIE_SESSION}\r\n"
               f"Proxy-Authorization: Basic {basic}\r\n\r\n").encode()
    response = (f"HTTP/1.1 200 OK\r\nSet-Cookie: session={S.SET_COOKIE_SESSION}; Path=/; HttpOnly\r\n"
                "Content-Length: 2\r\n\r\nok").encode()
    conversation(pcap, [(request, response)])
    (rec,) = read(tmp_path, pcap, PRIVACY)
    assert {
        "uri": f"/login?user=bob&password={tok(S.QUERY_PASSWORD)}&x=1",
        "authorization": f"Bearer {tok(S.BEARER)}",
        "cookie": f"theme={tok('dark')}; session={tok(S.COOKIE_SESSION)}",
        "proxy-authorization": f"Basic {tok(basic)}",
        "set-cookie": f"session={tok(S.SET_COOKIE_SESSION)}; Path=/; HttpOnly",
        "host": "h",
    } == {
        "uri": rec["request"]["uri"],
        "authorization": rec["request"]["headers"]["authorization"],
        "cookie": rec["request"]["headers"]["cookie"],
        "proxy-authorization": rec["request"]["headers"]["proxy-authorization"],
        "set-cookie": rec["response"]["headers"]["set-cookie"],
        "host": rec["request"]["host"],
    }


def test_the_same_credential_gives_the_same_token_on_two_requests(tmp_path):
    pcap = tmp_path / "twice.pcap"
    req = f"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {S.BEARER}\r\n\r\n".encode()
    conversation(pcap, [(req, b"HTTP/1.1 204 No Content\r\n\r\n")] * 2)
    a, b = read(tmp_path, pcap, PRIVACY)
    assert [f"Bearer {tok(S.BEARER)}"] * 2 == [a["request"]["headers"]["authorization"],
                                               b["request"]["headers"]["authorization"]]


def test_configured_extra_header_and_parameter_are_redacted(tmp_path):
    pcap = tmp_path / "extra.pcap"
    conversation(pcap, [(b"GET /x?otp=123456 HTTP/1.1\r\nHost: h\r\nX-Api-Secret: abc\r\n\r\n",
                         b"HTTP/1.1 204 No Content\r\n\r\n")])
    (rec,) = read(tmp_path, pcap, PRIVACY + 'redact_headers = ["X-Api-Secret"]\nredact_params = ["otp"]\n')
    assert (f"/x?otp={tok('123456')}", tok("abc")) == (rec["request"]["uri"], rec["request"]["headers"]["x-api-secret"])


def test_redaction_can_be_turned_off(tmp_path):
    pcap = tmp_path / "off.pcap"
    conversation(pcap, [(b"GET /?password=visible HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer visible\r\n\r\n",
                         b"HTTP/1.1 204 No Content\r\n\r\n")])
    (rec,) = read(tmp_path, pcap, "[privacy]\nredact = false\n")
    assert ("/?password=visible", "Bearer visible") == (rec["request"]["uri"], rec["request"]["headers"]["authorization"])


BODIES = PRIVACY + "[bodies]\ncapture_bodies = true\nmax_body_bytes = 4096\nmax_decoded_bytes = 65536\n"


def test_captured_json_and_form_bodies_have_their_secrets_redacted(tmp_path):
    body = json.dumps({"user": "bob", "data": [{"token": S.JSON_TOKEN}]}).encode()
    form = f"user=bob&password={S.FORM_PASSWORD}".encode()
    pcap = tmp_path / "bodies.pcap"
    conversation(pcap, [
        (b"POST /api HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
         % (len(body), body), b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"),
        (b"POST /login HTTP/1.1\r\nHost: h\r\nContent-Type: application/x-www-form-urlencoded\r\n"
         b"Content-Length: %d\r\n\r\n%s" % (len(form), form),
         b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 4\r\n\r\n\x89PNG"),
    ])
    api, login = read(tmp_path, pcap, BODIES)
    assert ({"user": "bob", "data": [{"token": tok(S.JSON_TOKEN)}]}, "hello", f"user=bob&password={tok(S.FORM_PASSWORD)}",
            None) == (json.loads(api["request"]["body"]["data"]), api["response"]["body"]["data"],
                      login["request"]["body"]["data"], login["response"]["body"])


def test_captured_body_is_cut_at_max_body_bytes_and_says_so(tmp_path):
    text = b"a" * 10000
    pcap = tmp_path / "big.pcap"
    conversation(pcap, [(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
                         b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 10000\r\n\r\n" + text)])
    (rec,) = read(tmp_path, pcap, BODIES)
    resp = rec["response"]
    assert (10000, True, True, 4096, "a" * 4096) == (
        resp["body_len"], resp["body_truncated"], resp["body"]["truncated"], resp["body"]["bytes"], resp["body"]["data"])


def test_gzip_bomb_body_costs_only_max_decoded_bytes(tmp_path):
    """20 MB of text in 20 KB of gzip: decoding stops at max_decoded_bytes."""
    bomb = gzip.compress(b"A" * (20 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 32768
    pcap = tmp_path / "bomb.pcap"
    conversation(pcap, [(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
                         b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\n"
                         b"Content-Length: %d\r\n\r\n%s" % (len(bomb), bomb))])
    (rec,) = read(tmp_path, pcap, BODIES.replace("max_body_bytes = 4096", "max_body_bytes = 32768"))
    body = rec["response"]["body"]
    assert ("gzip", True, True, 65536) == (body["content_encoding"], body["decoded"], body["decoded_truncated"],
                                           len(body["data"]))


# ------------------------------------------------------------ issue 11: the shapes default redaction missed


def test_every_secret_shape_is_redacted_through_a_capture(tmp_path):
    """sent_secrets.SHAPES (a second Set-Cookie cookie with a PHP name, URLs in
    Referer/Location/Content-Location/Refresh/Link, path and ";" parameters,
    names containing secret words, CAS and SAML, API-key headers, WebSocket
    bearer subprotocols, WS-Security in XML, a CONNECT userinfo) on one
    connection, with default redaction and body capture: every field as
    expected, and no secret anywhere in the log."""
    pcap = tmp_path / "shapes.pcap"
    conversation(pcap, [(req, resp) for _, req, resp, _ in S.SHAPES] + [S.TUNNEL_BYTES])
    records = read(tmp_path, pcap, BODIES)
    # The CONNECT tunnel's bytes are a TLS hello and the server's alert: a TLS record (issue 12).
    tls = [r["tls"]["starttls"] for r in records if r["kind"] == "tls"]
    records = [r for r in records if r["kind"] == "http"]
    assert (len(S.SHAPES), ["http"]) == (len(records), tls)
    expected, actual = S.expected_and_actual(records, tok)
    assert expected == actual
    text = (tmp_path / "out.jsonl").read_text()
    assert [] == [s for s in S.ALL if s in text]


def test_connect_tunnel_target_has_its_userinfo_redacted(tmp_path):
    """A tunnel that carries HTTP: each inner record names the CONNECT target."""
    pcap = tmp_path / "tunnel.pcap"
    conversation(pcap, [
        (f"CONNECT u:{S.CONNECT_TUNNEL_PASSWORD}@origin.example:80 HTTP/1.1\r\nHost: origin.example:80\r\n\r\n".encode(),
         b"HTTP/1.1 200 Connection established\r\n\r\n"),
        (b"GET /inner HTTP/1.1\r\nHost: origin.example\r\n\r\n", b"HTTP/1.1 204 No Content\r\n\r\n"),
    ])
    connect, inner = read(tmp_path, pcap, PRIVACY)
    target = f"u:{tok(S.CONNECT_TUNNEL_PASSWORD)}@origin.example:80"
    assert (target, target) == (connect["request"]["uri"], inner["connect_tunnel"]["target"])


def test_start_line_kept_raw_has_its_url_redacted(tmp_path):
    """A request line sniffd cannot parse is kept in start_line (http_parse_error)."""
    pcap = tmp_path / "startline.pcap"
    conversation(pcap, [(f"/login?user=bob&password={S.START_LINE_PASSWORD} GET\r\nHost: h\r\n\r\n".encode(),
                         b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")])
    (rec,) = read(tmp_path, pcap, PRIVACY)
    assert f"/login?user=bob&password={tok(S.START_LINE_PASSWORD)} GET" == rec["request"]["start_line"]
