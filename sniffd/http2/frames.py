"""HTTP/2 frames on the wire (RFC 9113 section 4 and 6), one direction at a
time: the connection preface, the 9-byte frame header, and the fixed layouts
of each frame type's payload.  Pure: bytes in, values out, never raises on
what came off the wire.

``FrameReader`` is one direction's incremental splitter.  Call order::

    reader = FrameReader(client=True)     # the client's stream starts with PREFACE
    events = reader.feed(data)            # bytes in order; a list of Frame
    where = reader.skip(n)                # n bytes lost (a capture gap): see skip()
    reader.end()                          # no more bytes: True if a frame was cut

DATA payloads are not buffered: a DATA frame comes out as one or more
``Frame`` values (``more`` True on all but the last) whose ``payload`` is a
piece of the frame's content with the padding taken off, so a large body
costs no memory here.  Every other frame comes out once, whole, with at most
``keep`` bytes of payload (``cut`` when there were more).
"""

from __future__ import annotations

import enum
import struct

# RFC 9113 section 3.4: what every client connection starts with.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

FRAME_HEADER_BYTES = 9

# Frame types, RFC 9113 section 6 (11.2 registry).
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags (RFC 9113 section 6).
END_STREAM = 0x1
ACK = 0x1  # SETTINGS, PING
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20

# Settings identifiers, RFC 9113 section 6.5.2.
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6

# RFC 9113 section 4.2: every endpoint accepts frames up to 2^14 bytes until
# its peer is told otherwise; SETTINGS_MAX_FRAME_SIZE may raise that up to
# 2^24 - 1, the most the 24-bit length field can say.
DEFAULT_MAX_FRAME_SIZE = 16_384
LARGEST_MAX_FRAME_SIZE = (1 << 24) - 1

# RFC 9113 section 7, the error codes RST_STREAM and GOAWAY carry.
ERROR_CODES = {
    0x0: "NO_ERROR",
    0x1: "PROTOCOL_ERROR",
    0x2: "INTERNAL_ERROR",
    0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT",
    0x5: "STREAM_CLOSED",
    0x6: "FRAME_SIZE_ERROR",
    0x7: "REFUSED_STREAM",
    0x8: "CANCEL",
    0x9: "COMPRESSION_ERROR",
    0xA: "CONNECT_ERROR",
    0xB: "ENHANCE_YOUR_CALM",
    0xC: "INADEQUATE_SECURITY",
    0xD: "HTTP_1_1_REQUIRED",
}


def error_name(code: int) -> str:
    """RFC 9113 section 7's name for an error code; an unknown code (which
    section 7 says must not trigger special behaviour) as ``0x`` and hex."""
    name = ERROR_CODES.get(code)
    return name if name is not None else f"0x{code:x}"


def looks_like_h2_preface(data: bytes) -> bool | None:
    """Whether a client's first bytes are the HTTP/2 connection preface
    (RFC 9113 section 3.4): True, False, or None when ``data`` is a proper
    prefix of it and more bytes are needed to tell."""
    n = len(data)
    if n >= len(PREFACE):
        return data[: len(PREFACE)] == PREFACE
    return None if PREFACE[:n] == data else False


def looks_like_h2_server_preface(data: bytes) -> bool:
    """Whether a server's first bytes may be its connection preface: a
    SETTINGS frame (not an ACK) on stream 0 whose length is a multiple of 6
    (RFC 9113 sections 3.4 and 6.5).  An HTTP/2 server may send it as soon
    as the connection is open, before the client's preface arrives; no
    HTTP/1 server begins so.  False with fewer than the frame header's 9
    bytes."""
    return (len(data) >= FRAME_HEADER_BYTES and data[3] == SETTINGS and data[4] == 0 and data[5:9] == b"\0\0\0\0"
            and (data[0] << 16 | data[1] << 8 | data[2]) % 6 == 0)


_HEADER = struct.Struct("!BHBBI")  # length as 1 + 2 bytes, type, flags, stream id


