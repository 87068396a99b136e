"""Real HTTP/2 in clear on loopback, read by sniffd.http2.H2Connection and by the real ``sniffd read``.

A Hypercorn server (a real HTTP/2 stack, serving a tiny ASGI app that notes
every request it gets) and two clients, curl (libcurl with nghttp2: another
stack, so the HPACK encoder on the request side is not the library sniffd
decodes with) and a small python-hyper h2 client (several streams open at
once on one connection, which Debian 12's curl 7.88.1 cannot do in prior
knowledge), talk over kernel TCP on 127.0.0.1; tcpdump captures it; each
direction's TCP payload is taken out of the pcap with dpkt and fed to
H2Connection in capture order.  Every record is compared with what curl was
asked to send and says it got (its -D header dump and -o body files) and
with what the server app saw.  The first tests feed the stage directly;
the last (``test_sniffd_read_logs_real_h2c_traffic_as_the_ends_saw_it``)
runs the installed ``sniffd read`` on a fresh capture of all of it
(``h2c_traffic``, which tests/pcap/make_h2c_fixtures.py also uses to record
captures/h2c/).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from pathlib import Path

import dpkt
import pytest

from sniffd.http.message import Message
from sniffd.http2 import H2Connection, looks_like_h2_preface
from tests.h2truth import NO_REDACTION, check_against_key
from tests.live.conftest import CAPTURE_SETTLE_S, SNIFFD_TIMEOUT_S, TcpdumpCapture

pytestmark = pytest.mark.live

# curl's own bound: a hung server or client must not hang the suite.
CURL_TIMEOUT_S = 30

# /slow/N answers after this long, so curl's parallel requests are all sent
# (open at once on the connection) before the first answer.
SLOW_DELAY_S = 0.3

GRPC_REPLY = b"\x00\x00\x00\x00\x05\x0a\x03hey"


class H2cServer:
    """Hypercorn in a thread, on a socket bound here (its port known before start)."""

    def __init__(self) -> None:
        from hypercorn.config import Config

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        config = Config()
        # Hypercorn makes its own socket object on the descriptor: this one
        # lets go of it, so that it is closed once, by Hypercorn.
        config.bind = [f"fd://{self.sock.detach()}"]
        config.accesslog = None
        config.errorlog = None
        config.loglevel = "WARNING"
        self.config = config
        self.seen: list[dict] = []
        self.errors: list[BaseException] = []
        self.loop = asyncio.new_event_loop()
        self.stop_event: asyncio.Event | None = None
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    async def app(self, scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        path = scope["path"]
        self.seen.append({"method": scope["method"], "path": path, "query": scope["query_string"],
                          "headers": list(scope["headers"]), "body": body, "http_version": scope["http_version"]})
        if path == "/pkg.Greeter/SayHello":
            # gRPC's shape: trailers carry the status (needs te: trailers).
            await send({"type": "http.response.start", "status": 200, "trailers": True,
                        "headers": [(b"content-type", b"application/grpc")]})
            await send({"type": "http.response.body", "body": GRPC_REPLY})
            await send({"type": "http.response.trailers", "more_trailers": False,
                        "headers": [(b"grpc-status", b"7"), (b"grpc-message", b"not%20allowed")]})
            return
        if path == "/hello":
            status, ctype, out = 200, b"text/plain", b"hello over h2c\n"
        elif path == "/echo":
            status, ctype, out = 200, b"application/octet-stream", body[::-1]
        elif path.startswith("/slow/"):
            await asyncio.sleep(SLOW_DELAY_S)
            status, ctype, out = 200, b"text/plain", f"slow {path[6:]}\n".encode() * 100
        else:
            status, ctype, out = 404, b"text/plain", b"no such page\n"
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", ctype), (b"content-length", str(len(out)).encode())]})
        await send({"type": "http.response.body", "body": out})

    def _run(self) -> None:
        from hypercorn.asyncio import serve

        asyncio.set_event_loop(self.loop)

        async def main():
            self.stop_event = asyncio.Event()
            self.started.set()
            await serve(self.app, self.config, shutdown_trigger=self.stop_event.wait)

        try:
            self.loop.run_until_complete(main())
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.errors.append(exc)
            self.started.set()
        finally:
            # Hypercorn leaves idle-timeout tasks behind: end them before the loop.
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def start(self) -> H2cServer:
        self.thread.start()
        self.started.wait(10)
        # Hypercorn is listening once a connection is accepted.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"hypercorn did not start: {self.errors}")

    def stop(self) -> None:
        if self.stop_event is not None:
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(15)


@pytest.fixture
def h2c_server():
    if shutil.which("curl") is None or "HTTP2" not in subprocess.run(["curl", "-V"], capture_output=True,
                                                                       text=True).stdout:
        pytest.fail("curl with HTTP/2 support is needed (Debian's curl has it)")
    server = H2cServer().start()
    yield server
    server.stop()
    assert [] == server.errors, "the Hypercorn server failed; this is not a sniffd result"


# ------------------------------------------------------------ the capture


def tcp_chunks(pcap: Path, server_port: int) -> dict[int, list[tuple[float, bool, bytes]]]:
    """Each connection's payload (keyed by client port) as (ts, from_client,
    new bytes) in capture order; retransmitted bytes are given once."""
    conns: dict[int, list] = {}
    expected: dict[tuple[int, bool], int] = {}
    with open(pcap, "rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        link = reader.datalink()
        for ts, buf in reader:
            if link == dpkt.pcap.DLT_EN10MB:
                ip = dpkt.ethernet.Ethernet(buf).data
            elif link == dpkt.pcap.DLT_LINUX_SLL:
                ip = dpkt.sll.SLL(buf).data
            else:
                ip = dpkt.ip.IP(buf)
            tcp = ip.data
            if not isinstance(tcp, dpkt.tcp.TCP):
                continue
            from_client = tcp.dport == server_port
            cport = tcp.sport if from_client else tcp.dport
            key = (cport, from_client)
            if tcp.flags & dpkt.tcp.TH_SYN:
                expected[key] = tcp.seq + 1
                continue
            payload = bytes(tcp.data)
            if not payload or key not in expected:
                continue
            skip = expected[key] - tcp.seq
            assert skip >= 0, "bytes out of order on loopback: the capture is not what was sent"
            new = payload[skip:]
            if new:
                conns.setdefault(cport, []).append((float(ts), from_client, new))
                expected[key] += len(new)
    return conns


def read_h2(chunks, conn: H2Connection):
    for ts, from_client, data in chunks:
        conn.feed(from_client, data, ts)
    conn.close(None, chunks[-1][0] + 1.0)
    return conn.take()


def captured(tmp_path: Path, server: H2cServer, curl_args: list[list[str]]) -> tuple[dict, list]:
    """Run each curl command line while tcpdump captures; returns the
    connections' chunks and curl's results."""
    pcap = tmp_path / "h2c.pcap"
    capture = TcpdumpCapture(pcap, f"tcp port {server.port}").start()
    results = []
    try:
        for args in curl_args:
            results.append(subprocess.run(["curl", "-sS", "--max-time", str(CURL_TIMEOUT_S), *args],
                                          capture_output=True, text=True, timeout=CURL_TIMEOUT_S + 5))
        time.sleep(CAPTURE_SETTLE_S)
    finally:
        counters = capture.stop()
    for r in results:
        assert 0 == r.returncode, f"curl failed: {r.args}: {r.stderr}"
    assert 0 == counters.get("dropped", 0), capture.stderr_text()
    return tcp_chunks(pcap, server.port), results


def dumped_headers(path: Path) -> list[tuple[str, dict[str, str]]]:
    """curl's -D file: one (status line, fields) per response head, fields
    joined the way records join them."""
    heads = []
    lines: list[str] = []
    for ln in path.read_text().splitlines() + [""]:  # curl ends HTTP/2 header lines with LF alone
        ln = ln.rstrip("\r")
        if ln:
            lines.append(ln)
            continue
        if not lines:
            continue
        fields: dict[str, str] = {}
        for field in lines[1:]:
            name, _, value = field.partition(":")
            name, value = name.strip().lower(), value.strip()
            fields[name] = fields[name] + ", " + value if name in fields else value
        heads.append((lines[0].strip(), fields))
        lines = []
    return heads


def seen_fields(seen: dict) -> dict[str, str]:
    """The request header fields the server app got, joined as records join them."""
    out: dict[str, str] = {}
    for name, value in seen["headers"]:
        name, value = name.decode(), value.decode()
        if name in out:
            out[name] += ("; " if name == "cookie" else ", ") + value
        else:
            out[name] = value
    return out


# ----------------------------------------------------------------- tests


def test_prior_knowledge_post_from_curl(tmp_path, h2c_server):
    """One request per curl run: curl 7.88.1 cannot reuse a prior-knowledge
    connection (curl issue 10634, fixed in 8.0); the h2 client below does that."""
    base = f"http://127.0.0.1:{h2c_server.port}"
    upload = tmp_path / "upload.bin"
    upload.write_bytes(bytes(range(256)) * 80)  # 20,480 bytes: more than one DATA frame
    args = ["--http2-prior-knowledge", "-D", str(tmp_path / "h"), "-o", str(tmp_path / "b"),
            "--data-binary", f"@{upload}", "-H", "content-type: application/octet-stream",
            "-H", "cookie: a=1", "-H", "cookie: b=2", "-H", "x-trace: abc", base + "/echo?v=1"]
    chunks, _ = captured(tmp_path, h2c_server, [args])
    assert 1 == len(chunks)
    (conn_chunks,) = chunks.values()
    assert looks_like_h2_preface(conn_chunks[0][2]) is True
    conn = H2Connection()
    got = read_h2(conn_chunks, conn)
    assert {} == conn.loose
    (t,) = got
    (seen,) = h2c_server.seen
    ((status_line, fields),) = dumped_headers(tmp_path / "h")
    assert (1, 1, "POST", "/echo?v=1", "2", {**seen_fields(seen), ":scheme": "http"}, 20_480, True) == \
        (t.stream_id, t.depth, t.request.method, t.request.uri, t.request.version, t.request.headers,
         t.request.body_len, t.request.complete)
    assert "a=1; b=2" == t.request.headers["cookie"]
    # curl may reset the stream (STREAM_CLOSED) once it has Content-Length's
    # worth of body, before the server's END_STREAM: what the wire did decides
    # the end_reason; the response is complete either way (its whole body came).
    want = {("complete", None): ("complete", None, True, set()),
            ("rst_stream", "STREAM_CLOSED"): ("rst_stream", "STREAM_CLOSED", True, set())}[
        stream_fates(conn_chunks, {True: 0, False: 0}, upgraded=False)[1]]
    assert ("HTTP/2 200", 200, None, "2", fields, len((tmp_path / "b").read_bytes()), *want) == \
        (status_line, t.response.status, t.response.reason, t.response.version, t.response.headers,
         t.response.body_len, t.end_reason, t.h2_error, t.response.complete, t.anomalies)
    assert t.grpc is None


def h2_client(port: int, requests: list[tuple[list[tuple[bytes, bytes]], bytes]], reset: tuple[int, ...] = (),
              ports: list[int] | None = None) -> dict[int, dict]:
    """A small client on python-hyper h2 over a real socket: every request's
    HEADERS and DATA are written at once (all streams open together), then
    it reads until every stream ended.  Returns, per stream id, what it sent
    and what it got, from its own events.  ``reset``: indexes of requests
    the client cancels (RST_STREAM CANCEL) right after sending them
    (``"reset"`` in their truth); ``ports`` gets the client's port."""
    import h2.config
    import h2.connection
    import h2.errors
    import h2.events

    sock = socket.create_connection(("127.0.0.1", port), timeout=CURL_TIMEOUT_S)
    if ports is not None:
        ports.append(sock.getsockname()[1])
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    conn.initiate_connection()
    truth: dict[int, dict] = {}
    for i, (fields, body) in enumerate(requests):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, fields, end_stream=not body)
        for k in range(0, len(body), 16384):
            conn.send_data(sid, body[k:k + 16384], end_stream=k + 16384 >= len(body))
        truth[sid] = {"sent": fields, "sent_body": body, "headers": None, "trailers": [], "body": b"", "ended": False,
                      "reset": None}
        if i in reset:
            conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
            truth[sid].update(ended=True, reset="CANCEL")
    sock.sendall(conn.data_to_send())
    while not all(v["ended"] for v in truth.values()):
        data = sock.recv(65536)
        if not data:
            break
        for e in conn.receive_data(data):
            if getattr(e, "stream_id", None) in truth and truth[e.stream_id]["reset"]:
                continue  # frames the server sent before it saw the reset: not taken
            if isinstance(e, h2.events.ResponseReceived):
                truth[e.stream_id]["headers"] = list(e.headers)
            elif isinstance(e, h2.events.TrailersReceived):
                truth[e.stream_id]["trailers"] = list(e.headers)
            elif isinstance(e, h2.events.DataReceived):
                truth[e.stream_id]["body"] += e.data
                conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
            elif isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)):
                truth[e.stream_id]["ended"] = True
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()
    return truth


