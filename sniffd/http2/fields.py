"""HTTP/2 field sections (RFC 9113 section 8) -> the same ``Message`` values
HTTP/1 gives the records stage.  Pure.

How a decoded header section maps onto a Message:

* ``:method`` -> ``method``; ``:path`` -> ``uri`` (a CONNECT request has no
  ``:path``: its ``:authority`` is the uri, as HTTP/1's authority-form
  target is); ``:status`` -> ``status`` (``reason`` stays None: HTTP/2 has
  none); ``version`` is ``"2"``.
* ``:authority`` becomes the ``host`` field when the request has no Host
  field (it is what Host is in HTTP/1, RFC 9113 section 8.3.1, and the
  records take the host from there); when Host is sent too and equal it
  is dropped, when they differ it is kept as ``:authority`` beside
  ``host`` (and the request is malformed).
* Every other pseudo-header (``:scheme``, ``:protocol``, unknown ones) is
  kept in ``headers`` under its own name, colon included: the scheme is
  part of the request and has no Message field, and the colon says it
  was never an HTTP/1 header.
* Names are lower-cased; repeated fields are joined with ", " as sniffd's
  HTTP/1 reader joins them (RFC 9110 section 5.3), except ``cookie``,
  whose crumbs are joined with "; " (RFC 9113 section 8.2.3).  Values are
  text as HTTP/1's are (bytes that are not UTF-8 kept as lone surrogates,
  ``sniffd.http.syntax.text``).
* Trailers are merged into ``headers`` the same way, as HTTP/1 merges a
  chunked message's trailer section.
* ``max_header_bytes`` / ``max_header_count`` bound what is kept, as for
  HTTP/1 (``header_limit``): a field counts its name and value plus 4 bytes
  (": " and CRLF, its size written as an HTTP/1 line).

Anomalies: ``http2_malformed_headers`` for a section a receiver must treat
as malformed (RFC 9113 section 8.2 and 8.3: an upper-case name, a
connection-specific field, CR/LF/NUL in a field, a pseudo-header repeated,
unknown, misplaced or missing, Host differing from :authority); the fields
are kept as sent.  ``http_status_invalid`` when ``:status`` is not three
digits.
"""

from __future__ import annotations

import urllib.parse

from sniffd.http.message import Message
from sniffd.http.syntax import text

# RFC 9113 section 8.2.2: fields that only make sense on one HTTP/1 hop.
CONNECTION_SPECIFIC = frozenset((b"connection", b"proxy-connection", b"keep-alive",
                                 b"transfer-encoding", b"upgrade"))

REQUEST_PSEUDO = frozenset((b":method", b":scheme", b":authority", b":path", b":protocol"))
RESPONSE_PSEUDO = frozenset((b":status",))

# RFC 9113 section 8.2.1: a field name or value with these is malformed.
_BAD_VALUE = (b"\r", b"\n", b"\0")

# Cost of one field as HTTP/1 text: ": " and CRLF around name and value.
FIELD_OVERHEAD = 4


class Limits:
    """What a header section may keep (the HTTP/1 reader's config keys)."""

    __slots__ = ("max_header_bytes", "max_header_count")

    def __init__(self, max_header_bytes: int, max_header_count: int) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_header_count = max_header_count


def _value_bad(value: bytes) -> bool:
    return b"\r" in value or b"\n" in value or b"\0" in value


def _name_bad(name: bytes) -> bool:
    return (not name or name != name.lower() or b" " in name or b"\t" in name or b":" in name[1:]
            or _value_bad(name))


def _add(msg: Message, key: str, val: str, nbytes: int, limits: Limits, anomalies: set) -> None:
    count = msg.header_count + 1
    total = msg.header_bytes + nbytes
    if count > limits.max_header_count or total > limits.max_header_bytes:
        anomalies.add("header_limit")
        return
    msg.header_count = count
    msg.header_bytes = total
    headers = msg.headers
    if key in headers:
        headers[key] += ("; " if key == "cookie" else ", ") + val
    else:
        headers[key] = val


def _regular(msg: Message, name: bytes, value: bytes, limits: Limits, anomalies: set) -> bool:
    """One field that is not a pseudo-header; returns False when it breaks a
    section 8.2 rule."""
    ok = True
    if _name_bad(name) or _value_bad(value):
        ok = False
    elif name in CONNECTION_SPECIFIC or (name == b"te" and value.strip(b" \t").lower() != b"trailers"):
        ok = False
    _add(msg, text(name.lower()), text(value), len(name) + len(value) + FIELD_OVERHEAD, limits, anomalies)
    return ok


