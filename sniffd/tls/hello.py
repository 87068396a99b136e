"""ClientHello and ServerHello bodies parsed into values (pure, never raises on wire bytes).

One job: the fields of the two hellos that the ``tls`` record and the
fingerprints need.  ``parse_client_hello`` / ``parse_server_hello`` take a
handshake message body (without its 4-byte header) and return None when the
message's own framing is broken (a length that runs past the end, bytes left
over): a receiving stack answers that with decode_error (RFC 8446 section 6.2).
An extension whose inside is malformed, or a repeated extension (RFC 8446
section 4.2: "There MUST NOT be more than one extension of the same type"),
leaves the hello parsed with ``malformed = True``: the extension list, which
the fingerprints use, is still exact.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from sniffd.http.syntax import text as wire_text  # wire bytes -> str, lossless (surrogateescape)

# RFC 8446 section 4.2 / IANA "TLS ExtensionType Values".
EXT_SERVER_NAME = 0
EXT_SUPPORTED_GROUPS = 10
EXT_EC_POINT_FORMATS = 11
EXT_SIGNATURE_ALGORITHMS = 13
EXT_ALPN = 16
EXT_SESSION_TICKET = 35
EXT_PRE_SHARED_KEY = 41
EXT_EARLY_DATA = 42
EXT_SUPPORTED_VERSIONS = 43
EXT_KEY_SHARE = 51

TLS13 = 0x0304

# RFC 8446 section 4.1.3: a ServerHello whose random is SHA-256("HelloRetryRequest")
# is a HelloRetryRequest.
HELLO_RETRY_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

VERSION_NAMES = {
    0x0002: "SSLv2",
    0x0300: "SSLv3",
    0x0301: "TLSv1.0",
    0x0302: "TLSv1.1",
    0x0303: "TLSv1.2",
    0x0304: "TLSv1.3",
}


def version_name(v: int) -> str:
    """"TLSv1.2" for 0x0303 (SSLv2, SSLv3, TLSv1.0 .. TLSv1.3); any other value as "0x" and 4 hex digits."""
    name = VERSION_NAMES.get(v)
    return name if name is not None else f"0x{v:04x}"


# RFC 8701 section 2: the 16 GREASE values 0x0A0A, 0x1A1A, .. 0xFAFA.
GREASE = frozenset(0x0A0A + 0x1010 * i for i in range(16))


def is_grease(v: int) -> bool:
    return v in GREASE


@dataclass(slots=True)
class ClientHello:
    """The fields of a ClientHello the record and the fingerprints read.

    (A docstring of its own: without one, ``dataclass`` makes one from
    ``inspect.signature``, which costs ``sniffd read`` ~1 M instructions at start.)"""

    legacy_version: int
    session_id: bytes
    cipher_suites: list[int]
    extensions: list[int] = field(default_factory=list)  # types, in the order sent
    sni: str | None = None  # the first host_name of server_name
    alpn: list[bytes] = field(default_factory=list)  # protocol names, as sent
    supported_versions: list[int] = field(default_factory=list)
    supported_groups: list[int] = field(default_factory=list)
    ec_point_formats: list[int] = field(default_factory=list)
    signature_algorithms: list[int] = field(default_factory=list)
    sslv2: bool = False  # the SSL 2.0 message format (RFC 5246 appendix E.2)
    malformed: bool = False

    def highest_version(self) -> int:
        """The highest version offered: supported_versions without GREASE (RFC 8446
        section 4.2.1) when sent, else legacy_version."""
        offered = [v for v in self.supported_versions if v not in GREASE]
        return max(offered) if offered else self.legacy_version


@dataclass(slots=True)
class ServerHello:
    """The fields of a ServerHello (or HelloRetryRequest) the record and the fingerprints read."""

    legacy_version: int
    session_id: bytes
    cipher_suite: int
    extensions: list[int] = field(default_factory=list)
    selected_version: int | None = None  # supported_versions (TLS 1.3)
    alpn: bytes | None = None
    pre_shared_key: bool = False  # RFC 8446 section 4.2.11: the server accepted a PSK
    hello_retry: bool = False
    malformed: bool = False

    @property
    def version(self) -> int:
        """The negotiated version: supported_versions when sent (RFC 8446 section 4.2.1), else legacy_version."""
        return self.selected_version if self.selected_version is not None else self.legacy_version


class _Malformed(Exception):
    """Internal: a length runs past its container (never leaves this module)."""


# The parsers below read ``body`` in place, by offsets: no slice is made of
# an extension that is only skipped or read as numbers (a ClientHello has
# 10-20 extensions, and slicing each cost more than reading it).


def _whole(b: bytes, start: int, stop: int, len_bytes: int) -> int:
    """Where the contents begin of the one opaque<..> vector (a ``len_bytes``-byte,
    1 or 2, length first) that fills ``b[start:stop]`` exactly."""
    first = start + len_bytes
    if first > stop or first + (b[start] if len_bytes == 1 else (b[start] << 8) | b[start + 1]) != stop:
        raise _Malformed
    return first


def _u16s(b: bytes, start: int, stop: int, len_bytes: int) -> list[int]:
    """``b[start:stop]``: exactly one vector of 16-bit values."""
    first = _whole(b, start, stop, len_bytes)
    n = stop - first
    if n & 1:
        raise _Malformed
    return list(struct.unpack_from(f">{n >> 1}H", b, first))


# An extension's header: its type and its body's length.
_ext_header = struct.Struct(">HH").unpack_from


def _extensions(b: bytes, pos: int, wanted: frozenset[int]) -> tuple[list[int], dict[int, tuple[int, int]]]:
    """The extensions block at ``pos``: every type in the order sent, and
    (start, stop) in ``b`` of the first body of each type in ``wanted``
    (no block when the body ends there: TLS <= 1.2 allows a hello without
    it, RFC 5246 section 7.4.1.2)."""
    n = len(b)
    if pos == n:
        return [], {}
    if pos + 2 > n or pos + 2 + ((b[pos] << 8) | b[pos + 1]) != n:
        raise _Malformed
    types: list[int] = []
    spans: dict[int, tuple[int, int]] = {}
    i = pos + 2
    try:
        while i < n:
            etype, length = _ext_header(b, i)
            types.append(etype)
            i += 4
            if etype in wanted and etype not in spans:
                spans[etype] = (i, i + length)
            i += length
    except struct.error:  # a header cut by the end
        raise _Malformed from None
    if i != n:  # the last body runs past the end
        raise _Malformed
    return types, spans


def _server_name(b: bytes, start: int, stop: int) -> str | None:
    """RFC 6066 section 3: ServerNameList; the first host_name (type 0)."""
    i = _whole(b, start, stop, 2)
    first = None
    while i < stop:
        name_type = b[i]
        i += 3
        if i > stop:
            raise _Malformed
        end = i + ((b[i - 2] << 8) | b[i - 1])
        if end > stop:
            raise _Malformed
        if name_type == 0 and first is None:
            first = wire_text(b[i:end])
        i = end
    return first


def _protocol_names(b: bytes, start: int, stop: int) -> list[bytes]:
    """RFC 7301 section 3.1: ProtocolNameList."""
    i = _whole(b, start, stop, 2)
    out = []
    while i < stop:
        end = i + 1 + b[i]
        if end > stop:
            raise _Malformed
        out.append(b[i + 1 : end])
        i = end
    return out


_CLIENT_PARSED = frozenset(
    (EXT_SERVER_NAME, EXT_ALPN, EXT_SUPPORTED_VERSIONS, EXT_SUPPORTED_GROUPS, EXT_EC_POINT_FORMATS, EXT_SIGNATURE_ALGORITHMS)
)


def _client_extension(hello: ClientHello, etype: int, b: bytes, start: int, stop: int) -> None:
    if etype == EXT_SERVER_NAME:
        if stop > start:  # empty in a ServerHello's echo; a client sends a list
            hello.sni = _server_name(b, start, stop)
    elif etype == EXT_ALPN:
        hello.alpn = _protocol_names(b, start, stop)
    elif etype == EXT_SUPPORTED_VERSIONS:
        hello.supported_versions = _u16s(b, start, stop, 1)
    elif etype == EXT_SUPPORTED_GROUPS:
        hello.supported_groups = _u16s(b, start, stop, 2)
    elif etype == EXT_EC_POINT_FORMATS:
        hello.ec_point_formats = list(b[_whole(b, start, stop, 1) : stop])
    elif etype == EXT_SIGNATURE_ALGORITHMS:
        hello.signature_algorithms = _u16s(b, start, stop, 2)


def parse_client_hello(body: bytes) -> ClientHello | None:
    """RFC 8446 section 4.1.2 / RFC 5246 section 7.4.1.2 ClientHello body, or None if its framing is broken::

        ProtocolVersion legacy_version; Random random[32];
        opaque legacy_session_id<0..32>; CipherSuite cipher_suites<2..2^16-2>;
        opaque legacy_compression_methods<1..2^8-1>; Extension extensions<8..2^16-1>;
    """
    n = len(body)
    if n < 35:
        return None
    pos = 35 + body[34]  # legacy_session_id, 1-byte length
    if pos + 2 > n:
        return None
    suites_end = pos + 2 + ((body[pos] << 8) | body[pos + 1])
    if suites_end >= n or (suites_end - pos) & 1:
        return None  # past the end (the compression methods' length is next), or half a suite
    ext_pos = suites_end + 1 + body[suites_end]  # legacy_compression_methods, 1-byte length
    if ext_pos > n:
        return None
    try:
        types, spans = _extensions(body, ext_pos, _CLIENT_PARSED)
    except _Malformed:
        return None
    session_id = body[35 : pos]
    suites = list(struct.unpack_from(f">{(suites_end - pos - 2) >> 1}H", body, pos + 2))
    hello = ClientHello(body[0] << 8 | body[1], session_id, suites, types)
    if len(set(types)) != len(types) or len(session_id) > 32:
        hello.malformed = True
    for etype, (start, stop) in spans.items():
        try:
            _client_extension(hello, etype, body, start, stop)
        except _Malformed:
            hello.malformed = True
    return hello


_SERVER_PARSED = frozenset((EXT_SUPPORTED_VERSIONS, EXT_ALPN, EXT_PRE_SHARED_KEY))


def parse_server_hello(body: bytes) -> ServerHello | None:
    """RFC 8446 section 4.1.3 / RFC 5246 section 7.4.1.3 ServerHello body, or None if its framing is broken::

        ProtocolVersion legacy_version; Random random[32];
        opaque legacy_session_id_echo<0..32>; CipherSuite cipher_suite;
        uint8 legacy_compression_method; Extension extensions<6..2^16-1>;
    """
    n = len(body)
    if n < 35:
        return None
    pos = 35 + body[34]  # legacy_session_id_echo, 1-byte length
    if pos + 3 > n:
        return None
    try:
        types, spans = _extensions(body, pos + 3, _SERVER_PARSED)
    except _Malformed:
        return None
    session_id = body[35:pos]
    hello = ServerHello(body[0] << 8 | body[1], session_id, (body[pos] << 8) | body[pos + 1], types)
    hello.hello_retry = body[2:34] == HELLO_RETRY_RANDOM
    if len(set(types)) != len(types) or len(session_id) > 32:
        hello.malformed = True
    for etype, (start, stop) in spans.items():
        try:
            if etype == EXT_SUPPORTED_VERSIONS:
                if stop - start != 2:
                    raise _Malformed
                hello.selected_version = (body[start] << 8) | body[start + 1]
            elif etype == EXT_ALPN:
                names = _protocol_names(body, start, stop)
                if len(names) != 1:  # RFC 7301 section 3.1: exactly one
                    raise _Malformed
                hello.alpn = names[0]
            else:  # EXT_PRE_SHARED_KEY
                hello.pre_shared_key = True
        except _Malformed:
            hello.malformed = True
    return hello


def parse_sslv2_client_hello(record: bytes) -> ClientHello | None:
    """A ClientHello in the SSL 2.0 format, the whole record with its 2-byte header
    (RFC 5246 appendix E.2, RFC 6101 appendix E), or None if it is not one::

        uint16 msg_length (high bit set); uint8 msg_type (1); Version version;
        uint16 cipher_spec_length; uint16 session_id_length; uint16 challenge_length;
        V2CipherSpec cipher_specs[cipher_spec_length];   /* 3 bytes each */
        opaque session_id[session_id_length]; opaque challenge[challenge_length];

    Only the cipher specs that are TLS suites (first byte 0, RFC 5246 appendix
    E.2) are kept in ``cipher_suites``; such a hello has no extensions.
    """
    if len(record) < 11 or not record[0] & 0x80:
        return None
    length = ((record[0] & 0x7F) << 8) | record[1]
    if record[2] != 1 or length + 2 != len(record):
        return None
    version = (record[3] << 8) | record[4]
    spec_len = (record[5] << 8) | record[6]
    sid_len = (record[7] << 8) | record[8]
    chal_len = (record[9] << 8) | record[10]
    if spec_len % 3 or 9 + spec_len + sid_len + chal_len != length:
        return None
    specs = record[11 : 11 + spec_len]
    suites = [(specs[i + 1] << 8) | specs[i + 2] for i in range(0, spec_len, 3) if specs[i] == 0]
    session_id = record[11 + spec_len : 11 + spec_len + sid_len]
    return ClientHello(version, session_id, suites, sslv2=True)
