"""TLS record framing for one direction of a connection (pure, no buffering of bodies).

One job: cut a byte stream into TLS records, RFC 8446 section 5.1 and RFC 5246
section 6.2.1::

    struct {
        ContentType type;                 /* 1 byte: 20..24 */
        ProtocolVersion legacy_record_version;  /* 2 bytes: 0x03 0x0N */
        uint16 length;
        opaque fragment[length];
    } TLSPlaintext;

Only the 5-byte header is ever held (it may be cut by a segment boundary);
a record's body is handed on as slices of the caller's bytes, as they come, so
a record costs no memory however long it is.

Call order: ``feed(data)`` for each piece of the stream, in order; it yields

- ``(content_type, chunk, first)`` for each piece of a record's body, in
  order: ``chunk`` is a memoryview of ``data``; ``first`` is True on the
  piece that comes with the record's header (its chunk is empty when no body
  byte came with the header, or the record is empty), so every record gives
  exactly one event with ``first`` set, at its header;
- ``(BAD, reason, True)`` once, when a header breaks the framing rules; the reader
  is then dead (every later ``feed`` yields nothing), because after a bad
  length no later byte can be placed.

The caller may stop iterating at any event (the connection switched to
encrypted records and is only counted from then on); the reader's state is
then undefined and it must not be fed again.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

# The first item of a (BAD, reason, True) event: no content type (0-255) is negative.
BAD = -1

# RFC 8446 section 5 / RFC 5246 section 6.2.1 content types.
CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23
HEARTBEAT = 24  # RFC 6520
CONTENT_TYPES = frozenset((CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT))

HEADER_BYTES = 5

# The largest record a receiver accepts: TLSCiphertext.length may exceed the
# 2^14 plaintext limit by at most 2048 bytes in TLS <= 1.2 (RFC 5246 section
# 6.2.3; TLS 1.3 allows only 256, RFC 8446 section 5.2).  A receiver answers a
# longer one with record_overflow and closes, so a longer length means the
# stream is not (or no longer) TLS.
MAX_RECORD_BYTES = 2**14 + 2048

# Why a header was refused (the caller turns these into anomaly names).
BAD_CONTENT_TYPE = "content_type"
BAD_VERSION = "version"
BAD_LENGTH = "length"


class RecordReader:
    """Record framing of one direction; see the module docstring for the call order."""

    __slots__ = ("_hdr", "_type", "_remaining", "records", "dead")

    def __init__(self) -> None:
        self._hdr = b""  # a header cut by a segment boundary (< 5 bytes)
        self._type = 0
        self._remaining = 0  # body bytes of the current record still to come
        self.records = 0  # complete headers read
        self.dead = False

    @property
    def mem(self) -> int:
        """Bytes held: at most a partial header."""
        return len(self._hdr)

    @property
    def in_record(self) -> bool:
        """True between a header and the end of its record's body, or within a header."""
        return self._remaining > 0 or len(self._hdr) > 0

    def feed(self, data: bytes | memoryview) -> Iterator[tuple]:
        if self.dead:
            return
        view = memoryview(data)
        n = len(view)
        pos = 0
        if self._remaining:
            # The rest of a record begun in an earlier piece.
            pos = min(self._remaining, n)
            self._remaining -= pos
            yield (self._type, view[:pos], False)
        while pos < n:
            if n - pos >= HEADER_BYTES and not self._hdr:
                # The common case: the whole header in this piece, no copy.
                ctype, major, length = _header(view, pos)
                pos += HEADER_BYTES
            else:
                # A header cut by a segment boundary: gather its 5 bytes.
                piece = view[pos : pos + HEADER_BYTES - len(self._hdr)].tobytes()
                pos += len(piece)
                hdr = self._hdr + piece
                if len(hdr) < HEADER_BYTES:
                    self._hdr = hdr
                    return
                self._hdr = b""
                ctype, major, length = _header(hdr)
            reason = None
            if ctype not in CONTENT_TYPES:
                reason = BAD_CONTENT_TYPE
            elif major != 3:
                # Every TLS and SSL 3.0 record says 3.x (TLS 1.3 freezes it at 0x0303,
                # RFC 8446 section 5.1; a first ClientHello may say 0x0300 or 0x0301).
                reason = BAD_VERSION
            elif length > MAX_RECORD_BYTES:
                reason = BAD_LENGTH
            if reason is not None:
                self.dead = True
                yield (BAD, reason, True)
                return
            self.records += 1
            end = pos + length
            if end > n:
                self._type = ctype
                self._remaining = end - n
                yield (ctype, view[pos:], True)
                return
            yield (ctype, view[pos:end], True)
            pos = end


# A record header's content type, major version and length (the minor version is skipped).
_header = struct.Struct(">BBxH").unpack_from