def request_fields(msg: Message, fields: list[tuple[bytes, bytes]], limits: Limits, anomalies: set) -> None:
    """A request's header section into ``msg`` (see the module docstring)."""
    msg.version = "2"
    malformed = False
    pseudo: dict[bytes, bytes] = {}
    extra: list[tuple[bytes, bytes]] = []  # pseudo-headers kept in headers
    regular_seen = False
    host_seen = False
    order: list[tuple[bytes, bytes]] = []
    for name, value in fields:
        if name[:1] == b":":
            if regular_seen or name in pseudo or name not in REQUEST_PSEUDO or _value_bad(value):
                malformed = True
            if name in REQUEST_PSEUDO and name not in pseudo:
                pseudo[name] = value
                if name not in (b":method", b":path", b":authority"):
                    extra.append((name, value))
            else:
                extra.append((name, value))
        else:
            regular_seen = True
            if name.lower() == b"host":
                host_seen = True
            order.append((name, value))
    method = pseudo.get(b":method")
    msg.method = text(method) if method is not None else None
    authority = pseudo.get(b":authority")
    path = pseudo.get(b":path")
    if method == b"CONNECT" and b":protocol" not in pseudo:
        # RFC 9113 section 8.5: :authority only, no :scheme nor :path.
        if authority is None or path is not None or b":scheme" in pseudo:
            malformed = True
        target = path if path is not None else authority
        msg.uri = text(target) if target is not None else None
    else:
        if method is None or path is None or b":scheme" not in pseudo or path == b"":
            malformed = True
        msg.uri = text(path) if path is not None else None
    if authority is not None and not host_seen:
        _add(msg, "host", text(authority), len(authority) + 4 + FIELD_OVERHEAD, limits, anomalies)
    for name, value in extra:
        _add(msg, text(name.lower()), text(value), len(name) + len(value) + FIELD_OVERHEAD, limits, anomalies)
    for name, value in order:
        if not _regular(msg, name, value, limits, anomalies):
            malformed = True
    if authority is not None and host_seen:
        host = msg.headers.get("host")
        if host is not None and host != text(authority):
            malformed = True
            _add(msg, ":authority", text(authority), len(authority) + 10 + FIELD_OVERHEAD, limits, anomalies)
    if malformed:
        anomalies.add("http2_malformed_headers")


def response_fields(msg: Message, fields: list[tuple[bytes, bytes]], limits: Limits, anomalies: set) -> None:
    """A response's (or an interim response's) header section into ``msg``."""
    msg.version = "2"
    malformed = False
    status: bytes | None = None
    regular_seen = False
    for name, value in fields:
        if name[:1] == b":":
            if regular_seen or name != b":status" or status is not None:
                malformed = True
            if name == b":status" and status is None:
                status = value
            else:
                _add(msg, text(name.lower()), text(value), len(name) + len(value) + FIELD_OVERHEAD,
                     limits, anomalies)
        else:
            regular_seen = True
            if not _regular(msg, name, value, limits, anomalies):
                malformed = True
    if status is None:
        malformed = True
    msg.status = parse_status(status)
    if status is not None and msg.status is None:
        anomalies.add("http_status_invalid")
    if malformed:
        anomalies.add("http2_malformed_headers")


def parse_status(value: bytes | None) -> int | None:
    """``:status`` -> int when it is three digits (RFC 9113 section 8.3.2)."""
    if value is not None and len(value) == 3 and value.isdigit():
        return int(value)
    return None


def trailer_fields(msg: Message, fields: list[tuple[bytes, bytes]], limits: Limits, anomalies: set) -> None:
    """A trailer section merged into ``msg.headers``; pseudo-headers are not
    allowed there (RFC 9113 section 8.1) and are kept under their name."""
    malformed = False
    for name, value in fields:
        if name[:1] == b":":
            malformed = True
            _add(msg, text(name.lower()), text(value), len(name) + len(value) + FIELD_OVERHEAD, limits, anomalies)
        elif not _regular(msg, name, value, limits, anomalies):
            malformed = True
    if malformed:
        anomalies.add("http2_malformed_headers")


def grpc_status(headers: dict[str, str]) -> tuple[int | None, str | None] | None:
    """gRPC's outcome from a response's fields: ``(status, message)`` when a
    ``grpc-status`` field was sent (in the trailers, or in the HEADERS of a
    Trailers-Only response, gRPC's PROTOCOL-HTTP2.md); None otherwise.
    ``status``: the code as an int (None when not a decimal number);
    ``message``: ``grpc-message`` percent-decoded, as gRPC says it is
    encoded (the raw value stays in headers)."""
    raw = headers.get("grpc-status")
    if raw is None:
        return None
    raw = raw.strip()
    status = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else None
    message = headers.get("grpc-message")
    if message is not None:
        try:
            message = text(urllib.parse.unquote_to_bytes(message.encode("utf-8", "surrogateescape")))
        except Exception:
            pass  # kept as sent
    return status, message


def content_length(headers: dict[str, str]) -> int | None:
    """The Content-Length a message announced, when it is one decimal
    number; None otherwise (absent, repeated with different values, junk)."""
    raw = headers.get("content-length")
    if raw is None:
        return None
    values = {v.strip() for v in raw.split(",")}
    if len(values) != 1:
        return None
    v = values.pop()
    if not (v.isascii() and v.isdigit()) or len(v) > 18:
        return None
    return int(v)