class Frame:
    """One frame (or, for DATA, one piece of one frame's content).

    ``length`` is the payload length the frame header declared; ``payload``
    the bytes kept (for DATA: a piece of the content, padding removed);
    ``cut``: the payload was longer than the reader keeps, only its start is
    in ``payload``; ``more``: DATA only, more pieces of this frame follow
    (its flags are on every piece: END_STREAM counts on the last one);
    ``bad_padding``: DATA only, the Pad Length was not smaller than the
    payload (RFC 9113 section 6.1: a PROTOCOL_ERROR), so no content was
    delivered."""

    __slots__ = ("type", "flags", "stream_id", "length", "payload", "cut", "more", "bad_padding")

    def __init__(self, type: int, flags: int, stream_id: int, length: int, payload: bytes,
                 cut: bool = False, more: bool = False, bad_padding: bool = False) -> None:
        self.type = type
        self.flags = flags
        self.stream_id = stream_id
        self.length = length
        self.payload = payload
        self.cut = cut
        self.more = more
        self.bad_padding = bad_padding

    def __repr__(self) -> str:
        return (f"Frame(type={self.type}, flags={self.flags:#x}, stream_id={self.stream_id}, "
                f"length={self.length}, payload={self.payload!r}, cut={self.cut}, more={self.more})")


class ReadState(enum.Enum):
    """Where one direction's reader is.  Transitions (``FrameReader``):

    PREFACE --24 preface bytes--> HEAD              (client only)
    PREFACE --a byte that differs--> DEAD           (bad_preface)
    HEAD --9 bytes, first frame not SETTINGS--> DEAD (bad_preface)
    HEAD --9 bytes, DATA--> DATA_PAD or DATA        (PADDED or not)
    HEAD --9 bytes, other type--> PAYLOAD, or HEAD for an empty payload
    DATA_PAD --the Pad Length byte--> DATA
    DATA --content then padding consumed--> HEAD
    PAYLOAD --``keep`` bytes kept--> SKIP (the rest of an oversized frame)
    PAYLOAD / SKIP --payload consumed--> HEAD
    any --a gap that loses the frame boundaries--> DEAD
    """

    PREFACE = 0
    HEAD = 1
    DATA_PAD = 2
    DATA = 3
    PAYLOAD = 4
    SKIP = 5
    DEAD = 6


PREFACE_, HEAD_, DATA_PAD_, DATA_, PAYLOAD_, SKIP_, DEAD_ = ReadState


class Lost:
    """What ``FrameReader.skip`` lost.  ``kind``: ``"preface"`` (bytes of
    the fixed preface: nothing of value), ``"data"`` (inside one DATA frame:
    ``content`` bytes of its stream's body, an upper bound when the Pad
    Length byte itself was lost; ``frame`` is set when the gap took the
    frame's last byte, so its END_STREAM flag still counts), ``"frame"``
    (inside one other frame, which is dropped: its ``type`` and
    ``stream_id``) or ``"sync"`` (the frame boundaries are lost: the
    direction cannot be read any further)."""

    __slots__ = ("kind", "type", "flags", "stream_id", "content", "frame")

    def __init__(self, kind: str, type: int = -1, stream_id: int = 0, content: int = 0,
                 frame: Frame | None = None, flags: int = 0) -> None:
        self.kind = kind
        self.type = type
        self.flags = flags
        self.stream_id = stream_id
        self.content = content
        self.frame = frame


