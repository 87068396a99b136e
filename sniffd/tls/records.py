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

- ``(HEADER, content_type, version, length)`` when a header is complete;
- ``(FRAGMENT, content_type, chunk, record_done)`` for each piece of a body
  (``chunk`` is a memoryview of ``data``; ``record_done`` on the last piece);
- ``(BAD, reason)`` once, when a header breaks the framing rules; the reader
  is then dead (every later ``feed`` yields nothing), because after a bad
  length no later byte can be placed.

The caller may stop iterating at any event (the connection switched to
encrypted records and is only counted from then on); the reader's state is
then undefined and it must not be fed again.
"""

from __future__ import annotations

from collections.abc import Iterator

HEADER = 0
FRAGMENT = 1
BAD = 2

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
        self._hdr = bytearray()  # a header cut by a segment boundary (< 5 bytes)
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
        while pos < n:
            if self._remaining:
                take = min(self._remaining, n - pos)
                self._remaining -= take
                yield (FRAGMENT, self._type, view[pos : pos + take], self._remaining == 0)
                pos += take
                continue
            hdr = self._hdr
            if not hdr and n - pos >= HEADER_BYTES:
                # The common case: the whole header in this piece, no copy.
                ctype, major, minor, length = view[pos], view[pos + 1], view[pos + 2], (view[pos + 3] << 8) | view[pos + 4]
                pos += HEADER_BYTES
            else:
                take = min(HEADER_BYTES - len(hdr), n - pos)
                hdr += view[pos : pos + take]
                pos += take
                if len(hdr) < HEADER_BYTES:
                    return
                ctype, major, minor, length = hdr[0], hdr[1], hdr[2], (hdr[3] << 8) | hdr[4]
                hdr.clear()
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
                yield (BAD, reason, ctype, length)
                return
            self.records += 1
            self._type = ctype
            self._remaining = length
            yield (HEADER, ctype, (major << 8) | minor, length)
            if length == 0:
                # An empty record (allowed for application data before TLS 1.3):
                # an empty last fragment so the caller sees the record end.
                yield (FRAGMENT, ctype, view[pos:pos], True)
