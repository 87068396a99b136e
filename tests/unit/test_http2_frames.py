"""sniffd.http2.frames: one direction's bytes -> frames, payload layouts, lost bytes.

Frames are built by hand (test_http2.frame, RFC 9113 section 4.1)."""

from __future__ import annotations

import struct

from test_http2 import DATA, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PADDED, PING, PRIO, SETTINGS, frame

from sniffd.http2 import frames as fr

SETTINGS_FRAME = frame(SETTINGS, 0, 0, struct.pack("!HI", 3, 100))


def views(frames):
    return [(f.type, f.flags, f.stream_id, f.length, f.payload, f.cut, f.more, f.bad_padding) for f in frames]


def test_client_reader_wants_the_preface_then_frames():
    r = fr.FrameReader(True, 1000)
    got = r.feed(fr.PREFACE + SETTINGS_FRAME + frame(PING, 0, 0, b"abcdefgh"))
    assert [(SETTINGS, 0, 0, 6, struct.pack("!HI", 3, 100), False, False, False),
            (PING, 0, 0, 8, b"abcdefgh", False, False, False)] == views(got)
    assert 24 + 15 + 17 == r.pos


def test_a_different_first_byte_is_a_bad_preface():
    r = fr.FrameReader(True, 1000)
    assert [] == r.feed(b"PRI * HTTP/1.1\r\n")
    assert ("http2_bad_preface", fr.ReadState.DEAD) == (r.failure, r.state)


def test_server_must_start_with_settings():
    r = fr.FrameReader(False, 1000)
    assert [] == r.feed(frame(PING, 0, 0, b"abcdefgh"))
    assert "http2_bad_preface" == r.failure
    r = fr.FrameReader(False, 1000)
    assert 1 == len(r.feed(frame(SETTINGS, 0x1, 0)))  # an ACK first: out of order, still HTTP/2
    assert r.failure is None


def test_data_comes_out_in_pieces_without_its_padding():
    r = fr.FrameReader(False, 1000)
    f = frame(DATA, PADDED | END_STREAM, 5, bytes([4]) + b"0123456789" + b"\0" * 4)
    r.feed(SETTINGS_FRAME)
    got = r.feed(f[:13]) + r.feed(f[13:16]) + r.feed(f[16:])
    # header 9 bytes + pad length byte; "012" in the first call, "345" in the second, rest.
    assert [(DATA, PADDED | END_STREAM, 5, 15, b"012", False, True, False),
            (DATA, PADDED | END_STREAM, 5, 15, b"345", False, True, False),
            (DATA, PADDED | END_STREAM, 5, 15, b"6789", False, False, False)] == views(got)
    assert 0 == r.held


def test_padding_longer_than_the_payload_delivers_nothing():
    r = fr.FrameReader(False, 1000)
    r.feed(SETTINGS_FRAME)
    got = r.feed(frame(DATA, PADDED, 1, bytes([200]) + b"abc"))
    assert [(DATA, PADDED, 1, 4, b"", False, False, True)] == views(got)


def test_empty_data_frame_carries_its_flags():
    r = fr.FrameReader(False, 1000)
    r.feed(SETTINGS_FRAME)
    assert [(DATA, END_STREAM, 3, 0, b"", False, False, False)] == views(r.feed(frame(DATA, END_STREAM, 3)))


def test_payload_beyond_keep_is_skipped_and_the_frame_cut():
    r = fr.FrameReader(False, 10)
    r.feed(SETTINGS_FRAME)
    got = r.feed(frame(HEADERS, END_HEADERS, 1, b"x" * 25) + frame(GOAWAY, 0, 0, struct.pack("!II", 7, 0) + b"debug"))
    assert [(HEADERS, END_HEADERS, 1, 25, b"x" * 10, True, False, False),
            (GOAWAY, 0, 0, 13, struct.pack("!II", 7, 0), True, False, False)] == views(got)


def test_unknown_frame_types_keep_nothing():
    r = fr.FrameReader(False, 1000)
    r.feed(SETTINGS_FRAME)
    got = r.feed(frame(0xEE, 0, 0, b"z" * 500))
    assert [(0xEE, 0, 0, 500, b"", True, False, False)] == views(got)
    assert 0 == r.held


