"""Every anomaly name sniffd can put on a record or count in its stats.

Names are stable snake_case strings: operators grep for them and alert on
them, so a name, once shipped, is never renamed.  The README's anomaly table
is checked against this mapping by the test suite.
"""

ANOMALIES: dict[str, str] = {
    # --- decode (one frame) ---
    "truncated_frame": "A frame is shorter than its link, tunnel, IP or TCP headers claim; the frame is dropped.",
    "snaplen_truncated": "The capture kept fewer bytes than were on the wire (snaplen); the payload that was cut is treated as lost (a gap).",
    "bad_ip_header": "An IPv4/IPv6 header is malformed (bad version, header length or total length); the frame is dropped.",
    "bad_tcp_header": "A TCP header is malformed (data offset below 5 or past the packet); the frame is dropped.",
    "bad_tunnel_header": "A tunnel header cannot be right (an unknown PPPoE, Geneve or ERSPAN version, the GRE routing bit); the frame is dropped.",
    "tunnel_too_deep": "More than 16 encapsulation headers (VLAN tags, MPLS labels, tunnels) around one packet; the frame is dropped.",
    "timestamp_backwards": "A packet's timestamp is earlier than one already seen; sniffd's clock does not go back, the packet is processed at the later time.",
    # --- IP fragments ---
    "ip_fragment_timeout": "An IP datagram's fragments did not all arrive within the fragment timeout; what was held is dropped.",
    "ip_fragment_overflow": "The cap on fragments held (per datagram or in total) was reached; the oldest partial datagram is dropped.",
    "ip_fragment_overlap": "Fragments of one datagram overlap with different contents; the whole datagram was dropped, as Linux and RFC 5722 do (its connection's record says so when the first fragment names it).",
    # --- TCP reassembly ---
    "tcp_overlap_conflict": "Two copies of the same TCP sequence range carry different bytes; the first copy is kept.",
    "tcp_gap": "TCP data never arrived (capture loss or a missed segment) and was skipped after the bounded wait.",
    "tcp_buffer_overflow": "Out-of-order data for a connection (or in total) reached its buffer bound; the wait was cut short and the missing data treated as a gap.",
    "midstream_pickup": "The connection was already open when capture started (no SYN seen); parsing started at the first request or status line found.",
    "conn_evicted": "The connection table was full; the least recently active connection was flushed and forgotten to make room.",
    "tcp_rst_ignored": "An RST whose sequence number the receiver would not accept (RFC 5961: outside what was delivered and what the sender sent) was ignored; the connection goes on.",
    "tcp_syn_ignored": "A SYN (or SYN-ACK) with another initial sequence number came on an open connection; a receiver answers it with a challenge ACK, so it was ignored (RFC 5961 section 4).",
    "tcp_fin_ignored": "A FIN outside the receiver's window (before bytes already delivered, or far past anything the sender sent) was ignored; the direction goes on.",
    "tcp_data_after_rst": "Data came after an accepted RST on this connection; it was logged on a connection that goes on where the reset one stopped.",
    "tcp_syn_data": "A SYN (or SYN-ACK) carried data that the peer did not acknowledge (no TCP Fast Open); it was dropped, as Linux drops it.",
    "tcp_urgent_data": "A segment carried urgent data (URG); the bytes are logged in line, but a receiver may have taken the urgent byte out of band.",
    "ip_ttl_changed": "A data segment's TTL / hop limit is far (more than 8) from the one its direction's data started with: a decoy meant to expire before the receiver, or a route change.",
    "tcp_bad_checksum": "A data segment had a wrong TCP checksum; a receiver drops it, so its bytes waited aside: replaced by a valid copy, or used when they had to be given up (acknowledged by the receiver, gap timeout, end of connection).",
    # --- HTTP ---
    "http_parse_error": "A start line could not be parsed (neither a request nor a status line, with a header section after it); the message still took its place in the pairing, its record keeps the line in start_line.",
    "http_resync": "Bytes were skipped to find this request or status line: junk, the rest of a message that could not be framed, or the start of a mid-stream connection.",
    "http_resumed": "An earlier record of this connection had a message that could not be parsed or framed, or junk before it; parsing resumed at a start line, so this record is only as sure as that resumption.",
    "non_http": "A connection that is neither HTTP/1.x nor TLS (SSH, another protocol, garbage); it is counted and ignored.",
    "message_interrupted": "A gap outside a body of known length ended the message early; the fields seen before the gap are kept.",
    "body_gap": "Bytes inside a body of known length were lost; the transaction continues and the lost count is in missed_bytes.",
    "message_incomplete": "The connection ended (FIN, RST, idle timeout or end of input) before the message was complete.",
    "response_missing": "The request got no response before its connection ended or timed out, or its response was lost in a capture gap (response is null).",
    "request_missing": "A response was seen with no request to pair it with (request is null): a mid-stream pickup, a request lost in a capture gap, or an unsolicited response.",
    "pairing_uncertain": "Bytes were lost where the TCP acknowledgements cannot tell which request a response answers (pipelined requests lost in part); the transactions concerned are written unpaired.",
    "http_start_line_lenient": "The request or status line was accepted leniently: whitespace before it, several spaces or tabs between its parts, spaces inside the target, or no target.",
    "http_version_invalid": "The HTTP version is not HTTP/digit.digit (HTTP/1., HTTP/11, http/1.1); the record keeps it as sent.",
    "http_uri_control_chars": "The request target contains control bytes or DEL; they are kept as sent.",
    "http_status_invalid": "The status code is not three digits (2XX, missing); status is null.",
    "http_header_no_colon": "A header line had no colon; it was skipped.",
    "http_header_invalid": "A header field name is not a token, or has whitespace before its colon (servers must reject it); the field is kept under its trimmed name.",
    "http_obs_fold": "A header value was continued on the next line (obs-fold, RFC 9112 section 5.2); it was unfolded with one space.",
    "http_te_and_cl": "A message has both Transfer-Encoding and Content-Length; chunked framing wins (RFC 9112 section 6.3).",
    "http_te_invalid": "Transfer-Encoding's final coding is not chunked, or a coding is unknown; a response runs to the close, a request is chunked if chunked is listed, else bodiless. Or chunked is applied more than once: read as chunked.",
    "http_cl_conflict": "Several Content-Length values differ; the first is used.",
    "http_cl_leading_zeros": "Content-Length has leading zeros; it is read as decimal.",
    "http_cl_invalid": "Content-Length is not a decimal number below 2^63 (a sign, other characters, overflow); a request has no body, a response runs to the close.",
    "http_chunk_invalid": "A chunk-size line is not hexadecimal or overflows; the message ends there and parsing resynchronises.",
    "http_ambiguous_framing": "Servers and proxies could disagree on where this message ends (Transfer-Encoding with Content-Length, differing or odd Content-Length, a final coding other than chunked, obs-fold or a malformed name on a framing header): a request-smuggling shape.",
    "http_upgrade": "The connection switched protocols (101 Switching Protocols, or a CONNECT tunnel that does not carry plain HTTP); this transaction is logged and the rest of the connection is not parsed as HTTP.",
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

# --- TLS (sniffd.tls, where the names and meanings are written) ---
from sniffd.tls.anomalies import TLS_ANOMALIES  # noqa: E402

ANOMALIES.update(TLS_ANOMALIES)

# --- HTTP/2 in clear (sniffd.http2, where the names and meanings are written) ---
from sniffd.http2.anomalies import H2_ANOMALIES  # noqa: E402

ANOMALIES.update(H2_ANOMALIES)
