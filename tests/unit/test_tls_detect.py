"""looks_like_tls_client_hello / looks_like_sslv2_client_hello: True, False, or None for "more bytes"."""

from __future__ import annotations

import tlscraft as T

from sniffd.tls import looks_like_sslv2_client_hello, looks_like_tls_client_hello

HELLO = T.client_hello([0x1301, 0x002F], [T.ext_sni("a.test")])
ONE_RECORD = T.record(22, HELLO, version=0x0301)


def test_client_hello_is_recognised_from_its_eleventh_byte():
    """5 bytes of record header and 6 of handshake (type, length, client_version) decide."""
    answers = [looks_like_tls_client_hello(ONE_RECORD[:n]) for n in range(0, 12)]
    assert [None] * 11 + [True] == answers
    assert looks_like_tls_client_hello(ONE_RECORD) is True


def test_client_hello_cut_into_one_byte_records_is_recognised():
    """DPI-evasion tools send the hello in tiny records; RFC 5246 section 6.2.1 allows it."""
    tiny = T.records(22, HELLO, 1, version=0x0301)
    assert looks_like_tls_client_hello(tiny[:6 * 6 - 1]) is None
    assert looks_like_tls_client_hello(tiny) is True


def test_a_record_ending_early_waits_for_the_next_record():
    two = T.record(22, HELLO[:3]) + T.record(22, HELLO[3:])
    assert (None, True) == (looks_like_tls_client_hello(two[:8]), looks_like_tls_client_hello(two[:8 + 5 + 3]))


def test_other_first_bytes_are_rejected_early():
    cases = {
        b"GET / HTTP/1.1\r\n": False,  # not a handshake record
        b"\x16\x02": False,  # record version 2.x
        b"\x16\x03\x05": False,  # record version 3.5
        b"\x16\x03\x01\x00\x00": False,  # empty handshake record (RFC 5246 6.2.1 forbids it)
        b"\x16\x03\x01\x40\x01": False,  # longer than 2^14
        T.record(22, T.server_hello(0x1301, None))[:6]: False,  # a ServerHello
        b"\x16\x03\x01\x00\x30\x01\x00\x00\x10": False,  # a hello body shorter than 41 bytes
        b"\x16\x03\x01\x00\x30\x01\x00\x00\x30\x02": False,  # client_version 2.x
        b"\x16\x03\x01\x00\x30\x01\x00\x00\x30\x03\x07": False,  # client_version 3.7
        b"": None,
        b"\x16": None,
    }
    assert cases == {data: looks_like_tls_client_hello(data) for data in cases}


def test_sslv2_client_hello_is_recognised():
    v2 = T.sslv2_client_hello(0x0301, [0x010080, 0x00002F, 0x000035])
    assert [None] * 11 + [True] == [looks_like_sslv2_client_hello(v2[:n]) for n in range(12)]
    assert looks_like_sslv2_client_hello(T.sslv2_client_hello(0x0002, [0x010080])) is True


def test_sslv2_lookalikes_are_rejected():
    good = T.sslv2_client_hello(0x0301, [0x010080])
    cases = {
        b"\x16\x03\x01": False,
        good[:2] + b"\x02": False,  # msg_type 2
        T.sslv2_client_hello(0x0301, [0x010080], challenge=b"\x00" * 8): False,  # challenge < 16
        T.sslv2_client_hello(0x0301, [0x010080], session_id=b"\x01" * 5): False,
        T.sslv2_client_hello(0x0400, [0x010080]): False,
        good[:1] + bytes([good[1] + 1]) + good[2:]: False,  # lengths do not add up
    }
    assert cases == {data: looks_like_sslv2_client_hello(data) for data in cases}


def test_client_hello_found_after_a_starttls_exchange():
    """SMTP (RFC 3207): the only offset in the client's stream where a hello starts is right after STARTTLS."""
    prefix = b"EHLO client.test\r\nSTARTTLS\r\n"
    stream = prefix + ONE_RECORD
    assert [len(prefix)] == [i for i in range(len(stream)) if looks_like_tls_client_hello(stream[i:])]
    assert [] == [i for i in range(len(stream)) if looks_like_sslv2_client_hello(stream[i:])]
