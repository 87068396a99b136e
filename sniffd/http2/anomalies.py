"""The anomaly names the HTTP/2 stage puts on records (or counts in
``H2Connection.loose`` when no stream was touched), with their meaning, to
be merged into ``sniffd.anomalies.ANOMALIES`` and the README's table.

It also uses these HTTP/1 names, with the meaning they have there:
``header_limit``, ``http_status_invalid``, ``body_gap``,
``message_incomplete``, ``request_missing``, ``response_missing``,
``memory_bodies_dropped``, and whatever the caller passes to ``close`` /
``note`` (idle_timeout, conn_evicted, tcp_gap ...).
"""

H2_ANOMALIES: dict[str, str] = {
    "http2_bad_preface": "An HTTP/2 connection did not start as RFC 9113 section 3.4 says (the client's 24-byte preface, then a SETTINGS frame from each side); that direction is not read further.",
    "http2_gap": "Bytes of an HTTP/2 connection were lost where it touched this stream: a frame other than DATA was dropped, or the frame boundaries were lost and the direction is not read further (its messages in progress end here).",
    "http2_hpack_desync": "This stream's header section was not decoded: an earlier header block of the same direction was lost or could not be decoded, so the HPACK dynamic table is unknown. method, uri, status are null and headers empty; timing, body length and END_STREAM come from the frames.",
    "http2_hpack_error": "A header block could not be decoded (hpack rejected it: a bad index, bad Huffman data, a table size update out of place); its fields are unknown and later blocks of that direction are not decoded (http2_hpack_desync).",
    "http2_hpack_table_size": "An HPACK encoder used a dynamic table larger than the receiver allowed with SETTINGS_HEADER_TABLE_SIZE (RFC 7541 section 4.2); a receiver fails the connection. Decoded anyway.",
    "http2_hpack_table_limit": "An HPACK encoder used a dynamic table larger than sniffd keeps (64 KiB); that direction's headers are not decoded from this block on.",
    "http2_header_block_limit": "A header block (HEADERS or PUSH_PROMISE with its CONTINUATION frames) was larger than sniffd keeps to decode (256 KiB); its fields are unknown and later blocks of that direction are not decoded.",
    "http2_header_list_limit": "A header block decoded to more than 1 MiB of fields (RFC 7541 sizes); decoding stopped, the fields are unknown and later blocks of that direction are not decoded.",
    "http2_bad_continuation": "A header block was interrupted by another frame, or a CONTINUATION came with no header block open (RFC 9113 section 6.10: a connection error); the block's fields are unknown and later blocks of that direction are not decoded.",
    "http2_malformed_headers": "A header section breaks an RFC 9113 section 8.2/8.3 rule a receiver treats as malformed (an upper-case name, a connection-specific field, CR/LF/NUL, a pseudo-header repeated, unknown, misplaced or missing, Host differing from :authority); the fields are kept as sent.",
    "http2_content_length_mismatch": "A message's DATA did not add up to its Content-Length (RFC 9113 section 8.1.1: malformed); a proxy turning it into HTTP/1 would frame it differently (a request-smuggling shape).",
    "http2_protocol_error": "A frame broke an RFC 9113 framing rule (a wrong length, padding longer than the payload, a stream id of the wrong kind or zero, DATA before HEADERS or on a stream never opened, a second header section without END_STREAM, an invalid setting); the frame was ignored or read as far as it made sense.",
    "http2_stream_closed": "A frame came for a side of a stream after its END_STREAM (RFC 9113 section 5.1: STREAM_CLOSED); it was ignored.",
    "http2_frame_too_large": "A frame was longer than the receiver's SETTINGS_MAX_FRAME_SIZE (RFC 9113 section 4.2: FRAME_SIZE_ERROR); it was read anyway.",
    "http2_goaway_error": "A GOAWAY with an error code other than NO_ERROR ended the connection while this stream was open (h2_error names the code).",
    "http2_stream_limit": "More streams were open on one HTTP/2 connection than sniffd tracks (1,000); the oldest was written as it stood (end_reason stream_limit).",
}