def test_skip_inside_data_keeps_the_frame_boundaries():
    r = fr.FrameReader(False, 1000)
    r.feed(SETTINGS_FRAME)
    f = frame(DATA, END_STREAM, 1, b"0123456789")
    r.feed(f[:12])  # "012"
    lost = r.skip(4)
    assert ("data", 1, 4, None) == (lost.kind, lost.stream_id, lost.content, lost.frame)
    got = r.feed(f[16:] + frame(PING, 0, 0, b"12345678"))
    assert [(DATA, END_STREAM, 1, 10, b"789", False, False, False), (PING, 0, 0, 8, b"12345678", False, False, False)] \
        == views(got)


def test_skip_to_the_end_of_a_data_frame_hands_out_its_end():
    r = fr.FrameReader(False, 1000)
    r.feed(SETTINGS_FRAME)
    f = frame(DATA, END_STREAM, 1, b"0123456789")
    r.feed(f[:12])
    lost = r.skip(7)
    assert ("data", 7) == (lost.kind, lost.content)
    assert (DATA, END_STREAM, 1, 10, b"", False, False, False) == views([lost.frame])[0]


def test_skip_inside_another_frame_drops_it_and_reads_on():
    r = fr.FrameReader(False, 1000)
    r.feed(SETTINGS_FRAME)
    f = frame(HEADERS, END_HEADERS | END_STREAM, 3, b"h" * 20)
    r.feed(f[:15])
    lost = r.skip(5)
    assert ("frame", HEADERS, 3, END_HEADERS | END_STREAM) == (lost.kind, lost.type, lost.stream_id, lost.flags)
    assert [(PING, 0, 0, 8, b"abcdefgh", False, False, False)] == views(r.feed(f[20:] + frame(PING, 0, 0, b"abcdefgh")))


def test_skip_across_a_frame_header_loses_sync():
    r = fr.FrameReader(False, 1000)
    r.feed(SETTINGS_FRAME + frame(PING, 0, 0, b"abcdefgh")[:4])
    assert "sync" == r.skip(3).kind
    assert [] == r.feed(frame(PING, 0, 0, b"abcdefgh"))
    r = fr.FrameReader(False, 1000)
    r.feed(SETTINGS_FRAME + frame(DATA, 0, 1, b"abc")[:10])
    assert "sync" == r.skip(3).kind  # 2 bytes of content left, 3 lost


def test_skip_inside_the_preface_is_recovered():
    r = fr.FrameReader(True, 1000)
    r.feed(fr.PREFACE[:5])
    assert "preface" == r.skip(10).kind
    assert [(SETTINGS, 0, 0, 6, struct.pack("!HI", 3, 100), False, False, False)] == \
        views(r.feed(fr.PREFACE[15:] + SETTINGS_FRAME))


def test_end_says_whether_a_frame_was_cut():
    r = fr.FrameReader(False, 1000)
    r.feed(SETTINGS_FRAME)
    assert r.end() is False
    r = fr.FrameReader(False, 1000)
    r.feed(SETTINGS_FRAME + frame(PING, 0, 0, b"abcdefgh")[:12])
    assert r.end() is True


def test_headers_payload_layout():
    payload = bytes([2]) + struct.pack("!IB", 0x80000003, 15) + b"block" + b"\0\0"
    assert b"block" == fr.headers_fragment(PADDED | PRIO, payload)
    assert b"block" == fr.headers_fragment(0, b"block")
    assert fr.headers_fragment(PADDED, bytes([9]) + b"ab") is None
    assert fr.headers_fragment(PRIO, b"abc") is None
    assert fr.headers_fragment(PADDED, b"") is None


def test_push_promise_settings_goaway_rst_layouts():
    assert (2, b"blk") == fr.push_promise_fields(0, struct.pack("!I", 0x80000002) + b"blk")
    assert (4, b"b") == fr.push_promise_fields(PADDED, bytes([1]) + struct.pack("!I", 4) + b"b" + b"\0")
    assert fr.push_promise_fields(0, b"\0\0") is None
    assert [(1, 4096), (5, 16384)] == fr.settings_entries(struct.pack("!HIHI", 1, 4096, 5, 16384))
    assert fr.settings_entries(b"12345") is None
    assert (5, 2) == fr.goaway_fields(struct.pack("!II", 0x80000005, 2) + b"debug")
    assert fr.goaway_fields(b"1234567") is None
    assert 8 == fr.rst_stream_code(struct.pack("!I", 8))
    assert fr.rst_stream_code(b"123") is None


def test_error_names_follow_rfc9113_section_7():
    assert ["NO_ERROR", "PROTOCOL_ERROR", "CANCEL", "HTTP_1_1_REQUIRED", "0xe", "0xffffffff"] == \
        [fr.error_name(c) for c in (0, 1, 8, 0xD, 0xE, 0xFFFFFFFF)]