class FrameReader:
    """One direction's bytes -> frames (see the module docstring).

    ``keep(type)`` is how many payload bytes of a non-DATA frame of that type
    are buffered; the rest of a longer frame is skipped and the frame comes
    out ``cut``.  ``max_payload_bytes`` is that bound for every type with a
    meaningful payload; frame types this reader does not know (RFC 9113
    section 4.1 and 5.5: ignored) keep nothing."""

    __slots__ = ("state", "client", "buf", "pos", "type", "flags", "stream_id", "length", "left",
                 "pad", "content_left", "padded", "max_payload_bytes", "frames_seen", "failure")

    def __init__(self, client: bool, max_payload_bytes: int) -> None:
        self.client = client
        self.state = PREFACE_ if client else HEAD_
        self.buf = bytearray()
        # Bytes of this direction consumed so far (the stream offset).
        self.pos = 0
        self.type = 0
        self.flags = 0
        self.stream_id = 0
        self.length = 0
        # Payload bytes of the current frame not consumed yet.
        self.left = 0
        # DATA: padding bytes at the end of the current frame; content left.
        self.pad = 0
        self.content_left = 0
        self.padded = False
        self.max_payload_bytes = max_payload_bytes
        self.frames_seen = 0
        # The anomaly that made the reader DEAD on its own (bad_preface).
        self.failure: str | None = None

    @property
    def held(self) -> int:
        """Bytes buffered (for the memory meter)."""
        return len(self.buf)

    @property
    def in_frame(self) -> bool:
        """True between a frame's first byte and its last (a FIN here cuts it)."""
        st = self.state
        return (st is HEAD_ and len(self.buf) > 0) or st is DATA_PAD_ or st is DATA_ or st is PAYLOAD_ \
            or st is SKIP_ or (st is PREFACE_ and len(self.buf) > 0)

    def keep(self, type: int) -> int:
        if type == HEADERS or type == CONTINUATION or type == PUSH_PROMISE or type == SETTINGS:
            return self.max_payload_bytes
        if type == PING or type == GOAWAY:  # GOAWAY: its debug data is not read
            return 8
            return 8
        if type == PRIORITY:
            return 5
        if type == RST_STREAM or type == WINDOW_UPDATE:
            return 4
        return 0  # unknown types: ignored, nothing of them kept

    def feed(self, data: bytes) -> list[Frame]:
        out: list[Frame] = []
        i = 0
        n = len(data)
        while i < n:
            st = self.state
            if st is HEAD_:
                need = FRAME_HEADER_BYTES - len(self.buf)
                if not self.buf and n - i >= FRAME_HEADER_BYTES:
                    hi, lo, t, f, sid = _HEADER.unpack_from(data, i)
                    i += FRAME_HEADER_BYTES
                    self.pos += FRAME_HEADER_BYTES
                else:
                    take = data[i : i + need]
                    self.buf += take
                    i += len(take)
                    self.pos += len(take)
                    if len(self.buf) < FRAME_HEADER_BYTES:
                        break
                    hi, lo, t, f, sid = _HEADER.unpack_from(self.buf, 0)
                    self.buf.clear()
                self._start(hi << 16 | lo, t, f, sid & 0x7FFFFFFF, out)
            elif st is DATA_:
                k = min(self.left, n - i)
                content = min(k, self.content_left)
                if content:
                    self.content_left -= content
                self.left -= k
                self.pos += k
                piece = data[i : i + content] if content else b""
                i += k
                if self.left == 0:
                    out.append(Frame(DATA, self.flags, self.stream_id, self.length, piece,
                                     bad_padding=self.pad == -1))
                    self.state = HEAD_
                elif content:
                    out.append(Frame(DATA, self.flags, self.stream_id, self.length, piece, more=True))
            elif st is DATA_PAD_:
                self.pad = data[i]
                i += 1
                self.pos += 1
                self.left -= 1
                self._pad_known(out)
            elif st is PAYLOAD_:
                room = min(self.keep(self.type), self.length) - len(self.buf)
                take = data[i : i + min(room, self.left)]
                self.buf += take
                i += len(take)
                self.pos += len(take)
                self.left -= len(take)
                if self.left == 0:
                    self._emit(out)
                elif len(self.buf) >= min(self.keep(self.type), self.length):
                    self.state = SKIP_
            elif st is SKIP_:
                k = min(self.left, n - i)
                i += k
                self.pos += k
                self.left -= k
                if self.left == 0:
                    self._emit(out)
            elif st is PREFACE_:
                have = len(self.buf)
                take = data[i : i + len(PREFACE) - have]
                if PREFACE[have : have + len(take)] != take:
                    self._fail("http2_bad_preface")
                    break
                i += len(take)
                self.pos += len(take)
                if have + len(take) == len(PREFACE):
                    self.buf.clear()
                    self.state = HEAD_
                else:
                    self.buf += take
            else:  # DEAD
                self.pos += n - i
                break
        return out

    def _fail(self, name: str) -> None:
        self.state = DEAD_
        self.failure = name
        self.buf = bytearray()

    def _start(self, length: int, t: int, f: int, sid: int, out: list[Frame]) -> None:
        if self.frames_seen == 0 and t != SETTINGS:
            # RFC 9113 section 3.4: each side's preface ends with (the
            # server's is only) a SETTINGS frame.  Anything else here is not
            # HTTP/2 (a server answering the preface with an HTTP/1.1 error
            # would otherwise read as a 4 MB frame of unknown type).  A
            # SETTINGS ACK first (a stack that acknowledged the client's
            # SETTINGS before sending its own) is let through: it is HTTP/2.
            self._fail("http2_bad_preface")
            return
        self.frames_seen += 1
        self.type, self.flags, self.stream_id, self.length, self.left = t, f, sid, length, length
        if t == DATA:
            self.padded = bool(f & PADDED)
            self.pad = 0
            if length == 0:
                # Empty DATA (often just END_STREAM), or PADDED with no room
                # for the Pad Length: the latter is a frame size error.
                out.append(Frame(DATA, f, sid, 0, b"", bad_padding=self.padded))
                return
            if self.padded:
                self.state = DATA_PAD_
            else:
                self.content_left = length
                self.state = DATA_
            return
        if length == 0:
            out.append(Frame(t, f, sid, 0, b""))
            return
        self.state = PAYLOAD_ if self.keep(t) else SKIP_

    def _pad_known(self, out: list[Frame]) -> None:
        """The Pad Length byte of a PADDED DATA frame has been read."""
        if self.pad > self.left:
            # RFC 9113 section 6.1: padding as long as or longer than the
            # payload is a PROTOCOL_ERROR; no content is delivered.
            self.content_left = 0
            if self.left == 0:
                out.append(Frame(DATA, self.flags, self.stream_id, self.length, b"", bad_padding=True))
                self.state = HEAD_
                return
            self.state = DATA_
            self.pad = -1  # marks the frame bad when it ends
            return
        self.content_left = self.left - self.pad
        if self.left == 0:
            out.append(Frame(DATA, self.flags, self.stream_id, self.length, b""))
            self.state = HEAD_
        else:
            self.state = DATA_

    def _emit(self, out: list[Frame]) -> None:
        payload = bytes(self.buf)
        self.buf.clear()
        self.state = HEAD_
        if self.type == -1:
            return  # a frame damaged by a gap (skip): nothing to hand out
        out.append(Frame(self.type, self.flags, self.stream_id, self.length, payload,
                         cut=len(payload) < self.length))

    def skip(self, n: int) -> Lost:
        """``n`` bytes of this direction were lost at the current position.
        Inside a frame whose remaining length covers them (and in the fixed
        preface) the boundaries are still known and reading goes on;
        anything else loses them and the reader becomes DEAD."""
        st = self.state
        if n <= 0 or st is DEAD_:
            self.pos += max(n, 0)
            return Lost("sync" if st is DEAD_ else "preface")
        if st is PREFACE_ and len(self.buf) + n <= len(PREFACE):
            # The preface is fixed: its lost bytes are known.
            self.buf += PREFACE[len(self.buf) : len(self.buf) + n]
            self.pos += n
            if len(self.buf) == len(PREFACE):
                self.buf.clear()
                self.state = HEAD_
            return Lost("preface")
        if (st is DATA_ or st is DATA_PAD_) and n <= self.left:
            if st is DATA_PAD_:
                # The Pad Length is lost: count the rest as content (an
                # upper bound; padding is rare on DATA).
                self.pad = 0
                self.content_left = self.left
            self.pos += n
            self.left -= n
            lost = min(n, self.content_left) if self.pad != -1 else 0
            self.content_left -= lost
            frame = None
            if self.left == 0:
                frame = Frame(DATA, self.flags, self.stream_id, self.length, b"", bad_padding=self.pad == -1)
                self.state = HEAD_
            else:
                self.state = DATA_
            return Lost("data", DATA, self.stream_id, lost, frame)
        if (st is PAYLOAD_ or st is SKIP_) and n < self.left:
            # The frame is damaged but its end is known: drop it, read on.
            self.pos += n
            self.left -= n
            self.buf.clear()
            lost = Lost("frame", self.type, self.stream_id, flags=self.flags)
            self.state = SKIP_
            self.type = -1  # the end of a damaged frame emits nothing
            return lost
        if (st is PAYLOAD_ or st is SKIP_) and n == self.left:
            self.pos += n
            self.left = 0
            self.buf.clear()
            self.state = HEAD_
            return Lost("frame", self.type, self.stream_id, flags=self.flags)
        self.pos += n
        self.state = DEAD_
        self.buf = bytearray()
        return Lost("sync", self.type if st is not HEAD_ else -1, self.stream_id)

    def end(self) -> bool:
        """No more bytes will come; True when that cut a frame (or the
        preface) short."""
        cut = self.in_frame
        self.buf = bytearray()
        self.state = DEAD_
        return cut


