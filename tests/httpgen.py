"""Real HTTP/1.1 traffic over kernel TCP sockets, with the client's ground truth.

The live tests (and the benchmark) need traffic that a real kernel put on a real
interface, and an answer key for it that does not come from sniffd.  This module
gives both:

- ``HttpGenServer``: a small threaded HTTP/1.1 origin server on a plain socket.
  What it answers is driven by the request path, so the client decides what
  goes on the wire (see ``HttpGenServer`` for the routes).
- ``run_plans`` / ``run_scenario``: a client that writes requests itself (so it
  can pipeline several requests in one ``send``), reads the responses with its
  own small parser and returns one ground-truth dict per transaction, exactly as
  the client saw it.  sniffd is never imported here: an answer key computed by
  the code under test would prove nothing.

Command line (so the server and client can live in different processes or
network namespaces)::

    python -m tests.httpgen serve  --host 10.0.0.2 --port 8080
    python -m tests.httpgen client --host 10.0.0.2 --port 8080 --seed 7 --out truth.json

Everything is bounded: every socket operation has a timeout, counts and sizes
come from arguments, and bodies are at most ``MAX_BODY_LEN`` bytes.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import hashlib
import json
import random
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

# 2 MB: the largest body the live tests send.  A hard cap, so a typo in a path
# such as /size/99999999999 cannot make the server allocate without bound.
MAX_BODY_LEN = 2_000_000

# Longest request/status line or header line either side accepts; real servers
# use 8 KiB to 64 KiB.  Past it the peer is broken, not slow.
MAX_LINE_LEN = 65_536

# Per socket operation.  Loopback and veth answer in microseconds; 10 s only
# trips when a peer is stuck, and then the test fails instead of hanging.
DEFAULT_TIMEOUT_S = 10.0

# recv() size: large enough that a 2 MB body takes few system calls.
RECV_SIZE = 262_144

# Server-side: how many bytes of responses to pipelined requests are held back
# to be written together (so one segment carries the end of one response and
# the start of the next, which is what a passive parser must cope with).
PIPELINE_COALESCE_BYTES = 262_144

SERVER_NAME = "httpgen/1"

# The body alphabet is mostly letters and spaces so that gzip has something to
# compress (random bytes would make gzip bodies larger than the originals).
_BODY_TABLE = (b"etaoin shrdlu cmfwyp vbgkqjxz ETAOIN\n" * 7)[:256]

REASONS = {
    100: "Continue",
    200: "OK",
    201: "Created",
    204: "No Content",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
}


class GeneratorError(Exception):
    """The peer broke HTTP/1.1 or the scenario's expectations (a bug in httpgen, not sniffd)."""


# --------------------------------------------------------------------------
# Deterministic content
# --------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def make_body(seed: int, length: int) -> bytes:
    """Return ``length`` deterministic bytes for ``seed``.

    Both ends can compute it, so a scenario is reproducible byte for byte from
    its seed.  Cached because pipelines ask for the same entity (GET then HEAD).
    """
    if not 0 <= length <= MAX_BODY_LEN:
        raise ValueError(f"body length {length} outside 0..{MAX_BODY_LEN}")
    return random.Random(seed).randbytes(length).translate(_BODY_TABLE)


@functools.lru_cache(maxsize=16)
def make_gzip_body(seed: int, length: int) -> bytes:
    """Gzip of ``make_body(seed, length)`` with mtime 0, so it is deterministic too."""
    return gzip.compress(make_body(seed, length), compresslevel=6, mtime=0)


def make_etag(name: str) -> str:
    """Strong entity tag for /etag/NAME (RFC 9110 section 8.8.3)."""
    return '"' + hashlib.sha256(name.encode()).hexdigest()[:16] + '"'


