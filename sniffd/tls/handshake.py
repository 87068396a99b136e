"""Handshake messages reassembled across TLS records, for one direction (pure).

One job: cut the concatenated bodies of a direction's handshake records into
handshake messages, RFC 8446 section 4 / RFC 5246 section 7.4::

    struct {
        HandshakeType msg_type;    /* 1 byte */
        uint24 length;
        ...body...
    } Handshake;

A message may span records and a record may hold several messages (RFC 5246
section 6.2.1; RFC 8446 section 5.1 keeps that for handshake records), and a
record may be cut anywhere by TCP.  Only the bodies of the message types the
caller asks for are kept (``keep``: type -> most bytes kept); every other
message is skipped by counting, so an unparsed message costs no memory.  A
kept message longer than its bound keeps only its first bytes and says so.

Call order: ``feed(chunk)`` with each piece of handshake record body, in
order; it returns a list of events:

- ``(START, msg_type, length)`` when a message's 4-byte header is complete;
- ``(END, msg_type, length, body)`` when the message's last byte arrived;
  ``body`` is the kept bytes (all of it when ``length`` is within the bound,
  else the first ``keep[msg_type]`` bytes), or None for a skipped type.
"""

from __future__ import annotations

START = 0
END = 1

# RFC 8446 section 4 / RFC 5246 section 7.4 handshake types this package names.
HELLO_REQUEST = 0
CLIENT_HELLO = 1
SERVER_HELLO = 2
NEW_SESSION_TICKET = 4
CERTIFICATE = 11
SERVER_KEY_EXCHANGE = 12
SERVER_HELLO_DONE = 14
FINISHED = 20

HEADER_BYTES = 4


class HandshakeReader:
    """Handshake message framing of one direction; see the module docstring."""

    __slots__ = ("keep", "_hdr", "_type", "_length", "_remaining", "_body", "_bound", "messages")

    def __init__(self, keep: dict[int, int]) -> None:
        self.keep = keep  # msg_type -> most body bytes kept; the caller may change it between feeds
        self._hdr = bytearray()
        self._type = -1
        self._length = 0
        self._remaining = 0
        self._body: bytearray | None = None
        self._bound = 0
        self.messages = 0  # message headers read

    @property
    def mem(self) -> int:
        """Bytes held: a partial header and the kept part of the message in progress."""
        return len(self._hdr) + (len(self._body) if self._body is not None else 0)

    @property
    def in_message(self) -> bool:
        """True when a message (or its header) has begun and not ended."""
        return self._remaining > 0 or len(self._hdr) > 0

    def release(self) -> None:
        """Forget any partial message (the direction stopped being parsed)."""
        self._hdr = bytearray()
        self._body = None
        self._remaining = 0

    def feed(self, chunk: bytes | memoryview) -> list[tuple]:
        events: list[tuple] = []
        n = len(chunk)
        pos = 0
        while pos < n:
            if self._remaining:
                take = min(self._remaining, n - pos)
                body = self._body
                if body is not None and len(body) < self._bound:
                    body += chunk[pos : pos + min(take, self._bound - len(body))]
                self._remaining -= take
                pos += take
                if not self._remaining:
                    events.append(self._end())
                continue
            hdr = self._hdr
            take = min(HEADER_BYTES - len(hdr), n - pos)
            hdr += chunk[pos : pos + take]
            pos += take
            if len(hdr) < HEADER_BYTES:
                break
            self._type = hdr[0]
            self._length = self._remaining = (hdr[1] << 16) | (hdr[2] << 8) | hdr[3]
            hdr.clear()
            self.messages += 1
            bound = self.keep.get(self._type)
            if bound is None:
                self._body = None
            else:
                self._bound = bound
                self._body = bytearray()
            events.append((START, self._type, self._length))
            if not self._remaining:
                events.append(self._end())
        return events

    def _end(self) -> tuple:
        body = self._body
        self._body = None
        return (END, self._type, self._length, bytes(body) if body is not None else None)
