"""Tunable bounds of the processing stages, shared by the config file, the CLI
and the pipeline.  Field names are the config keys (section ``[limits]``,
or the section named above a group).

Every default says why it is what it is; every bound has a named anomaly for
what happens when it is reached (sniffd/anomalies.py).
"""

from __future__ import annotations

from dataclasses import dataclass

# [output] format: the record as sniffd writes it ("json", README "The
# record") or as Elastic Common Schema documents ("ecs", README "ECS output").
OUTPUT_FORMATS = ("json", "ecs")


@dataclass(frozen=True, slots=True)
class Settings:
    """The bounds and switches below, each with its default and the reason for it.

    (A docstring of its own also spares ``dataclass`` writing one from
    ``inspect.signature`` of its 30 fields: ~1.3 M instructions of every
    ``sniffd read``'s start-up.)"""

    # Connections with no packet for this long are flushed.  HTTP keep-alive
    # servers close idle connections after 5-120 s (nginx 75 s, Apache 5 s);
    # 300 s outlasts all common ones without holding dead flows for long.
    idle_timeout_s: float = 300.0
    # How long out-of-order data waits for a missing segment before the hole
    # is declared a gap.  A retransmission normally arrives within one RTO
    # (RFC 6298: 1 s minimum, commonly 200 ms on Linux); 10 s leaves room for
    # backed-off retransmits without holding buffers indefinitely.
    gap_timeout_s: float = 10.0
    # Most connections tracked at once; at the cap the least recently active
    # one is flushed (conn_evicted).  ~100 k covers a busy gateway's
    # concurrent HTTP flows; each costs about 2 KiB when idle.
    max_connections: int = 100_000
    # Out-of-order bytes buffered per direction of one connection.  Four
    # times a typical 64 KiB receive window: enough for real reordering,
    # small enough that 1000 hostile connections stay bounded.
    max_conn_buffer_bytes: int = 256 * 1024
    # Out-of-order bytes buffered across all connections; at the bound the
    # connection holding the most is forced to skip its hole (tcp_buffer_overflow).
    max_total_buffer_bytes: int = 64 * 1024 * 1024
    # RFC 791 suggests 15 s for reassembly; Linux uses 30 s (ipfrag_time).
    frag_timeout_s: float = 30.0
    # Datagrams being reassembled at once, and fragments held per datagram
    # (a 64 KiB datagram at the 68-byte minimum MTU needs ~1000).
    max_frag_datagrams: int = 4096
    max_frags_per_datagram: int = 1024
    # Requests awaiting a response on one connection (pipelining depth).
    # Browsers pipeline a handful at most; 100 tolerates aggressive clients.
    max_pending_requests: int = 100
    # Header section bytes and count for one message: llhttp's and nginx's
    # defaults sit at 8-80 KiB; 64 KiB fits real cookies, bounds hostile ones.
    # A message whose header section grows past it is ended (header_limit)
    # and the reader resynchronises: an unfinished header section is held
    # (and charged to the memory budget) up to this many bytes and never
    # more, so this is also what bounds a 10 MB header line.
    max_header_bytes: int = 64 * 1024
    max_header_count: int = 256
    # Longest request target kept in a record; longer ones are cut
    # (uri_limit).  Servers refuse beyond 8 KiB (nginx, Apache 8190).
    max_uri_bytes: int = 8192
    # One budget for everything sniffd holds per connection: the table
    # itself, reassembly and fragment buffers, open messages' headers,
    # captured bodies.  Past it sniffd degrades in a fixed order (see
    # README, "Memory budget") instead of growing.  512 MiB holds ~100 k
    # connections with requests in flight and their buffers.
    memory_budget_mb: float = 512.0

    # --- TCP (config section [tcp]) ---
    # TCP checksums: "on" drops every data segment with a bad one (a
    # receiver would), "off" checks none, "auto" checks a direction only
    # once two of its packets in a row showed valid checksums (one wrong
    # checksum in 65,536 is right by chance), and never a segment larger
    # than a full one: a capture taken on a host that offloads checksums records
    # wrong ones on every packet it sends, and one that merges segments
    # (GRO) records super-segments whose checksum the NIC checked; those
    # transactions are real (tcp_bad_checksum).
    verify_checksums: str = "auto"

    # --- privacy (config section [privacy]) ---
    # Credentials never reach the log: on by default (README, "Redaction").
    redact: bool = True
    # Headers and query/form/JSON parameter names redacted in addition to
    # the built-in lists (sniffd.redact.DEFAULT_HEADERS / DEFAULT_PARAMS).
    redact_headers: tuple[str, ...] = ()
    redact_params: tuple[str, ...] = ()
    # The token key (hex, >= 16 bytes), or a file holding it.  Neither:
    # a random key per run, so tokens compare only within one run; the
    # gateway install generates a key file so they compare across restarts.
    redact_key: str = ""
    redact_key_file: str = ""

    # --- body capture (config section [bodies]); off by default ---
    capture_bodies: bool = False
    # Raw bytes kept per message: enough for API payloads and form posts.
    max_body_bytes: int = 64 * 1024
    # Hard cap on a decompressed body: a decompression bomb costs this much.
    max_decoded_bytes: int = 1024 * 1024
    # Media types kept (an empty tuple: sniffd.bodies.DEFAULT_CONTENT_TYPES).
    body_content_types: tuple[str, ...] = ()

    # --- records (config section [output]) ---
    # The name every record carries in ``sensor``, to tell the logs of
    # several gateways apart once shipped together.  "": the host name
    # (socket.gethostname(), read once when the pipeline starts), which is
    # what an operator would type and needs no configuring on one box.
    sensor: str = ""
    # How records are written: "json", the native record, or "ecs", the same
    # record under Elastic Common Schema names (sniffd.ecs), for Filebeat or
    # Elastic Agent to ship without an ingest pipeline.  Default "json": the
    # format every existing consumer of the log reads.
    format: str = "json"

    # --- flow pcaps (config section [flow_pcaps]); off by default ---
    # The directory the chosen connections' pcaps are written to; "" is
    # off (README, "Flow pcaps").
    flow_pcap_dir: str = ""
    # Which connections (sniffd.flowpcap.When): anomalies and server errors
    # are what an incident responder opens first; "all" writes every one.
    flow_pcap_when: tuple[str, ...] = ("anomaly", "status>=500")
    # One connection's file: 16 MiB holds a handshake, the heads and
    # bodies of an API conversation; a bulk download is cut there
    # (flow_pcap_packets_cut), it is not what forensics opens first.
    flow_pcap_max_file_mb: float = 16.0
    # Every flow pcap in the directory: 1 GiB, the default output's 10
    # rotated files of 100 MiB again; the oldest files go first.
    flow_pcap_max_total_mb: float = 1024.0
    # Frames held for connections whose fate is not known yet: 64 MiB, an
    # eighth of the default memory budget (they are charged to it too).
    flow_pcap_max_buffer_mb: float = 64.0