def split_sizes(total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` positive, nearly equal chunk sizes (fewer if total is small)."""
    parts = max(1, min(parts, total)) if total else 0
    base, extra = divmod(total, parts) if parts else (0, 0)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def encode_chunked(body: bytes, sizes: list[int]) -> bytes:
    """Chunked transfer coding (RFC 9112 section 7.1) of ``body`` in chunks of ``sizes``."""
    out = bytearray()
    pos = 0
    for size in sizes:
        out += b"%x\r\n" % size + body[pos : pos + size] + b"\r\n"
        pos += size
    if pos != len(body):
        raise ValueError(f"chunk sizes add up to {pos}, body is {len(body)} bytes")
    out += b"0\r\n\r\n"
    return bytes(out)


# --------------------------------------------------------------------------
# Byte-level reader shared by both ends
# --------------------------------------------------------------------------


class SocketReader:
    """Buffered reads from a socket whose timeout is already set.

    Both the server and the client need "a line", "exactly n bytes" and "until
    EOF"; ``socket.makefile`` would hide how much is buffered, which the server
    needs to see whether pipelined requests are already waiting.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.eof = False

    def _fill(self) -> bool:
        """Receive more bytes; return False at EOF."""
        if self.eof:
            return False
        data = self.sock.recv(RECV_SIZE)
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def readline(self) -> bytes | None:
        """Return one CRLF-terminated line without its CRLF; None on EOF before any byte."""
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 2]
                return line
            if len(self.buffer) > MAX_LINE_LEN:
                raise GeneratorError(f"line longer than {MAX_LINE_LEN} bytes")
            if not self._fill():
                if self.buffer:
                    raise GeneratorError(f"EOF inside a line: {bytes(self.buffer[:80])!r}")
                return None

    def read_exact(self, n: int) -> bytes:
        """Return exactly ``n`` bytes or raise at EOF."""
        while len(self.buffer) < n:
            if not self._fill():
                raise GeneratorError(f"EOF after {len(self.buffer)} of {n} bytes")
        data = bytes(self.buffer[:n])
        del self.buffer[:n]
        return data

    def read_until_eof(self, limit: int = MAX_BODY_LEN * 2) -> bytes:
        """Return every byte until the peer closes (close-delimited body or teardown)."""
        while self._fill():
            if len(self.buffer) > limit:
                raise GeneratorError(f"more than {limit} bytes before EOF")
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    def read_head(self) -> tuple[bytes, list[tuple[str, str]]] | None:
        """Read a start line and header fields; None on a clean EOF before the start line."""
        start = self.readline()
        if start is None:
            return None
        headers: list[tuple[str, str]] = []
        while True:
            line = self.readline()
            if line is None:
                raise GeneratorError("EOF inside a header section")
            if not line:
                return start, headers
            name, sep, value = line.partition(b":")
            if not sep:
                raise GeneratorError(f"header line without colon: {line[:80]!r}")
            headers.append((name.decode("latin-1").strip().lower(), value.decode("latin-1").strip()))

    def read_chunked(self) -> bytes:
        """De-chunk a chunked body (RFC 9112 section 7.1), skipping extensions and trailers."""
        body = bytearray()
        while True:
            line = self.readline()
            if line is None:
                raise GeneratorError("EOF before a chunk size line")
            size = int(line.split(b";", 1)[0].strip(), 16)
            if size == 0:
                break
            body += self.read_exact(size)
            if self.read_exact(2) != b"\r\n":
                raise GeneratorError("chunk data not followed by CRLF")
            if len(body) > MAX_BODY_LEN * 2:
                raise GeneratorError("chunked body larger than the cap")
        while True:  # trailer section ends with an empty line
            line = self.readline()
            if line is None:
                raise GeneratorError("EOF inside the trailer section")
            if not line:
                return bytes(body)


def header_value(headers: list[tuple[str, str]], name: str) -> str | None:
    """Comma-join every field named ``name`` (RFC 9110 section 5.3); None if absent."""
    values = [v for n, v in headers if n == name]
    return ", ".join(values) if values else None


def is_chunked(headers: list[tuple[str, str]]) -> bool:
    """True when chunked is the final transfer coding (RFC 9112 section 6.3, rule 4)."""
    te = header_value(headers, "transfer-encoding")
    return te is not None and te.split(",")[-1].strip().lower() == "chunked"


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------


@dataclass
class _Response:
    status: int
    headers: list[tuple[str, str]]
    # Bytes after the header section, already in their transfer coding.
    wire_body: bytes = b""


class HttpGenServer:
    """Threaded HTTP/1.1 origin server whose behaviour is chosen by the request path.

    Routes (every size is in bytes, at most ``MAX_BODY_LEN``; ``?seed=S`` picks
    the deterministic content, default 0):

    ============================  ===============================================
    ``/size/N``                   200, Content-Length N
    ``/chunked/N[/K]``            200, Transfer-Encoding: chunked, K chunks (4)
    ``/gzip/N``                   200, Content-Encoding: gzip, Content-Length of
                                  the compressed entity
    ``/gzip-chunked/N[/K]``       gzip entity sent in K chunks
    ``/etag/NAME``                200 with an ETag; 304 when If-None-Match matches
    ``/no-content``               204
    ``/upload`` (POST/PUT)        201, body ``received N bytes\\n``
    anything else                 404 with a short body
    ============================  ===============================================

    HEAD gets the same header section as GET (so Content-Length or
    Transfer-Encoding of the GET entity) and no body (RFC 9110 section 9.3.2).
    Requests with ``Expect: 100-continue`` and a body get ``100 Continue``
    before the server reads the body.  Connections are persistent until the
    client closes or sends ``Connection: close``.  Pipelined requests are
    answered in order, and responses to requests that are already buffered are
    written together.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.host = host
        self.port = port
        self.timeout_s = timeout_s
        # Problems seen while serving, as text: tests assert this stays empty so a
        # server-side failure is reported as such and not as a sniffd mismatch.
        self.errors: list[str] = []
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    # -- lifecycle --

    def start(self) -> HttpGenServer:
        """Bind, listen and start accepting in a background thread; returns self."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        # Short accept timeout so stop() is noticed promptly.
        listener.settimeout(0.2)
        self._listener = listener
        self.port = listener.getsockname()[1]
        thread = threading.Thread(target=self._accept_loop, name=f"httpgen-accept-{self.port}", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop accepting and wait (bounded) for connection threads to finish."""
        self._stopping.set()
        deadline = time.monotonic() + self.timeout_s
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def __enter__(self) -> HttpGenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                conn, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError as exc:
                if not self._stopping.is_set():
                    self._record_error(f"accept: {exc!r}")
                return
            thread = threading.Thread(target=self._serve_connection, args=(conn, peer), daemon=True)
            with self._lock:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
            thread.start()

    def _record_error(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)

    # -- one connection --

    def _serve_connection(self, conn: socket.socket, peer: tuple) -> None:
        conn.settimeout(self.timeout_s)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = SocketReader(conn)
        pending = bytearray()  # responses held back while pipelined requests wait
        try:
            while True:
                head = reader.read_head()
                if head is None:  # client closed between requests: a normal end
                    break
                start, headers = head
                method, target, version = _parse_request_line(start)
                body_follows = is_chunked(headers) or int(header_value(headers, "content-length") or 0) > 0
                if (header_value(headers, "expect") or "").lower() == "100-continue" and body_follows:
                    # RFC 9110 section 10.1.1: the interim response must follow every
                    # earlier response, so flush what is held back first.
                    conn.sendall(bytes(pending) + b"HTTP/1.1 100 Continue\r\n\r\n")
                    pending.clear()
                if is_chunked(headers):
                    body = reader.read_chunked()
                else:
                    body = reader.read_exact(int(header_value(headers, "content-length") or 0))
                response = self._route(method, target, headers, body)
                close = (header_value(headers, "connection") or "").lower() == "close" or version == "HTTP/1.0"
                if close:
                    response.headers.append(("Connection", "close"))
                pending += _serialize_response(response, include_body=method != "HEAD")
                # Hold the response back only while another complete request head
                # is already buffered (the client pipelined it).
                if close or b"\r\n\r\n" not in reader.buffer or len(pending) >= PIPELINE_COALESCE_BYTES:
                    conn.sendall(pending)
                    pending.clear()
                if close:
                    break
            if pending:
                conn.sendall(pending)
            # Half-close, then wait for the client's FIN: closing with unread data
            # would make the kernel send RST instead of a clean teardown.
            conn.shutdown(socket.SHUT_WR)
            reader.read_until_eof()
        except (OSError, GeneratorError, ValueError) as exc:
            if not self._stopping.is_set():
                self._record_error(f"{peer}: {exc!r}")
        finally:
            conn.close()

    def _route(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> _Response:
        """Pick the response for one request; see the class docstring for the table."""
        url = urlsplit(target)
        parts = [p for p in url.path.split("/") if p]
        seed = int(parse_qs(url.query).get("seed", ["0"])[0])
        base = [("Server", SERVER_NAME)]
        try:
            kind = parts[0] if parts else ""
            if kind == "size" and len(parts) == 2:
                data = make_body(seed, int(parts[1]))
                return _Response(200, base + _plain(len(data)), data)
            if kind in ("chunked", "gzip-chunked") and len(parts) in (2, 3):
                length = int(parts[1])
                n_chunks = int(parts[2]) if len(parts) == 3 else 4
                if kind == "chunked":
                    data, extra = make_body(seed, length), []
                else:
                    data, extra = make_gzip_body(seed, length), [("Content-Encoding", "gzip")]
                hdrs = base + [("Content-Type", "text/plain")] + extra + [("Transfer-Encoding", "chunked")]
                return _Response(200, hdrs, encode_chunked(data, split_sizes(len(data), n_chunks)))
            if kind == "gzip" and len(parts) == 2:
                data = make_gzip_body(seed, int(parts[1]))
                hdrs = base + [("Content-Type", "text/plain"), ("Content-Encoding", "gzip"), ("Content-Length", str(len(data)))]
                return _Response(200, hdrs, data)
            if kind == "etag" and len(parts) == 2:
                etag = make_etag(parts[1])
                if etag in [t.strip() for t in (header_value(headers, "if-none-match") or "").split(",")]:
                    # RFC 9110 section 15.4.5: 304 has no content and repeats the ETag.
                    return _Response(304, base + [("ETag", etag)])
                data = make_body(seed, 64)
                return _Response(200, base + [("ETag", etag)] + _plain(len(data)), data)
            if kind == "no-content" and len(parts) == 1:
                return _Response(204, base)
            if kind == "upload" and method in ("POST", "PUT"):
                data = b"received %d bytes\n" % len(body)
                return _Response(201, base + _plain(len(data)), data)
        except ValueError as exc:
            data = f"bad request: {exc}\n".encode()
            return _Response(400, base + _plain(len(data)), data)
        data = b"not found\n"
        return _Response(404, base + _plain(len(data)), data)


def _plain(length: int) -> list[tuple[str, str]]:
    return [("Content-Type", "text/plain"), ("Content-Length", str(length))]


def _parse_request_line(line: bytes) -> tuple[str, str, str]:
    parts = line.decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise GeneratorError(f"bad request line: {line[:80]!r}")
    return parts[0], parts[1], parts[2]


def _serialize_response(response: _Response, *, include_body: bool) -> bytes:
    head = f"HTTP/1.1 {response.status} {REASONS[response.status]}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in response.headers)
    return head.encode("latin-1") + b"\r\n" + (response.wire_body if include_body else b"")


# --------------------------------------------------------------------------
# Client
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request as the client will write it.

    ``chunk_sizes`` sends ``body`` with chunked transfer coding in chunks of
    those sizes instead of Content-Length.  ``expect_continue`` adds
    ``Expect: 100-continue`` and holds the body back until ``100 Continue``.
    """

    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    chunk_sizes: tuple[int, ...] | None = None
    expect_continue: bool = False

    def encode_head(self, host: str) -> bytes:
        lines = [f"{self.method} {self.target} HTTP/1.1", f"Host: {host}", f"User-Agent: {SERVER_NAME}"]
        lines += [f"{name}: {value}" for name, value in self.headers]
        if self.chunk_sizes is not None:
            lines.append("Transfer-Encoding: chunked")
        elif self.body or self.method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(self.body)}")
        if self.expect_continue:
            lines.append("Expect: 100-continue")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def encode_body(self) -> bytes:
        if self.chunk_sizes is not None:
            return encode_chunked(self.body, list(self.chunk_sizes))
        return self.body


@dataclass
class ConnectionPlan:
    """What one client connection does.

    Each batch is written with one ``sendall`` (more than one request in a batch
    is HTTP pipelining, RFC 9112 section 9.3.2), then its responses are read in
    order.  A request with ``expect_continue`` must be alone in its batch.
    """

    label: str
    host_header: str
    batches: list[list[Request]] = field(default_factory=list)


def run_connection(plan: ConnectionPlan, host: str, port: int, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[dict]:
    """Run one plan on a fresh TCP connection; return its ground-truth transactions in order.

    Each dict: label, client_ip, client_port, server_ip, server_port,
    trans_depth, batch_size, method, uri, host, request_body_len, status,
    reason, interim (list of 1xx codes), response_body_len (after de-chunking,
    before gzip decoding), t_request_s and t_response_end_s (wall clock, the
    same clock that stamps captured packets).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    truth: list[dict] = []
    try:
        sock.connect((host, port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client_ip, client_port = sock.getsockname()[:2]
        server_ip, server_port = sock.getpeername()[:2]
        reader = SocketReader(sock)
        server_closes = False
        for batch in plan.batches:
            if server_closes:
                raise GeneratorError(f"{plan.label}: request planned after Connection: close")
            if any(r.expect_continue for r in batch) and len(batch) != 1:
                raise GeneratorError(f"{plan.label}: an Expect: 100-continue request must be alone in its batch")
            t_request = time.time()
            interim: list[int] = []
            if batch[0].expect_continue:
                req = batch[0]
                sock.sendall(req.encode_head(plan.host_header))
                status, _reason, _headers = _read_status_head(reader)
                if status != 100:
                    raise GeneratorError(f"{plan.label}: expected 100 Continue, got {status}")
                interim.append(status)
                sock.sendall(req.encode_body())
            else:
                sock.sendall(b"".join(r.encode_head(plan.host_header) + r.encode_body() for r in batch))
            for req in batch:
                status, reason, headers, more_interim, body_len = _read_response(reader, req.method)
                truth.append(
                    {
                        "label": plan.label,
                        "client_ip": client_ip,
                        "client_port": client_port,
                        "server_ip": server_ip,
                        "server_port": server_port,
                        "trans_depth": len(truth) + 1,
                        "batch_size": len(batch),
                        "method": req.method,
                        "uri": req.target,
                        "host": plan.host_header,
                        "request_body_len": len(req.body),
                        "status": status,
                        "reason": reason,
                        "interim": interim + more_interim,
                        "response_body_len": body_len,
                        "t_request_s": t_request,
                        "t_response_end_s": time.time(),
                    }
                )
                interim = []
                if (header_value(headers, "connection") or "").lower() == "close":
                    server_closes = True
        if not server_closes:
            # Half-close and wait for the server's FIN, so the whole teardown is
            # on the wire before the caller stops capturing.
            sock.shutdown(socket.SHUT_WR)
        leftover = reader.read_until_eof()
        if leftover:
            raise GeneratorError(f"{plan.label}: {len(leftover)} unexpected bytes after the last response")
    finally:
        sock.close()
    return truth


def _read_status_head(reader: SocketReader) -> tuple[int, str, list[tuple[str, str]]]:
    head = reader.read_head()
    if head is None:
        raise GeneratorError("server closed before a response")
    start, headers = head
    version, _, rest = start.decode("latin-1").partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise GeneratorError(f"bad status line: {start[:80]!r}")
    return int(code), reason, headers


def _read_response(reader: SocketReader, method: str) -> tuple[int, str, list[tuple[str, str]], list[int], int]:
    """Read one final response (after any 1xx) to a request of ``method``.

    Returns (status, reason, headers, interim codes, body length on the wire
    after de-chunking).  Body framing follows RFC 9112 section 6.3: the client
    knows which request this answers, so HEAD, 1xx, 204 and 304 have no body.
    """
    interim: list[int] = []
    while True:
        status, reason, headers = _read_status_head(reader)
        if 100 <= status < 200 and status != 101:
            interim.append(status)
            continue
        break
    if method == "HEAD" or status in (204, 304) or status < 200:
        body_len = 0
    elif is_chunked(headers):
        body_len = len(reader.read_chunked())
    elif header_value(headers, "content-length") is not None:
        body_len = len(reader.read_exact(int(header_value(headers, "content-length"))))
    else:
        body_len = len(reader.read_until_eof())
    return status, reason, headers, interim, body_len


# --------------------------------------------------------------------------
# Scenarios: plans for each behaviour, built from a seeded RNG
# --------------------------------------------------------------------------


def _between(rng: random.Random, low: int, high: int) -> int:
    """rng.randint that tolerates ``low > high`` (a small max_body_len), giving ``high``."""
    return rng.randint(min(low, high), high)


def _get(path: str, seed: int, *headers: tuple[str, str]) -> Request:
    return Request("GET", f"{path}?seed={seed}", headers=tuple(headers))


def _head(path: str, seed: int) -> Request:
    return Request("HEAD", f"{path}?seed={seed}")


def plan_keepalive(rng: random.Random, host: str, max_body_len: int) -> ConnectionPlan:
    """Several sequential requests of every kind on one persistent connection."""
    small = min(max_body_len, 20_000)
    s = rng.randrange(1 << 30)
    batches = [
        [_get(f"/size/{rng.randint(0, small)}", s)],
        [Request("POST", "/upload", body=make_body(s + 1, rng.randint(1, small)))],
        [_get(f"/chunked/{rng.randint(1, small)}/{rng.randint(2, 6)}", s + 2)],
        [_get(f"/gzip/{rng.randint(1, small)}", s + 3, ("Accept-Encoding", "gzip"))],
        [_get("/etag/keepalive", s + 4)],
        [Request("GET", "/missing?x=a%20b&y=%2F")],
        [_get(f"/size/{rng.randint(1, small)}", s + 5)],
    ]
    if rng.random() < 0.5:  # sometimes the server ends the connection, sometimes the client
        last = batches[-1][0]
        batches[-1] = [Request(last.method, last.target, headers=(("Connection", "close"),))]
    return ConnectionPlan("keepalive", host, batches)


def plan_pipeline(rng: random.Random, host: str, max_body_len: int) -> ConnectionPlan:
    """Pipelined batches with a HEAD in the middle (its response has headers only)."""
    small = min(max_body_len, 30_000)
    s = rng.randrange(1 << 30)
    n = rng.randint(1, small)
    batches = [
        [_get(f"/size/{rng.randint(1, small)}", s), _head(f"/size/{n}", s + 1), _get(f"/size/{n}", s + 1)],
        [_get(f"/chunked/{rng.randint(1, small)}/3", s + 2), _head(f"/chunked/{n}/3", s + 3), _get(f"/gzip/{n}", s + 4)],
        [_get("/no-content", s), _head(f"/gzip/{n}", s + 4), Request("POST", "/upload", body=make_body(s + 5, 1000))],
        [_get(f"/size/{rng.randint(0, 100)}", s + 6)],
    ]
    return ConnectionPlan("pipeline", host, batches)


def plan_chunked_gzip(rng: random.Random, host: str, max_body_len: int) -> ConnectionPlan:
    """Chunked responses, gzip responses, both at once, and chunked request bodies."""
    mid = min(max_body_len, 200_000)
    s = rng.randrange(1 << 30)
    upload = make_body(s + 9, _between(rng, 10, mid))
    batches = [
        [_get(f"/chunked/{_between(rng, 1000, mid)}/{rng.randint(3, 12)}", s)],
        [_get(f"/gzip/{_between(rng, 1000, mid)}", s + 1, ("Accept-Encoding", "gzip"))],
        [_get(f"/gzip-chunked/{_between(rng, 1000, mid)}/{rng.randint(3, 8)}", s + 2, ("Accept-Encoding", "gzip"))],
        [Request("POST", "/upload", body=upload, chunk_sizes=tuple(split_sizes(len(upload), rng.randint(2, 7))))],
        [_get(f"/chunked/{rng.randint(1, 50)}/1", s + 3)],
    ]
    return ConnectionPlan("chunked_gzip", host, batches)


def plan_large(rng: random.Random, host: str, max_body_len: int) -> ConnectionPlan:
    """Bodies up to ``max_body_len`` in both directions, with and without chunking."""
    s = rng.randrange(1 << 30)
    big = max_body_len
    upload = make_body(s + 7, big // 2)
    batches = [
        [_get(f"/size/{big}", s)],
        [_get(f"/chunked/{big - rng.randint(0, min(1000, big - 1))}/{rng.randint(5, 20)}", s + 1)],
        [_get(f"/gzip/{big}", s + 2, ("Accept-Encoding", "gzip"))],
        [Request("POST", "/upload", body=upload)],
        [Request("PUT", "/upload", body=upload, chunk_sizes=tuple(split_sizes(len(upload), 9)))],
    ]
    return ConnectionPlan("large", host, batches)


def plan_bodiless(rng: random.Random, host: str, max_body_len: int) -> ConnectionPlan:
    """Responses without a body: 304 Not Modified, 204 No Content and HEAD of every entity kind."""
    s = rng.randrange(1 << 30)
    n = rng.randint(1, min(max_body_len, 50_000))
    name = f"entity{s}"
    etag = make_etag(name)
    batches = [
        [_get(f"/etag/{name}", s)],
        [_get(f"/etag/{name}", s, ("If-None-Match", etag))],
        [_get(f"/etag/{name}", s, ("If-None-Match", f'"other", {etag}'))],
        [_get("/no-content", s)],
        [_head(f"/size/{n}", s)],
        [_head(f"/chunked/{n}/4", s)],
        [_head(f"/gzip/{n}", s)],
        [Request("DELETE", "/no-content")],
        [_get(f"/size/{n}", s)],
    ]
    return ConnectionPlan("bodiless", host, batches)


def plan_continue(rng: random.Random, host: str, max_body_len: int) -> ConnectionPlan:
    """``Expect: 100-continue`` uploads (Content-Length and chunked) between plain requests."""
    s = rng.randrange(1 << 30)
    mid = min(max_body_len, 100_000)
    body = make_body(s, rng.randint(1, mid))
    chunked = make_body(s + 1, _between(rng, 10, mid))
    batches = [
        [Request("POST", "/upload", body=body, expect_continue=True)],
        [_get(f"/size/{rng.randint(0, 500)}", s + 2)],
        [Request("PUT", "/upload", body=chunked, chunk_sizes=tuple(split_sizes(len(chunked), 4)), expect_continue=True)],
        [Request("POST", "/upload", body=b"x" * rng.randint(1, 100), expect_continue=True)],
    ]
    return ConnectionPlan("continue", host, batches)


# Behaviour name -> plan builder.  run_scenario cycles through them in this order.
PLANNERS = {
    "keepalive": plan_keepalive,
    "pipeline": plan_pipeline,
    "chunked_gzip": plan_chunked_gzip,
    "large": plan_large,
    "bodiless": plan_bodiless,
    "continue": plan_continue,
}


def build_plans(seed: int, *, n_connections: int, kinds: tuple[str, ...] | None = None, max_body_len: int = MAX_BODY_LEN) -> list[ConnectionPlan]:
    """Deterministic plans for ``n_connections`` connections, cycling through ``kinds``.

    With ``n_connections >= len(kinds)`` every behaviour appears at least once.
    Each connection gets its own Host header, ``cN.httpgen.test`` (no port, so
    the expected host field is unambiguous).
    """
    kinds = tuple(kinds or PLANNERS)
    unknown = [k for k in kinds if k not in PLANNERS]
    if unknown:
        raise ValueError(f"unknown scenario kinds {unknown}; known: {sorted(PLANNERS)}")
    if not 1 <= max_body_len <= MAX_BODY_LEN:
        raise ValueError(f"max_body_len must be in 1..{MAX_BODY_LEN}")
    rng = random.Random(seed)
    return [PLANNERS[kinds[i % len(kinds)]](rng, f"c{i}.httpgen.test", max_body_len) for i in range(n_connections)]


def run_plans(plans: list[ConnectionPlan], host: str, port: int, *, workers: int = 1, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[dict]:
    """Run plans (``workers`` connections at a time); return all ground truth, plan order kept.

    Each dict gets ``connection``: the plan's index.
    """
    def one(indexed: tuple[int, ConnectionPlan]) -> list[dict]:
        index, plan = indexed
        rows = run_connection(plan, host, port, timeout_s=timeout_s)
        return [dict(row, connection=index) for row in rows]

    if workers <= 1:
        results = [one(item) for item in enumerate(plans)]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(one, enumerate(plans)))
    return [row for rows in results for row in rows]


def run_scenario(
    seed: int,
    host: str = "127.0.0.1",
    *,
    port: int,
    n_connections: int = 12,
    kinds: tuple[str, ...] | None = None,
    max_body_len: int = MAX_BODY_LEN,
    workers: int = 1,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> list[dict]:
    """Drive a deterministic mix of behaviours against the server at ``host``:``port``.

    Returns the client's ground truth (see ``run_connection``), one dict per
    transaction, in connection then trans_depth order.  The same seed and
    arguments give the same requests and bodies; ports and times differ.
    """
    plans = build_plans(seed, n_connections=n_connections, kinds=kinds, max_body_len=max_body_len)
    return run_plans(plans, host, port, workers=workers, timeout_s=timeout_s)


def truth_fields(t: dict) -> dict:
    """The record fields one ground-truth transaction fixes, as sniffd must
    write them (a clean capture: no missed bytes, no anomaly).  Shared by the
    live tests and bench/verify.py, so both check the same thing."""
    return {
        "client": {"ip": t["client_ip"], "port": t["client_port"]},
        "server": {"ip": t["server_ip"], "port": t["server_port"]},
        "trans_depth": t["trans_depth"],
        "request": {
            "method": t["method"],
            "uri": t["uri"],
            "version": "1.1",
            "host": t["host"],
            "body_len": t["request_body_len"],
            "missed_bytes": 0,
        },
        "response": {
            "status": t["status"],
            "reason": t["reason"],
            "version": "1.1",
            "body_len": t["response_body_len"],
            "missed_bytes": 0,
            "interim": t["interim"],
        },
        "anomalies": [],
    }


def record_fields(r: dict) -> dict:
    """The same projection of a sniffd record (tolerant of missing keys, so
    a comparison shows them instead of raising)."""
    req, resp = r.get("request"), r.get("response")
    return {
        "client": r.get("client"),
        "server": r.get("server"),
        "trans_depth": r.get("trans_depth"),
        "request": None
        if req is None
        else {k: req.get(k) for k in ("method", "uri", "version", "host", "body_len", "missed_bytes")},
        "response": None
        if resp is None
        else {
            **{k: resp.get(k) for k in ("status", "reason", "version", "body_len", "missed_bytes")},
            "interim": [i.get("status") for i in resp.get("interim") or []],
        },
        "anomalies": r.get("anomalies"),
    }


def summarize(truth: list[dict]) -> dict:
    """Counts a caller can print or compare: transactions, connections, body bytes."""
    return {
        "transactions": len(truth),
        "connections": len({(t["client_ip"], t["client_port"]) for t in truth}),
        "request_body_bytes": sum(t["request_body_len"] for t in truth),
        "response_body_bytes": sum(t["response_body_len"] for t in truth),
    }


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def _serve(args: argparse.Namespace) -> int:
    server = HttpGenServer(args.host, args.port, timeout_s=args.timeout).start()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    # The actual port goes to stdout so a parent that asked for port 0 can read it.
    print(f"httpgen: listening on {args.host} port {server.port}", flush=True)
    while not stop.wait(0.5):  # a timed wait so the signal handler gets to run
        pass
    server.stop()
    for error in server.errors:
        print(f"httpgen: server error: {error}", file=sys.stderr)
    return 1 if server.errors else 0


def _client(args: argparse.Namespace) -> int:
    truth = run_scenario(
        args.seed,
        args.host,
        port=args.port,
        n_connections=args.connections,
        kinds=tuple(args.kinds.split(",")) if args.kinds else None,
        max_body_len=args.max_body_len,
        workers=args.workers,
        timeout_s=args.timeout,
    )
    with open(args.out, "w", encoding="utf-8") as out:
        json.dump(truth, out, indent=1)
        out.write("\n")
    print(json.dumps(summarize(truth)), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.httpgen", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP server until SIGINT/SIGTERM")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    serve.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per socket operation, seconds")
    serve.set_defaults(func=_serve)
    client = sub.add_parser("client", help="run a scenario and write the ground truth as JSON")
    client.add_argument("--host", default="127.0.0.1")
    client.add_argument("--port", type=int, required=True)
    client.add_argument("--seed", type=int, default=0)
    client.add_argument("--out", required=True, help="where to write the ground truth (a JSON list)")
    client.add_argument("--connections", type=int, default=12)
    client.add_argument("--kinds", default="", help=f"comma-separated subset of {','.join(PLANNERS)}")
    client.add_argument("--max-body-len", type=int, default=MAX_BODY_LEN)
    client.add_argument("--workers", type=int, default=1, help="connections run at the same time")
    client.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="per socket operation, seconds")
    client.set_defaults(func=_client)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
