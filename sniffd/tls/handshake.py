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

- ``(START, msg_type, length, None)`` when a message's 4-byte header is complete;
- ``(END, msg_type, length, body)`` when the message's last byte arrived;
  ``body`` is the kept bytes (all of it when ``length`` is within the bound,
  else the first ``keep[msg_type]`` bytes), or None for a skipped type.
"""

from __future__ import annotations

import struct

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

# A message header: msg_type in the top byte, the 24-bit length below it.
_header = struct.Struct(">I").unpack_from


class HandshakeReader:
    """Handshake message framing of one direction; see the module docstring."""

    __slots__ = ("keep", "_hdr", "_type", "_length", "_remaining", "_body", "_bound", "messages")

    def __init__(self, keep: dict[int, int]) -> None:
        self.keep = keep  # msg_type -> most body bytes kept; the caller may change it between feeds
        self._hdr = b""  # a header cut by a record or segment boundary (< 4 bytes)
        self._type = -1
        self._length = 0
        self._remaining = 0
        self._body: bytearray | None = None  # the kept part of a message cut by a boundary
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
        self._hdr = b""
        self._body = None
        self._remaining = 0

    def feed(self, chunk: bytes | memoryview) -> list[tuple]:
        events: list[tuple] = []
        n = len(chunk)
        pos = 0
        if self._remaining:
            # The rest of a message begun in an earlier chunk.
            take = min(self._remaining, n)
            body = self._body
            if body is not None and len(body) < self._bound:
                body += chunk[: min(take, self._bound - len(body))]
            self._remaining -= take
            pos = take
            if not self._remaining:
                self._body = None
                events.append((END, self._type, self._length, bytes(body) if body is not None else None))
        keep = self.keep
        while pos < n:
            if n - pos >= HEADER_BYTES and not self._hdr:
                # The common case: the whole header in this chunk, no copy.
                (header,) = _header(chunk, pos)
                pos += HEADER_BYTES
            else:
                # A header cut by a record or segment boundary: gather its 4 bytes.
                piece = bytes(chunk[pos : pos + HEADER_BYTES - len(self._hdr)])
                pos += len(piece)
                hdr = self._hdr + piece
                if len(hdr) < HEADER_BYTES:
                    self._hdr = hdr
                    break
                self._hdr = b""
                (header,) = _header(hdr)
            mtype, length = header >> 24, header & 0xFFFFFF
            self.messages += 1
            events.append((START, mtype, length, None))
            bound = keep.get(mtype)
            if length <= n - pos:
                # The whole message in this chunk: its kept part is copied once.
                events.append((END, mtype, length, None if bound is None else bytes(chunk[pos : pos + min(length, bound)])))
                pos += length
                continue
            self._type = mtype
            self._length = length
            if bound is None:
                self._body = None
            else:
                self._bound = bound
                self._body = bytearray(chunk[pos : pos + min(n - pos, bound)])
            self._remaining = length - (n - pos)
            pos = n
        return events