def _joined(fields: list[tuple[bytes, bytes]]) -> tuple[dict[str, str], dict[str, str]]:
    pseudo, out = {}, {}
    for name, value in fields:
        name, value = name.decode(), value.decode()
        if name.startswith(":"):
            pseudo[name] = value
        elif name in out:
            out[name] += ("; " if name == "cookie" else ", ") + value
        else:
            out[name] = value
    return pseudo, out


def test_prior_knowledge_many_and_concurrent_streams_on_one_connection(tmp_path, h2c_server):
    authority = f"127.0.0.1:{h2c_server.port}".encode()

    def request(method: bytes, path: bytes, *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
        return [(b":method", method), (b":scheme", b"http"), (b":authority", authority), (b":path", path),
                (b"user-agent", b"h2-client-test"), *extra]

    grpc_msg = b"\x00\x00\x00\x00\x07\x0a\x05world"
    requests = [
        (request(b"GET", b"/hello", (b"cookie", b"a=1"), (b"cookie", b"b=2")), b""),
        (request(b"POST", b"/echo", (b"content-type", b"application/octet-stream")), bytes(range(256)) * 40),
        (request(b"GET", b"/missing?q=1"), b""),
        (request(b"POST", b"/pkg.Greeter/SayHello", (b"content-type", b"application/grpc"), (b"te", b"trailers")),
         grpc_msg),
        *[(request(b"GET", f"/slow/{k}".encode()), b"") for k in range(4)],
    ]
    pcap = tmp_path / "h2c.pcap"
    capture = TcpdumpCapture(pcap, f"tcp port {h2c_server.port}").start()
    try:
        truth = h2_client(h2c_server.port, requests)
        time.sleep(CAPTURE_SETTLE_S)
    finally:
        counters = capture.stop()
    assert 0 == counters.get("dropped", 0), capture.stderr_text()
    chunks = tcp_chunks(pcap, h2c_server.port)
    assert 1 == len(chunks)
    (conn_chunks,) = chunks.values()
    conn = H2Connection()
    got = {t.stream_id: t for t in read_h2(conn_chunks, conn)}
    assert {} == conn.loose
    assert sorted(truth) == sorted(got)
    for sid, known in truth.items():
        t = got[sid]
        pseudo, fields = _joined(known["sent"])
        want_request = {"host": pseudo[":authority"], **fields, ":scheme": "http"}
        assert (pseudo[":method"], pseudo[":path"], want_request, len(known["sent_body"])) == \
            (t.request.method, t.request.uri, t.request.headers, t.request.body_len), sid
        pseudo, fields = _joined(known["headers"] + known["trailers"])
        assert (int(pseudo[":status"]), fields, len(known["body"]), "complete", set()) == \
            (t.response.status, t.response.headers, t.response.body_len, t.end_reason, t.anomalies), sid
    assert [404] == [t.response.status for t in got.values() if t.request.uri == "/missing?q=1"]
    assert [(7, "not allowed")] == [t.grpc for t in got.values() if t.grpc is not None]
    # The four slow requests were open at once: each sent before the first slow answer came.
    slow = [t for t in got.values() if t.request.uri.startswith("/slow/")]
    first_answer = min(t.response.start_ts for t in slow)
    assert all(t.request.end_ts < first_answer for t in slow)
    assert [1, 2, 3, 4, 5, 6, 7, 8] == sorted(t.depth for t in got.values())


def stream_fates(chunks, skip: dict[bool, int], upgraded: bool) -> dict[int, tuple[str, str | None]]:
    """How each stream ended on the wire, read with dpkt's own HTTP/2 frame
    parser (not sniffd's): ("complete", None) when both sides sent
    END_STREAM first, ("rst_stream", code name) when an RST_STREAM came
    before that, in capture order.  ``skip``: bytes before the frames (an
    HTTP/1 head) per direction; ``upgraded``: stream 1's request was the
    HTTP/1.1 one, so its client side is over from the start."""
    events = []  # (ts, from_client, frame)
    for from_client in (True, False):
        buf = b""
        offsets = []  # (end offset, ts) of each chunk
        left = skip[from_client]
        for ts, c, data in chunks:
            if c is not from_client:
                continue
            cut = min(left, len(data))
            left -= cut
            buf += data[cut:]
            offsets.append((len(buf), ts))
        frames, _ = dpkt.http2.frame_multi_factory(buf, preface=from_client)
        at = len(dpkt.http2.HTTP2_PREFACE) if from_client else 0
        for f in frames:
            at += len(f)
            events.append((next(ts for end, ts in offsets if end >= at), from_client, f))
    events.sort(key=lambda e: e[0])
    ended: dict[int, set] = {1: {True}} if upgraded else {}
    fates: dict[int, tuple[str, str | None]] = {}
    for _, from_client, f in events:
        sid = f.stream_id
        if not sid or sid in fates:
            continue
        if f.type == dpkt.http2.HTTP2_FRAME_RST_STREAM:
            fates[sid] = ("rst_stream", dpkt.http2.error_code_str[f.error_code])
        elif f.type in (dpkt.http2.HTTP2_FRAME_DATA, dpkt.http2.HTTP2_FRAME_HEADERS) \
                and f.flags & dpkt.http2.HTTP2_FLAG_END_STREAM:
            ended.setdefault(sid, set()).add(from_client)
            if len(ended[sid]) == 2:
                fates[sid] = ("complete", None)
    return fates


def _http1_head(data: bytes) -> tuple[bytes, bytes]:
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, "no complete HTTP/1.1 head before the switch"
    return head, rest


def test_upgrade_from_http1_to_h2c(tmp_path, h2c_server):
    """curl --http2 on http:// asks for Upgrade: h2c; the request's answer comes on stream 1."""
    base = f"http://127.0.0.1:{h2c_server.port}"
    args = ["--http2", "-D", str(tmp_path / "h"), "-o", str(tmp_path / "b"), base + "/hello",
            "--next", "--http2", "-D", str(tmp_path / "h2"), "-o", str(tmp_path / "b2"), base + "/nothing-here"]
    chunks, _ = captured(tmp_path, h2c_server, [args])
    assert 1 == len(chunks)
    (conn_chunks,) = chunks.values()
    client = b"".join(d for _, c, d in conn_chunks if c)
    server = b"".join(d for _, c, d in conn_chunks if not c)
    req_head, client_rest = _http1_head(client)
    resp_head, server_rest = _http1_head(server)
    # What the HTTP/1 reader would hand over, made here from the head's text.
    lines = req_head.decode().split("\r\n")
    method, uri, version = lines[0].split(" ")
    request = Message(conn_chunks[0][0], 0, None)
    request.method, request.uri, request.version = method, uri, version[5:]
    for ln in lines[1:]:
        name, _, value = ln.partition(":")
        request.headers[name.strip().lower()] = value.strip()
    request.header_count = len(lines) - 1
    request.complete = True
    assert "h2c" == request.headers["upgrade"] and "http2-settings" in request.headers
    status_line = resp_head.decode().split("\r\n")[0]
    switching = Message(conn_chunks[0][0], 0, None)
    switching.version, code, switching.reason = status_line[5:8], status_line[9:12], status_line[13:]
    switching.status = int(code)
    assert 101 == switching.status
    # Feed each direction from its first byte after the switch, in capture order.
    conn = H2Connection.after_upgrade(request, switching)
    skip = {True: len(req_head) + 4, False: len(resp_head) + 4}
    for ts, from_client, data in conn_chunks:
        cut = min(skip[from_client], len(data))
        skip[from_client] -= cut
        if data[cut:]:
            conn.feed(from_client, data[cut:], ts)
    conn.close(None, conn_chunks[-1][0] + 1.0)
    got = sorted(conn.take(), key=lambda t: t.stream_id)
    assert looks_like_h2_preface(client_rest) is True
    assert {} == conn.loose
    assert [1, 3] == [t.stream_id for t in got]
    first, second = got
    heads = dumped_headers(tmp_path / "h")
    assert "HTTP/1.1 101" == heads[0][0][:12]  # Hypercorn sends no reason phrase
    assert [(101, switching.reason)] == first.interim
    assert first.request is request
    # Stream 1 is the request sent in HTTP/1.1, so it has no END_STREAM from
    # the client: it counts as sent.  curl 7.88.1 resets stream 1
    # (STREAM_CLOSED) once it has the Content-Length's worth of body, which
    # may be before the server's END_STREAM: the end_reason says what the
    # wire did; the response is complete either way.
    fates = stream_fates(conn_chunks, skip={True: len(req_head) + 4, False: len(resp_head) + 4}, upgraded=True)
    want = {("complete", None): ("complete", None, True, set()),
            ("rst_stream", "STREAM_CLOSED"): ("rst_stream", "STREAM_CLOSED", True, set())}[fates[1]]
    assert (200, "2", heads[1][1], len((tmp_path / "b").read_bytes()), *want) == \
        (first.response.status, first.response.version, first.response.headers, first.response.body_len,
         first.end_reason, first.h2_error, first.response.complete, first.anomalies)
    assert ("complete", None) == fates[3]
    heads2 = dumped_headers(tmp_path / "h2")
    assert ("GET", "/nothing-here", {**seen_fields(h2c_server.seen[1]), ":scheme": "http"}) == \
        (second.request.method, second.request.uri, second.request.headers)
    assert (404, heads2[0][1], len((tmp_path / "b2").read_bytes()), "complete", set()) == \
        (second.response.status, second.response.headers, second.response.body_len, second.end_reason,
         second.anomalies)


# ------------------------------------------- the real sniffd read, end to end


def _view(request, response, depth, sid, fate=("complete", None), grpc=None, anomalies=()) -> dict:
    return {"request": request, "response": response, "trans_depth": depth, "stream_id": sid, "pushed_by": None,
            "h2_error": fate[1], "grpc": grpc, "end_reason": fate[0], "anomalies": sorted(anomalies)}


def _h2_request(method, uri, headers, body_len=0, version="2") -> dict:
    return {"method": method, "uri": uri, "version": version, "headers": headers, "body_len": body_len}


def _h2_response(status, headers, body_len, interim=()) -> dict:
    return {"status": status, "version": "2", "headers": headers, "body_len": body_len, "interim": list(interim)}


def h2c_traffic(workdir: Path, server: H2cServer) -> tuple[Path, dict]:
    """One capture of real h2c traffic and its answer key, from the ends.

    Three connections, one after the other: curl in prior knowledge (a
    20 KiB POST), curl upgrading with ``Upgrade: h2c`` (two requests: stream
    1, the HTTP/1.1 one, then stream 3), and the h2 client with nine streams
    open at once (cookies, a POST, a 404, a gRPC call whose status comes in
    the trailers, four slow answers, and one request it cancels at once with
    RST_STREAM).  The key maps each connection's client port to its name and
    the ``record_view`` of each stream's record, written from what the
    clients sent and got (curl's -D and -o files, the h2 client's events,
    the HTTP/1.1 head as the client wrote it), what the server app saw, and
    how each stream ended read from the frames with dpkt; never from sniffd
    (tests/h2truth.py compares records with it)."""
    base = f"http://127.0.0.1:{server.port}"
    upload = workdir / "upload.bin"
    upload.write_bytes(bytes(range(256)) * 80)
    prior_args = ["--http2-prior-knowledge", "-D", str(workdir / "h1"), "-o", str(workdir / "b1"),
                  "--data-binary", f"@{upload}", "-H", "content-type: application/octet-stream",
                  "-H", "cookie: a=1", "-H", "cookie: b=2", base + "/echo?v=1"]
    upgrade_args = ["--http2", "-D", str(workdir / "h2"), "-o", str(workdir / "b2"), base + "/hello",
                    "--next", "--http2", "-D", str(workdir / "h3"), "-o", str(workdir / "b3"), base + "/nothing-here"]
    authority = f"127.0.0.1:{server.port}".encode()

    def request(method: bytes, path: bytes, *extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
        return [(b":method", method), (b":scheme", b"http"), (b":authority", authority), (b":path", path),
                (b"user-agent", b"h2-client-test"), *extra]

    requests = [
        (request(b"GET", b"/hello", (b"cookie", b"a=1"), (b"cookie", b"b=2")), b""),
        (request(b"POST", b"/echo", (b"content-type", b"application/octet-stream")), bytes(range(256)) * 40),
        (request(b"GET", b"/missing?q=1"), b""),
        (request(b"POST", b"/pkg.Greeter/SayHello", (b"content-type", b"application/grpc"), (b"te", b"trailers")),
         b"\x00\x00\x00\x00\x07\x0a\x05world"),
        *[(request(b"GET", f"/slow/{k}".encode()), b"") for k in range(4)],
        (request(b"GET", b"/slow/cancelled"), b""),
    ]
    pcap = workdir / "h2c.pcap"
    capture = TcpdumpCapture(pcap, f"tcp port {server.port}").start()
    ports: list[int] = []
    try:
        results = [subprocess.run(["curl", "-sS", "--max-time", str(CURL_TIMEOUT_S), *args], capture_output=True,
                                  text=True, timeout=CURL_TIMEOUT_S + 5) for args in (prior_args, upgrade_args)]
        truth = h2_client(server.port, requests, reset=(len(requests) - 1,), ports=ports)
        time.sleep(CAPTURE_SETTLE_S)
    finally:
        counters = capture.stop()
    for r in results:
        assert 0 == r.returncode, f"curl failed: {r.args}: {r.stderr}"
    assert 0 == counters.get("dropped", 0), capture.stderr_text()
    conns = tcp_chunks(pcap, server.port)
    (h2_port,) = ports
    assert 3 == len(conns) and h2_port in conns, sorted(conns)
    prior_port, upgrade_port = [p for p in conns if p != h2_port]  # curl ran them in this order
    seen = server.seen
    assert ["/echo", "/hello", "/nothing-here"] == [s["path"] for s in seen[:3]]

    key: dict = {"server_port": server.port, "connections": {}}
    # curl, prior knowledge.
    chunks = conns[prior_port]
    ((_, fields),) = dumped_headers(workdir / "h1")
    fate = stream_fates(chunks, {True: 0, False: 0}, upgraded=False)[1]
    key["connections"][prior_port] = {"name": "curl_prior_knowledge", "streams": {1: _view(
        _h2_request("POST", "/echo?v=1", {**seen_fields(seen[0]), ":scheme": "http"}, len(upload.read_bytes())),
        _h2_response(200, fields, len((workdir / "b1").read_bytes())), 1, 1, fate)}}
    # curl, Upgrade: h2c.
    chunks = conns[upgrade_port]
    client = b"".join(d for _, c, d in chunks if c)
    server_bytes = b"".join(d for _, c, d in chunks if not c)
    req_head, _ = _http1_head(client)
    resp_head, _ = _http1_head(server_bytes)
    lines = req_head.decode().split("\r\n")
    method, uri, version = lines[0].split(" ")
    head_fields: dict[str, str] = {}
    for ln in lines[1:]:
        name, _, value = ln.partition(":")
        name, value = name.strip().lower(), value.strip()
        head_fields[name] = head_fields[name] + ", " + value if name in head_fields else value
    status_line = resp_head.decode().split("\r\n")[0]
    assert "HTTP/1.1 101" == status_line[:12] and "h2c" == head_fields["upgrade"]
    heads = dumped_headers(workdir / "h2")
    fates = stream_fates(chunks, {True: len(req_head) + 4, False: len(resp_head) + 4}, upgraded=True)
    key["connections"][upgrade_port] = {"name": "curl_upgrade", "streams": {
        1: _view(_h2_request(method, uri, head_fields, version=version[5:]),
                 _h2_response(200, heads[1][1], len((workdir / "b2").read_bytes()),
                              [{"status": 101, "reason": status_line[13:]}]), 1, 1, fates[1]),
        3: _view(_h2_request("GET", "/nothing-here", {**seen_fields(seen[2]), ":scheme": "http"}),
                 _h2_response(404, dumped_headers(workdir / "h3")[0][1], len((workdir / "b3").read_bytes())),
                 2, 3, fates[3]),
    }}
    # The h2 client.
    streams = {}
    for sid, known in truth.items():
        pseudo, sent = _joined(known["sent"])
        req = _h2_request(pseudo[":method"], pseudo[":path"], {"host": pseudo[":authority"], **sent, ":scheme": "http"},
                          len(known["sent_body"]))
        depth = (sid + 1) // 2  # client streams only, opened in order
        if known["reset"]:
            streams[sid] = _view(req, None, depth, sid, ("rst_stream", known["reset"]), anomalies=["response_missing"])
            continue
        pseudo, got = _joined(known["headers"] + known["trailers"])
        grpc = None
        if "grpc-status" in got:  # gRPC's status as the client got it; its message percent-decoded as gRPC says
            grpc = {"status": int(got["grpc-status"]),
                    "message": urllib.parse.unquote(got["grpc-message"]) if "grpc-message" in got else None}
        streams[sid] = _view(req, _h2_response(int(pseudo[":status"]), got, len(known["body"])), depth, sid, grpc=grpc)
    key["connections"][h2_port] = {"name": "h2_client_concurrent", "streams": streams}
    return pcap, key


def test_sniffd_read_logs_real_h2c_traffic_as_the_ends_saw_it(tmp_path, h2c_server, sniffd_exe):
    """The installed ``sniffd read`` on a fresh capture of curl (prior knowledge
    and Upgrade: h2c) and the h2 client (concurrent streams, gRPC trailers, a
    cancelled stream): one record per stream, each what the ends say."""
    pcap, key = h2c_traffic(tmp_path, h2c_server)
    out = tmp_path / "records.jsonl"
    config = tmp_path / "sniffd.toml"
    config.write_text(NO_REDACTION)
    proc = subprocess.run([str(sniffd_exe), "read", "-c", str(config), str(pcap), "-o", str(out), "--stats"],
                          capture_output=True, text=True, timeout=SNIFFD_TIMEOUT_S)
    assert 0 == proc.returncode, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    check_against_key(records, key)
    # The cancelled stream is the one RST_STREAM record; gRPC's status is read.
    assert [("rst_stream", "CANCEL")] == [(r["end_reason"], r["h2_error"]) for r in records
                                          if r["end_reason"] == "rst_stream" and r["request"]["uri"] == "/slow/cancelled"]
    assert [{"status": 7, "message": "not allowed"}] == [r["grpc"] for r in records if r["grpc"] is not None]
    stats = json.loads(proc.stderr.strip().splitlines()[-1])
    assert (0, {"response_missing": 1}) == (stats["memory_estimate_bytes"], stats["anomalies"])
