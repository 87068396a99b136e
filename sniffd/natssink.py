"""Output stage (I/O): record lines published to NATS JetStream (``-o nats://HOST:PORT/SUBJECT``).

A ``sink.Sink`` like the JSON-lines file: the processing loop (or ``sniffd
read``) calls ``add``/``maybe_flush``/``close`` from one thread, and every
record line becomes one JetStream message, its payload the line's bytes
unchanged (no trailing newline).

Threads, and who owns what::

    owner thread     (the daemon's processing loop, or `sniffd read`) appends
                     lines to ``_pending`` and counts them (``_added``); it
                     never waits on the network, except `sniffd read`, which
                     waits for room in the buffer (``wait_for_room``) rather
                     than drop records of a file it can read at its own pace
    sniffd-nats      one thread running its own asyncio loop: nats-py's
                     connection, and the pump that takes lines off
                     ``_pending``, publishes them and counts acks (``_acked``)

The two share ``_pending`` (a deque: append and popleft are atomic) and
plain counters each written by one thread only; a stale read only makes the
other side wait one more turn.  Events (output_blocked, output_resumed) are
emitted from the owner thread, which sees the pump's state change at its
next ``add`` or ``maybe_flush``, so they are ordered with the daemon's other
events.

Guarantees, and how they are kept:

- At least once.  A record counts as written (``records_written``) only
  when JetStream acknowledged storing it (its PubAck, on our reply inbox).
  One that is not acknowledged within ``ack_timeout_s`` (a server stopped, a
  lost reply), or refused (no stream, an API error), goes back to the front
  of the queue and is published again when the server is there.
- Few duplicates.  Every message carries ``Nats-Msg-Id: <run id>-<sequence>``
  (a random id per sink, then the record's place in this run's output), so
  a re-sent record that the stream already stored is dropped by JetStream's
  duplicate window (2 minutes by default, the stream's ``duplicate_window``).
  Only a re-send after that window can be stored twice.  The sequence also
  gives a consumer the output's order back: acks are concurrent, so the
  stream's order is near, not exactly, the output's.
- Bounded memory.  Lines not yet acknowledged (waiting, or published and
  awaiting their ack) are held up to ``backlog_bytes``; a line that does not
  fit is dropped (the newest, as the file sink does) and counted in
  ``records_lost``.
- Resumes by itself.  nats-py reconnects without limit (every
  ``reconnect_wait_s``); publishing stops while disconnected and starts again
  once connected, oldest held line first.
- Losses are never silent.  ``close`` waits up to ``close_timeout_s`` for
  the outstanding acks; what is still unacknowledged then is counted in
  ``records_lost`` and reported (``output_lost_at_exit``).
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

SCHEMES = ("nats",)

# NATS's registered port (the server's default).
DEFAULT_PORT = 4222

# How often the pump looks for acks overdue (ack_timeout_s) and for new lines
# when it was not woken: a tenth of a second costs nothing and bounds the
# extra delay of a retry.
SWEEP_INTERVAL_S = 0.1

# nats-py's own outbound buffer (bytes of commands not yet on the socket).
# The pump stops publishing while disconnected, so this only needs to hold
# what is in flight: max_pending_acks messages of a few KiB.
CLIENT_PENDING_BYTES = 32 * 1024 * 1024


class NatsUrlError(ValueError):
    """A malformed ``nats://`` URL; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class NatsTarget:
    """Where records go: a server and a subject, with optional credentials."""

    host: str
    port: int
    subject: str
    user: str | None = None
    password: str | None = None
    token: str | None = None

    @property
    def server(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"nats://{host}:{self.port}"

    @property
    def shown(self) -> str:
        """The URL without its credentials: what events and messages show."""
        return f"{self.server}/{self.subject}"


def is_nats_url(value: str) -> bool:
    """Whether ``-o`` / ``[output] path`` names a URL rather than a file: any
    ``SCHEME://`` is taken as one (parse_url then refuses all but nats://)."""
    return "://" in value


def shown_url(url: str) -> str:
    """``url`` without what is before an ``@`` (credentials) in its authority."""
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    return f"{scheme}{sep}{authority.rpartition('@')[2]}{slash}{path}"


def parse_url(url: str) -> NatsTarget:
    """``nats://[USER:PASS@|TOKEN@]HOST[:PORT]/SUBJECT``; NatsUrlError says what is wrong."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise NatsUrlError(f"not a nats:// URL ({e})") from None
    if parts.scheme.lower() not in SCHEMES:
        raise NatsUrlError(f"the scheme must be nats://, got {parts.scheme}://")
    if not parts.hostname:
        raise NatsUrlError("no host (nats://HOST:PORT/SUBJECT)")
    if port == 0:
        raise NatsUrlError("port 0 is not a server's port")
    if parts.query or parts.fragment:
        raise NatsUrlError("no ?query or #fragment: the subject is the path (nats://HOST:PORT/SUBJECT)")
    subject = parts.path[1:] if parts.path.startswith("/") else parts.path
    problem = subject_problem(subject)
    if problem:
        raise NatsUrlError(problem)
    user = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password is not None else None
    token = None
    if user is not None and password is None:
        user, token = None, user  # nats://TOKEN@host, as the nats CLI reads it
    return NatsTarget(parts.hostname, port or DEFAULT_PORT, subject, user, password, token)


def subject_problem(subject: str) -> str | None:
    """Why ``subject`` cannot be published to, or None.  A subject is tokens
    separated by dots, none empty, no white space or control characters;
    ``*`` and ``>`` are wildcards, for subscribing only (NATS subject naming)."""
    if not subject:
        return "no subject (nats://HOST:PORT/SUBJECT)"
    if any(c.isspace() or ord(c) < 0x20 or c == "\x7f" for c in subject):
        return f"the subject must not hold white space or control characters, got {subject!r}"
    tokens = subject.split(".")
    if any(not t for t in tokens):
        return f"the subject's dot-separated tokens must not be empty, got {subject!r}"
    if any(t in ("*", ">") or "*" in t or ">" in t for t in tokens):
        return f"the subject must not hold wildcards (* or >): records are published to one subject, got {subject!r}"
    if "/" in subject:
        return f"the subject must not hold '/', got {subject!r}"
    return None


class NatsStartError(Exception):
    """The output cannot start: unreachable (``sniffd read``), no stream for the
    subject, a refused stream creation.  The message says which and why."""


EventHook = Callable[..., None]


def _no_events(event: str, **fields: object) -> None:
    pass


class NatsSink:
    """Record lines to a JetStream subject (sink.Sink); see the module docstring.

    ``require_connection``: ``open`` fails (NatsStartError) if the server is
    not reachable within ``connect_timeout_s`` (``sniffd read``); otherwise
    it starts blocked and connects when the server comes (the daemon).
    ``wait_for_room``: ``add`` waits for acks when the buffer is full, and
    drops (counted) only once no ack came for ``close_timeout_s``
    (``sniffd read``); otherwise the newest line is dropped at once.
    """

    def __init__(
        self,
        target: NatsTarget,
        *,
        backlog_bytes: int,
        max_pending_acks: int = 1024,
        ack_timeout_s: float = 5.0,
        connect_timeout_s: float = 5.0,
        reconnect_wait_s: float = 1.0,
        close_timeout_s: float = 5.0,
        stream: str = "",
        create_stream: bool = False,
        require_connection: bool = False,
        wait_for_room: bool = False,
        on_event: EventHook = _no_events,
    ) -> None:
        self.target = target
        self.path = target.shown  # what events name, as the file sink's path
        self.backlog_bytes = backlog_bytes
        self.max_pending_acks = max_pending_acks
        self.ack_timeout_s = ack_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.reconnect_wait_s = reconnect_wait_s
        self.close_timeout_s = close_timeout_s
        self.stream = stream
        self.create_stream = create_stream
        self.require_connection = require_connection
        self.wait_for_room = wait_for_room
        self._on_event = on_event
        self._owner_pid = os.getpid()
        # A random id per sink: message ids of two runs (or two daemons on one
        # subject) never collide in the duplicate window.
        self._run_id = os.urandom(6).hex()
        # Shared (see the module docstring).
        self._pending: collections.deque[tuple[int, bytes]] = collections.deque()
        # Written by the owner thread only.
        self._seq = 0
        self._added = 0
        self._added_bytes = 0
        self.records_lost = 0
        self._lost_while_blocked = 0
        self._blocked_since: float | None = None
        self._blocked_reason = ""
        self._closed = False
        self._abandoned = 0  # taken, never acknowledged, given up at close
        # Read by the client thread: open() timed out, the daemon goes on
        # without a connection (a missing stream is then a fault, not an error).
        self._background = False
        # Written by the pump only.
        self._acked = 0
        self._acked_bytes = 0
        self.duplicates = 0  # acks saying the stream had the message already
        self.publish_errors = 0  # publishes timed out or refused (then sent again)
        self.reconnects = 0
        self._fault: str | None = "connecting"  # why the output cannot publish now; None when it can
        self._last_ack = time.monotonic()
        self._connected = False
        self._stream_ok = False
        self._stop = False
        # The loop and its thread.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._wake_event: asyncio.Event | None = None
        self._wake_scheduled = False
        self._room = threading.Event()
        self._nc: Any = None
        self._js: Any = None
        self._last_error = ""
        self._auth_error = ""  # a refusal of our credentials, kept over later errors
        self._stream_problem: str | None = None

    # --- state ---

    @property
    def state(self) -> str:
        return "ok" if self._blocked_since is None else "blocked"

    @property
    def records_held(self) -> int:
        """Records taken and not yet acknowledged (waiting, or awaiting their ack)."""
        return self._added - self._acked - self._abandoned

    @property
    def records_written(self) -> int:
        return self._acked

    def stats(self) -> dict[str, Any]:
        """The counters of the daemon's stats events (sink.OUTPUT_STATS)."""
        return {
            "records_written": self._acked,  # acknowledged by JetStream (stored)
            "records_lost": self.records_lost,  # buffer full, or unacknowledged at exit
            "records_held": self.records_held,  # taken, not yet acknowledged
            "rotations": 0,
            "reopens": self.reconnects,  # reconnections to the server
            "write_errors": self.publish_errors,  # publishes timed out or refused (sent again)
            "output_state": self.state,
        }

    # --- lifecycle ---

    def open(self) -> NatsSink:
        """Start the client thread and connect; NatsStartError if the output cannot start.

        Reachable server: the subject must be taken by a stream (or one is
        created, ``create_stream``).  Unreachable within connect_timeout_s:
        NatsStartError with ``require_connection``, else the output starts
        blocked and connects when it can."""
        ready = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, args=(ready,), name="sniffd-nats", daemon=True)
        self._thread.start()
        ready.wait()
        assert self._loop is not None
        fut = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        try:
            fut.result(self.connect_timeout_s)
        except TimeoutError:
            if self.require_connection:
                fut.cancel()
                self._shut_down_loop()
                why = self._last_error or "no answer"
                raise NatsStartError(f"{self.path}: cannot connect within {self.connect_timeout_s:g} s: {why}") from None
            # The daemon starts blocked and buffers; _start goes on connecting
            # (nats-py retries without end) and then checks the stream.
            self._background = True
        except NatsStartError:
            self._shut_down_loop()
            raise
        self._check_state()
        return self

    def request_reopen(self) -> None:
        """SIGHUP: nothing to reopen (a connection is re-made by itself)."""

    def close(self) -> None:
        """Wait up to close_timeout_s for every held record's ack, then disconnect;
        what is still unacknowledged is counted lost and reported."""
        if self._closed:
            return
        self._closed = True
        if os.getpid() != self._owner_pid:
            # A forked worker (sniffd.workers) inherited the parent's sink:
            # the client thread is not in this process; the parent owns it.
            return
        self._wake()
        deadline = time.monotonic() + self.close_timeout_s
        while self.records_held > 0 and time.monotonic() < deadline:
            self._room.wait(0.02)
            self._room.clear()
            self._check_state()
        self._shut_down_loop()
        left = self.records_held
        if left > 0:
            # What was taken and never acknowledged is gone with the process.
            self._abandoned += left
            self.records_lost += left
            self._lost_while_blocked += left
            self._on_event("output_lost_at_exit", path=self.path, records_lost=left,
                           reason=self._fault or f"no ack within {self.close_timeout_s:g} s")
        self._check_state()

    # --- the owner's side ---

    def add(self, lines: Iterable[str]) -> None:
        """Take whole record lines (no trailing newline): queued, never sent from here."""
        pending = self._pending
        limit = self.backlog_bytes
        added = 0
        for line in lines:
            data = line.encode("utf-8")
            n = len(data)
            if self._added_bytes - self._acked_bytes + n > limit and not self._make_room(n):
                self.records_lost += 1
                self._lost_while_blocked += 1
                continue
            self._seq += 1
            pending.append((self._seq, data))
            self._added += 1
            self._added_bytes += n
            added += 1
        if added:
            self._wake()
        if self._blocked_since is not None or self._fault is not None:
            self._check_state()

    def maybe_flush(self, now: float | None = None) -> None:
        """Nothing is written from here; act on the pump's state changes (events)."""
        self._check_state()

    def _make_room(self, n: int) -> bool:
        """Whether ``n`` more bytes may be held now: only `sniffd read` waits (for
        acks) until they fit, and gives up once no ack came for close_timeout_s."""
        if not self.wait_for_room:
            self._check_state()
            return False
        self._wake()
        while self._added_bytes - self._acked_bytes + n > self.backlog_bytes:
            if self._added == self._acked:
                return True  # nothing held: one line bigger than the buffer still goes
            if time.monotonic() - self._last_ack > self.close_timeout_s:
                self._check_state()
                return False
            self._room.wait(0.05)
            self._room.clear()
            self._check_state()
        return True

    def _wake(self) -> None:
        """Tell the pump there are lines (once until it has looked)."""
        if not self._wake_scheduled and self._loop is not None:
            self._wake_scheduled = True
            try:
                self._loop.call_soon_threadsafe(self._on_wake)
            except RuntimeError:
                pass  # the loop is closed (after close())

    def _check_state(self) -> None:
        """Turn the pump's fault state into output_blocked / output_resumed."""
        fault = self._fault
        if fault is not None and self._blocked_since is None:
            self._blocked_since = time.monotonic()
            self._blocked_reason = fault
            self._lost_while_blocked = 0
            self._on_event("output_blocked", path=self.path, error=fault, records_held=self.records_held,
                           backlog_bytes=self.backlog_bytes)
        elif fault is None and self._blocked_since is not None:
            blocked_s = round(time.monotonic() - self._blocked_since, 3)
            self._blocked_since = None
            self._on_event("output_resumed", path=self.path, blocked_s=blocked_s, reason=self._blocked_reason,
                           records_lost=self._lost_while_blocked)
            self._blocked_reason = ""

    # --- the client thread ---

    def _thread_main(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        self._wake_event = asyncio.Event()
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    def _shut_down_loop(self) -> None:
        loop = self._loop
        if loop is None or self._thread is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        try:
            fut.result(self.connect_timeout_s + 2)
        except Exception:
            pass
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(5)
        self._thread = None

    def _on_wake(self) -> None:
        self._wake_scheduled = False
        assert self._wake_event is not None
        self._wake_event.set()

    async def _start(self) -> None:
        """Connect (nats-py retries without end), then check the stream and start the pump."""
        import nats

        if self._nc is None:
            self._nc = nats.NATS()
        nc = self._nc
        t = self.target
        if not nc.is_connected:
            try:
                await nc.connect(
                    servers=[t.server],
                    user=t.user,
                    password=t.password,
                    token=t.token,
                    name="sniffd",
                    # Keep trying, forever: a daemon's output comes back by itself.
                    allow_reconnect=True,
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=self.reconnect_wait_s,
                    connect_timeout=max(1, int(self.connect_timeout_s)),
                    pending_size=CLIENT_PENDING_BYTES,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    closed_cb=self._on_closed,
                )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                # Only when nats-py gives up (it retries without end): an
                # error it does not retry (a bad option).
                self._last_error = _describe(e)
                self._fault = f"cannot connect: {self._last_error}"
                raise NatsStartError(f"{self.path}: cannot connect: {self._last_error}") from None
        self._connected = True
        self._js = nc.jetstream()
        await self._check_stream()
        self._fault = None
        asyncio.get_running_loop().create_task(self._pump())

    async def _check_stream(self) -> None:
        """The subject must be taken by a stream; create one only when asked.
        Missing at start: NatsStartError; found missing later: a fault, checked again."""
        import nats.js.errors

        js = self._js
        while True:
            try:
                name = await js.find_stream_name_by_subject(self.target.subject)
            except nats.js.errors.NotFoundError:
                name = None
            except Exception as e:
                self._last_error = self._fault = f"cannot ask for the stream: {_describe(e)}"
                await asyncio.sleep(self.reconnect_wait_s)
                continue
            problem = None
            if name is None and self.create_stream:
                name = self.stream or "SNIFFD"
                try:
                    await js.add_stream(name=name, subjects=[self.target.subject])
                except Exception as e:
                    problem = f"cannot create stream {name!r} for subject {self.target.subject!r}: {_describe(e)}"
                    name = None
            elif name is None:
                problem = (f"no JetStream stream takes subject {self.target.subject!r} (create one, e.g. "
                           f"`nats stream add --subjects {self.target.subject} SNIFFD`, or set [nats] create_stream = true)")
            elif self.stream and name != self.stream:
                problem = f"subject {self.target.subject!r} is taken by stream {name!r}, not {self.stream!r} ([nats] stream)"
            if problem is None:
                self._stream_ok = True
                self._stream_problem = None
                return
            self._stream_problem = problem
            self._fault = problem
            if not self._background:
                raise NatsStartError(f"{self.path}: {problem}")
            await asyncio.sleep(self.reconnect_wait_s)

    async def _pump(self) -> None:
        """Publish held lines, at most max_pending_acks awaiting their ack at once.

        The acks come to one inbox subscription of ours (``<inbox>.<n>``, one
        n per publish), read here: nats-py's publish_async leaves its future
        pending forever when JetStream answers with some errors (a 503
        "maximum messages exceeded" raises inside its reply handler, 2.16),
        and a record must not wait for a timeout to be known refused."""
        import json

        nc = self._nc
        subject = self.target.subject
        prefix = self._run_id + "-"
        pending = self._pending
        # reply token -> ((sequence, line), time sent); in the order sent.
        inflight: dict[str, tuple[tuple[int, bytes], float]] = {}
        wake = self._wake_event
        assert wake is not None
        loop = asyncio.get_running_loop()
        inbox = nc.new_inbox() + "."
        cut = len(inbox)
        next_sweep = loop.time() + SWEEP_INTERVAL_S
        retry_after = 0.0
        token = 0

        def failed(item: tuple[int, bytes], why: str) -> None:
            # Sent again, first: at least once.
            nonlocal retry_after
            self.publish_errors += 1
            pending.appendleft(item)
            if self._connected:
                self._fault = f"publish not acknowledged: {why}"
            retry_after = loop.time() + min(self.reconnect_wait_s, self.ack_timeout_s)
            wake.set()

        async def on_reply(msg: Any) -> None:
            entry = inflight.pop(msg.subject[cut:], None)
            if entry is None:
                return  # after its timeout: the record was sent again
            item = entry[0]
            headers = msg.headers
            if headers and headers.get("Status") == "503" and not msg.data:
                failed(item, "no responders (no stream takes the subject now)")
                return
            try:
                ack = json.loads(msg.data)
            except ValueError:
                failed(item, f"unreadable ack {msg.data[:100]!r}")
                return
            error = ack.get("error") if isinstance(ack, dict) else None
            if error is not None or not isinstance(ack, dict) or "seq" not in ack:
                if isinstance(error, dict):
                    why = f"JetStream error {error.get('code')} ({error.get('err_code')}): {error.get('description')}"
                else:
                    why = f"unexpected ack {msg.data[:100]!r}"
                failed(item, why)
                return
            self._acked += 1
            self._acked_bytes += len(item[1])
            self._last_ack = time.monotonic()
            if ack.get("duplicate"):
                self.duplicates += 1
            if self._connected and self._fault is not None and self._stream_ok:
                self._fault = None
            self._room.set()
            wake.set()

        await nc.subscribe(inbox + "*", cb=on_reply)
        limit = self.max_pending_acks
        while not self._stop:
            now = loop.time()
            if now >= next_sweep:
                # Acks overdue: the record is sent again (same message id).
                oldest = now - self.ack_timeout_s
                overdue = []
                for key, (_, sent) in inflight.items():
                    if sent > oldest:
                        break
                    overdue.append(key)
                for key in overdue:
                    failed(inflight.pop(key)[0], f"no ack within {self.ack_timeout_s:g} s")
                next_sweep = now + SWEEP_INTERVAL_S
            ready = self._connected and self._stream_ok
            if ready and not pending and not inflight and self._fault is not None:
                self._fault = None  # back, and nothing to send: not blocked
            if not ready or not pending or now < retry_after or len(inflight) >= limit:
                wake.clear()
                try:
                    await asyncio.wait_for(wake.wait(), SWEEP_INTERVAL_S)
                except asyncio.TimeoutError:
                    pass
                continue
            item = pending.popleft()
            token += 1
            reply = str(token)
            try:
                await nc.publish(subject, item[1], reply=inbox + reply, headers={"Nats-Msg-Id": prefix + str(item[0])})
            except Exception as e:
                # The connection went away (or its buffer is full): put it
                # back, try again shortly.
                pending.appendleft(item)
                self.publish_errors += 1
                self._fault = f"cannot publish: {_describe(e)}"
                retry_after = loop.time() + SWEEP_INTERVAL_S
                continue
            inflight[reply] = (item, now)
            if nc.is_closed:
                break

    async def _shutdown(self) -> None:
        self._stop = True
        nc = self._nc
        if nc is not None and not nc.is_closed:
            try:
                await asyncio.wait_for(nc.close(), 2)
            except Exception:
                pass
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks, timeout=2) if tasks else None

    # nats-py's callbacks (on the loop).

    async def _on_error(self, e: Exception) -> None:
        text = _describe(e)
        if "Authorization" in text or "Authentication" in text:
            # The server's refusal says more than the reset that follows it.
            self._auth_error = text
        self._last_error = self._auth_error or text
        if not self._connected and not (self._fault or "").startswith("disconnected"):
            # Not yet connected (a daemon started without its server); a lost
            # connection keeps "disconnected" as its reason.
            self._fault = f"cannot connect: {self._last_error}"

    async def _on_disconnected(self) -> None:
        if self._stop:
            return
        self._connected = False
        self._fault = f"disconnected from {self.target.server}"

    async def _on_reconnected(self) -> None:
        self.reconnects += 1
        self._connected = True
        # Held records go again at once; the fault clears with the first ack.
        assert self._wake_event is not None
        self._wake_event.set()

    async def _on_closed(self) -> None:
        self._connected = False


def _describe(e: BaseException) -> str:
    text = str(e).strip()
    name = type(e).__name__
    return f"{name}: {text}" if text and text != name else name


def open_nats_sink(out: dict[str, Any], nats_cfg: dict[str, Any], on_event: EventHook = _no_events,
                   require_connection: bool = False, wait_for_room: bool = False,
                   backlog_bytes: int | None = None) -> NatsSink:
    """The NATS output of ``[output] path`` and ``[nats]``; NatsStartError if it cannot start."""
    sink = NatsSink(
        parse_url(out["path"]),
        backlog_bytes=backlog_bytes if backlog_bytes is not None else int(out["backlog_mb"] * 1024 * 1024),
        max_pending_acks=nats_cfg["max_pending_acks"],
        ack_timeout_s=nats_cfg["ack_timeout_s"],
        connect_timeout_s=nats_cfg["connect_timeout_s"],
        reconnect_wait_s=nats_cfg["reconnect_wait_s"],
        close_timeout_s=nats_cfg["close_timeout_s"],
        stream=nats_cfg["stream"],
        create_stream=nats_cfg["create_stream"],
        require_connection=require_connection,
        wait_for_room=wait_for_room,
        on_event=on_event,
    )
    return sink.open()
