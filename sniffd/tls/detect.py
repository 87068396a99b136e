"""Cheap tests for "a TLS ClientHello starts here" (pure, no state).

One job: let the flow table switch a connection to TLS wherever the
ClientHello begins in the client's stream (port 443, any other port, or after
a cleartext STARTTLS exchange), without parsing the hello.  Both functions
look at a prefix of the bytes and return True, False, or None when the bytes
so far could still go either way (call again with more).
"""

from __future__ import annotations

from sniffd.tls.handshake import CLIENT_HELLO
from sniffd.tls.records import HANDSHAKE

# RFC 5246 section 6.2.1: a plaintext record carries at most 2^14 bytes.
_MAX_PLAINTEXT = 2**14

# The shortest ClientHello body: version 2, random 32, session id length 1,
# cipher_suites length 2 + one suite 2, compression length 1 + null 1.
_MIN_CLIENT_HELLO = 41

# Handshake bytes looked at: type (1), length (3), client_version (2).
_NEEDED = 6


def looks_like_tls_client_hello_py(data: bytes | memoryview) -> bool | None:
    """True when ``data`` starts with a TLS handshake record (RFC 8446 section 5.1)
    whose first message is a ClientHello (RFC 8446 section 4.1.2) of a plausible
    size and version; False as soon as a byte rules that out; None when more
    bytes are needed (at most 11 when the hello's first record holds 6 bytes
    of it; a hello cut into tiny records, as DPI-evasion tools send it, is
    followed across up to 6 records).

    Checked: each record's type (handshake), version (3.x, x <= 4) and length
    (1..2^14, RFC 5246 section 6.2.1: no empty handshake fragments), then
    msg_type 1, a body of at least 41 bytes, and client_version 3.x.
    """
    view = memoryview(data)
    n = len(view)
    collected = bytearray()
    pos = 0
    while len(collected) < _NEEDED:
        if pos >= n:
            return None
        if view[pos] != HANDSHAKE:
            return False
        if pos + 1 < n and view[pos + 1] != 3:
            return False
        if pos + 2 < n and view[pos + 2] > 4:
            return False
        if pos + 5 > n:
            return None
        length = (view[pos + 3] << 8) | view[pos + 4]
        if length == 0 or length > _MAX_PLAINTEXT:
            return False
        body = view[pos + 5 : pos + 5 + length]
        collected += body[: _NEEDED - len(collected)]
        if not collected:
            return None
        if collected[0] != CLIENT_HELLO:
            return False
        if len(collected) >= 4 and ((collected[1] << 16) | (collected[2] << 8) | collected[3]) < _MIN_CLIENT_HELLO:
            return False
        if len(collected) >= 5 and collected[4] != 3:
            return False
        if len(collected) >= 6 and collected[5] > 4:
            # 3.0 .. 3.4; TLS 1.3 clients send 3.3 here (RFC 8446 section 4.1.2).
            return False
        if len(body) < length:
            # The record is not all here: what is here was checked.
            return None if len(collected) < _NEEDED else True
        pos += 5 + length
    return True


def looks_like_sslv2_client_hello(data: bytes | memoryview) -> bool | None:
    """True when ``data`` starts with a ClientHello in the SSL 2.0 record format
    (RFC 5246 appendix E.2; RFC 6101 appendix E): a 2-byte header with the high
    bit set, msg_type 1, version 0x0002 (SSL 2.0) or 3.x (a TLS client
    staying compatible with SSL 2.0 servers), cipher specs a non-empty
    multiple of 3 bytes, a session id of 0 or 16 bytes, a 16..32-byte
    challenge, and lengths that add up.  None until the 11 fixed bytes are here.
    """
    n = len(data)
    if n >= 1 and not data[0] & 0x80:
        return False
    if n >= 3 and data[2] != 1:
        return False
    if n < 11:
        return None
    length = ((data[0] & 0x7F) << 8) | data[1]
    version = (data[3] << 8) | data[4]
    spec_len = (data[5] << 8) | data[6]
    sid_len = (data[7] << 8) | data[8]
    chal_len = (data[9] << 8) | data[10]
    return (
        (version == 0x0002 or (data[3] == 3 and data[4] <= 4))
        and spec_len > 0
        and spec_len % 3 == 0
        and sid_len in (0, 16)
        and 16 <= chal_len <= 32
        and 9 + spec_len + sid_len + chal_len == length
    )


# looks_like_tls_client_hello_py in C when sniffd/tls/_session.c was built
# (~18k CPU instructions less per TLS connection; tests/unit/test_tls_session_c.py
# holds the two equal).  Last: the extension imports this module's other function.
try:
    from sniffd.tls._session import looks_like_tls_client_hello
except ImportError:
    looks_like_tls_client_hello = looks_like_tls_client_hello_py