# ---------------------------------------------------------------- payloads


def _unpadded(flags: int, payload: bytes) -> tuple[int, int] | None:
    """(start, end) of a HEADERS / PUSH_PROMISE payload without its padding
    (RFC 9113 sections 6.2 and 6.6: Pad Length byte first, padding last);
    ``end`` may be below ``start`` when the padding does not fit, which the
    callers treat as an error.  None: PADDED with no Pad Length byte."""
    if not flags & PADDED:
        return 0, len(payload)
    if not payload:
        return None
    return 1, len(payload) - payload[0]


def headers_fragment(flags: int, payload: bytes) -> bytes | None:
    """A HEADERS payload (RFC 9113 section 6.2) -> its field block fragment,
    without padding and priority; None when the padding or priority do not
    fit in the payload (a PROTOCOL_ERROR / FRAME_SIZE_ERROR)."""
    span = _unpadded(flags, payload)
    if span is None:
        return None
    start, end = span
    if flags & PRIORITY_FLAG:
        start += 5
    if start > end:
        return None
    return payload[start:end]


def push_promise_fields(flags: int, payload: bytes) -> tuple[int, bytes] | None:
    """A PUSH_PROMISE payload (RFC 9113 section 6.6) -> (promised stream id,
    field block fragment); None when it does not fit."""
    span = _unpadded(flags, payload)
    if span is None:
        return None
    start, end = span
    if start + 4 > end:
        return None
    promised = int.from_bytes(payload[start : start + 4], "big") & 0x7FFFFFFF
    return promised, payload[start + 4 : end]


def settings_entries(payload: bytes) -> list[tuple[int, int]] | None:
    """A SETTINGS payload (RFC 9113 section 6.5) -> [(identifier, value)],
    in order; None when its length is not a multiple of 6."""
    if len(payload) % 6:
        return None
    return [struct.unpack_from("!HI", payload, k) for k in range(0, len(payload), 6)]


def goaway_fields(payload: bytes) -> tuple[int, int] | None:
    """A GOAWAY payload (RFC 9113 section 6.8) -> (last stream id, error
    code); the debug data is not kept.  None when shorter than 8 bytes."""
    if len(payload) < 8:
        return None
    last, code = struct.unpack_from("!II", payload, 0)
    return last & 0x7FFFFFFF, code


def rst_stream_code(payload: bytes) -> int | None:
    """RST_STREAM (RFC 9113 section 6.4): its error code; None unless the
    payload is exactly 4 bytes."""
    if len(payload) != 4:
        return None
    return int.from_bytes(payload, "big")
