"""Every anomaly name sniffd can put on a record or count in its stats.

Names are stable snake_case strings: operators grep for them and alert on
them, so a name, once shipped, is never renamed.  The README's anomaly table
is checked against this mapping by the test suite.
"""

ANOMALIES: dict[str, str] = {
    # --- decode (one frame) ---
    "truncated_frame": "A frame is shorter than its link, IP or TCP headers claim; the frame is dropped.",
    "snaplen_truncated": "The capture kept fewer bytes than were on the wire (snaplen); the payload that was cut is treated as lost (a gap).",
    "bad_ip_header": "An IPv4/IPv6 header is malformed (bad version, header length or total length); the frame is dropped.",
    "bad_tcp_header": "A TCP header is malformed (data offset below 5 or past the packet); the frame is dropped.",
    "timestamp_backwards": "A packet's timestamp is earlier than one already seen; sniffd's clock does not go back, the packet is processed at the later time.",
    # --- IP fragments ---
    "ip_fragment_timeout": "An IP datagram's fragments did not all arrive within the fragment timeout; what was held is dropped.",
    "ip_fragment_overflow": "The cap on fragments held (per datagram or in total) was reached; the oldest partial datagram is dropped.",
    "ip_fragment_overlap": "Fragments of one datagram overlap with different contents; the first copy is kept.",
    # --- TCP reassembly ---
    "tcp_overlap_conflict": "Two copies of the same TCP sequence range carry different bytes; the first copy is kept.",
    "tcp_gap": "TCP data never arrived (capture loss or a missed segment) and was skipped after the bounded wait.",
    "tcp_buffer_overflow": "Out-of-order data for a connection (or in total) reached its buffer bound; the wait was cut short and the missing data treated as a gap.",
    "midstream_pickup": "The connection was already open when capture started (no SYN seen); parsing started at the first request or status line found.",
    "conn_evicted": "The connection table was full; the least recently active connection was flushed and forgotten to make room.",
    # --- HTTP ---
    "http_parse_error": "Bytes on the connection were not valid HTTP/1.x; the message was ended there and the parser resynchronised at the next request or status line.",
    "http_resync": "Bytes were skipped to find the next request or status line (after a parse error, a gap or a mid-stream pickup).",
    "non_http": "A connection's data never looked like HTTP/1.x; it is counted and ignored.",
    "message_interrupted": "A gap outside a body of known length ended the message early; the fields seen before the gap are kept.",
    "body_gap": "Bytes inside a body of known length were lost; the transaction continues and the lost count is in missed_bytes.",
    "message_incomplete": "The connection ended (FIN, RST, idle timeout or end of input) before the message was complete.",
    "response_missing": "The request got no response before its connection ended or timed out (response is null).",
    "request_missing": "A response was seen with no request to pair it with (request is null), e.g. after a mid-stream pickup.",
    "http_upgrade": "The connection switched protocols (101 Switching Protocols, or CONNECT answered 2xx); this transaction is logged and the rest of the connection is not parsed as HTTP.",
    "header_limit": "A message had more header bytes or header fields than max_header_bytes / max_header_count; the excess fields are not recorded.",
    "pending_overflow": "More requests were awaiting a response on one connection than max_pending_requests; the oldest was written unanswered.",
    "uri_limit": "A request target was longer than max_uri_bytes; the record keeps its first max_uri_bytes bytes.",
    "memory_ooo_dropped": "Memory budget, step 1: buffered out-of-order data of the connections idle longest (and partial IP datagrams) was dropped; the holes became gaps.",
    "memory_bodies_dropped": "Memory budget, step 2: captured bodies stopped being kept until memory use fell under half the budget.",
    "memory_evicted": "Memory budget, step 3: the least recently active connections were flushed and forgotten; their open transactions were written.",
    "idle_timeout": "The connection was idle longer than idle_timeout_s and was flushed; open transactions were written.",
    "internal_error": "A bug in sniffd was hit while processing a packet; that connection's state was discarded and processing went on. Please report it with the capture.",
    "cut_by_shutdown": "sniffd was stopped while this transaction was open; it was written as it stood.",
}
