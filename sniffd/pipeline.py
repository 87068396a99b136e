"""The pipeline: the one module that wires every processing stage together.

    frame --decode--> segment | fragment --fragments--> datagram --decode-->
    segment --flows (reassembly + http | tls)--> transactions | TLS records --records--> dicts

Sans-I/O: ``feed``/``expire``/``flush`` take values and return record dicts;
the caller (``readfile`` offline, ``daemon`` live) owns capture and sink.

Time is packet time (Zeek's ``network_time``): each frame's timestamp moves
the clock forward, never back (a backwards timestamp is counted and the
frame processed at the current time).  Live, ``expire(wall_clock)`` moves it
when no packet comes, so a quiet link still flushes idle connections.
"""

from __future__ import annotations

import os
import _socket as socket  # socket.py's C core: socket.py's IntEnums cost ~14 M instructions at start-up
import struct
from collections import namedtuple

from sniffd import records
from sniffd.decode import LINK_HEADER, Fragment, Segment, ctx_key, decode_batch, decode_frame, decode_transport, flow_hash
from sniffd.flows import Connection, FlowTable
from sniffd.fragments import Defragmenter
from sniffd.http import Transaction
from sniffd.redact import DEFAULT_HEADERS, DEFAULT_PARAMS, Redactor
from sniffd.settings import Settings
from sniffd.tls import TlsRecord

# A batch of one frame (Pipeline.feed): what feed_batch reads of capture.Batch.
_OneFrame = namedtuple("_OneFrame", "buf meta epoch")
_META_ONE = struct.Struct("=4I").pack
_META_AT = struct.Struct("=4I").unpack_from

# Housekeeping (gap and idle timeouts) runs once per second of packet time:
# often enough for second-granularity timeouts, rare enough to cost nothing.
EXPIRE_EVERY_S = 1.0


# The test suite sets SNIFFD_STRICT=1 so that a bug shows as a crash there;
# in production a bug hit by one packet must not take the daemon down.
STRICT = os.environ.get("SNIFFD_STRICT") == "1"


class Pipeline:
    def __init__(self, settings: Settings | None = None, decode=decode_frame, snaplen: int = 0,
                 shard: tuple[int, int] | None = None, redact_key: bytes | None = None,
                 interface: str | None = None, uid_salt: int | None = None) -> None:
        """``redact_key``: the token key (the config loader reads the
        configured one); None with redaction on: a random key for this run.
        ``interface``: the capture interface every record names (``sniffd
        run``); None (``sniffd read``): a file names none reliably.
        ``uid_salt``: the connection uids' salt (``records.Uids``); None: 96
        random bits, so that no two pipelines (restarts, workers, shards)
        share uids."""
        self.settings = settings or Settings()
        # Every record says where it was captured.  The host name is read
        # once, here: "" in the config means it (settings.Settings.sensor).
        self.sensor = self.settings.sensor or socket.gethostname()
        self.interface = interface
        if uid_salt is None:
            uid_salt = int.from_bytes(os.urandom(records.UID_SALT_BITS // 8), "big")
        self._uid = records.Uids(uid_salt)
        # The capture's snapshot length (0: unknown).  Sources that do not
        # report each frame's wire length (pcapy-ng's next_batch) tell a
        # snaplen cut from a lying IP length by it.
        self.snaplen = snaplen
        # (k, n): process only connections whose flow_hash % n == k, so n
        # processes can share one capture (sniffd read --workers n).  Every
        # shard sees every frame's time (so all keep the very same clock and
        # housekeeping ticks as one process would) and decodes fragments,
        # since only the first one has ports.
        self.shard = shard
        # Frames that belong to no connection (not TCP, undecodable, IP
        # fragments) are seen by every shard; only shard 0 counts them.
        self._counts_frames = shard is None or shard[0] == 0
        s = self.settings
        self._decode = decode
        self.flows = FlowTable(s)
        redactor = None
        if s.redact:
            key = redact_key if redact_key is not None else os.urandom(32)
            redactor = Redactor(key, DEFAULT_HEADERS | {h.lower() for h in s.redact_headers},
                                DEFAULT_PARAMS | {p.lower() for p in s.redact_params})
        if s.capture_bodies:
            from sniffd.bodies import DEFAULT_CONTENT_TYPES, BodyCapture  # only then: it pulls in brotli

            self.flows.bodies = BodyCapture(s.max_body_bytes, s.max_decoded_bytes,
                                            s.body_content_types or DEFAULT_CONTENT_TYPES, redactor)
        self.privacy = records.Privacy(redactor, s.capture_bodies)
        # TCP checksums are computed by the decoder unless they are not
        # checked at all (the flow table applies verify_checksums).
        self.verify = s.verify_checksums != "off"
        self.frags = Defragmenter(s.frag_timeout_s, s.max_frag_datagrams, s.max_frags_per_datagram)
        # One memory budget covers the defragmenter too (memory_budget_mb).
        self.flows.external_bytes = lambda: self.frags.memory
        self.flows.shed_external = self.frags.drop_all
        # Flow pcaps (sniffd.flowpcap), when a directory is set: fed each
        # frame the flow table took and each record; None costs the frame
        # loop one test.
        self.tap = None
        self._frag_at = -1  # the frame that completed a fragmented datagram
        if s.flow_pcap_dir:
            self._start_flow_pcaps(s)
        self.now: float | None = None
        self._next_expire = 0.0
        self.packets = 0
        self.bytes = 0
        self.records = 0
        self.non_tcp = 0
        self.counts: dict[str, int] = {}
        # When a list (sniffd read --workers), each record's place in the
        # output one process would write is appended to it: (frames before
        # it, phase, its connection's order key), phase 0 for housekeeping
        # before that frame, 1 for the frame itself, 2 for the final flush.
        # The parent merges the shards' records by it.
        self.emit_keys: list[tuple] | None = None
        self.frame_no = 0  # frames given to feed_batch, every shard's
        self._emit_at = (0, 1)

    # ------------------------------------------------------------- public

    def feed(self, ts: float, linktype: int, frame: bytes, wirelen: int | None = None) -> list[dict]:
        """One frame: a batch of one (``feed_batch`` is the one path).
        ``wirelen``: the frame's length on the wire when the source knows it
        (it tells a snaplen cut from a lying IP length)."""
        sec = int(ts)
        usec = round((ts - sec) * 1_000_000)
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        epoch = sec - (sec & 0xFFFFFFFF)  # meta holds the low 32 bits (capture.Batch.epoch)
        return self.feed_batch(linktype, _OneFrame(frame, _META_ONE(sec - epoch, usec, 0, len(frame)), epoch), (wirelen,))

    def feed_batch(self, linktype: int, batch, wirelens: tuple | None = None) -> list[dict]:
        """All frames of one capture batch (``capture.Batch``); ``wirelens``,
        when the source has them, each frame's length on the wire.  The
        per-frame work is kept in locals: this loop is where sniffd spends
        its time.

        decode.decode_batch (C, with a Python reference beside it) runs the
        clock over the whole batch and decodes its common frames (Ethernet or
        SLL, IPv4 without options, whole unfragmented TCP) in one call; every
        other frame comes back as its offset and goes through decode_frame
        here, which tries the same checks again and decides.
        tests/pcap/test_batch_path.py holds the C and Python decoders to the
        same output on every test capture."""
        out: list[dict] = []
        decode = self._decode
        verify = self.verify
        flows_feed = self.flows.feed
        buf = batch.buf
        shard = self.shard
        mine, nshards = shard if shard is not None else (0, 1)
        # Batch decoding only stands in for decode_frame (tests build
        # pipelines on the dpkt decoder to compare the two).
        link = LINK_HEADER.get(linktype, 0) if decode is decode_frame else 0
        tap = self.tap
        first = self.frame_no
        items, end_now, self._next_expire, self.frame_no, backwards = decode_batch(
            buf, batch.meta, link, mine, nshards, self.now if self.now is not None else float("-inf"),
            self._next_expire, self.frame_no, EXPIRE_EVERY_S, verify, batch.epoch)
        if backwards and self._counts_frames:
            self.counts["timestamp_backwards"] = self.counts.get("timestamp_backwards", 0) + backwards
        count = 0
        nbytes = 0
        for now, seg, caplen, frame_no in items:
            if seg is None:  # housekeeping is due at this frame
                self.now = now
                self._emit_at = (frame_no, 0)
                out.extend(self.expire(now))
                continue
            if seg.__class__ is int:
                frame = buf[seg : seg + caplen]
                wirelen = wirelens[0] if wirelens is not None else None
                seg = decode(linktype, frame, verify)
                if seg.__class__ is not Segment:
                    if self._counts_frames:
                        count += 1
                        nbytes += wirelen if wirelen is not None else caplen
                    self.now = now
                    seg = self._other(seg, now, frame, wirelen)
                    if seg is None:
                        continue
                    self._frag_at = frame_no
                    if shard is not None and flow_hash(seg[0], seg[1], seg[2], seg[3]) % nshards != mine:
                        continue  # a reassembled datagram of another shard's connection
                elif shard is not None and flow_hash(seg[0], seg[1], seg[2], seg[3]) % nshards != mine:
                    continue  # decode_batch sorted the common frames; these, alike
                else:
                    count += 1
                    nbytes += wirelen if wirelen is not None else caplen
                    if seg[8] and not self._cut_by_capture(frame, wirelen):
                        self._count("truncated_frame")
                        continue
            else:
                count += 1
                nbytes += caplen
            try:
                done = flows_feed(seg, now)
            except Exception:
                if STRICT:
                    raise
                # A bug, not bad traffic: count it, forget that connection's
                # state (it may be inconsistent) and keep going.
                self._count("internal_error")
                self.flows.discard(seg)
                continue
            if done:
                self.now = now
                self._emit_at = (frame_no, 1)
                out.extend(self._records(done))
            if tap is not None:
                self._keep(tap, linktype, batch, frame_no, frame_no - first - 1, seg, wirelens)
        if end_now != float("-inf"):
            self.now = end_now
        self.packets += count
        self.bytes += nbytes
        return out

    def expire(self, now: float) -> list[dict]:
        if self.now is None or now > self.now:
            self.now = now
        now = self.now
        for name in self.frags.expire(now):
            self._count(name)
        if self.tap is not None:
            self.tap.tick()
        return self._records(self.flows.expire(now))

    def flush(self, reason: str = "end_of_input") -> list[dict]:
        """Write every open transaction.  ``reason`` "shutdown" marks them
        ``cut_by_shutdown``; "end_of_input" (a file ended) marks nothing
        beyond what each one lacks (response_missing, message_incomplete)."""
        now = self.now if self.now is not None else 0.0
        anomaly = "cut_by_shutdown" if reason == "shutdown" else None
        self._emit_at = (self.frame_no, 2)
        out = self._records(self.flows.close_all(anomaly, now))
        if self.tap is not None:
            self.tap.close()
        return out

    @property
    def stats(self) -> dict:
        anomalies = dict(self.counts)
        for k, v in self.flows.counts.items():
            anomalies[k] = anomalies.get(k, 0) + v
        return {
            "packets": self.packets,
            "bytes": self.bytes,
            "non_tcp_packets": self.non_tcp,
            "open_connections": len(self.flows),
            "buffered_bytes": self.flows.buffered,
            "memory_estimate_bytes": self.flows.estimate(),
            "memory_budget_bytes": self.flows.budget,
            "fragments_held": len(self.frags),
            "records": self.records,
            "anomalies": dict(sorted(anomalies.items())),
            **(self.tap.stats if self.tap is not None else {}),
        }

    # ---------------------------------------------------------- internals

    def _count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def _start_flow_pcaps(self, s: Settings) -> None:
        from sniffd.flowpcap import FlowPcaps, When  # only then

        MiB = 1024 * 1024
        self.tap = tap = FlowPcaps(s.flow_pcap_dir, When(s.flow_pcap_when), int(s.flow_pcap_max_file_mb * MiB),
                                   int(s.flow_pcap_max_total_mb * MiB), int(s.flow_pcap_max_buffer_mb * MiB),
                                   self._uid, self.shard)
        # Their held frames are memory the budget covers, shed in its step 1.
        frags = self.frags
        self.flows.external_bytes = lambda: frags.memory + tap.held
        self.flows.shed_external = lambda: frags.drop_all() + tap.shed()
        # The flow table says which connections it forgets.
        self.flows.gone = tap.gone

    def _keep(self, tap, linktype: int, batch, frame_no: int, index: int, seg, wirelens) -> None:
        """Flow pcaps: frame ``index`` of ``batch`` went to the flow table
        as ``seg``; give it to the connection it reached (none: an RST or a
        segment for no connection)."""
        if tap.gone:
            tap.settle()
        if frame_no == self._frag_at:
            tap.fragment()
            return
        ctx = seg[11]
        key = (seg[0], seg[2], seg[1], seg[3]) if ctx is None else (seg[0], seg[2], seg[1], seg[3], ctx_key(ctx))
        entry = self.flows.conns.get(key)
        if entry is None:
            return
        sec, usec, off, caplen = _META_AT(batch.meta, index * 16)
        wirelen = wirelens[0] if wirelens is not None and wirelens[0] is not None else caplen + seg[8]
        tap.packet(entry[0], linktype, batch.epoch + sec, usec, batch.buf[off : off + caplen], wirelen)

    def _cut_by_capture(self, frame: bytes, wirelen: int | None) -> bool:
        """Was this frame shortened by the capture (snaplen), rather than
        sent with an IP length that claims more than it carries?"""
        if wirelen is not None:
            return wirelen > len(frame)
        return not self.snaplen or len(frame) >= self.snaplen

    def _other(self, value, now: float, frame: bytes = b"", wirelen: int | None = None) -> Segment | None:
        if value is None:
            if self._counts_frames:
                self.non_tcp += 1
            return None
        if value.__class__ is str:
            if self._counts_frames:
                self._count(value)
            return None
        if value.__class__ is Fragment:
            if value.lost and not self._cut_by_capture(frame, wirelen):
                self._count("truncated_frame")
                return None
            whole, anomalies = self.frags.feed(value, now)
            if self._counts_frames:
                for name in anomalies:
                    self._count(name)
            if self.frags.overlapped:
                # The connection whose datagram was dropped says so on its record.
                for src, dst, sport, dport, ctx in self.frags.overlapped:
                    self.flows.note_flow(src, dst, sport, dport, ctx, ("ip_fragment_overlap",))
                self.frags.overlapped = []
            if whole is None:
                return None
            seg = decode_transport(*whole)
            return self._other(seg, now) if seg.__class__ is not Segment else seg
        return None

    def _records(self, done: list[tuple[Connection, Transaction]]) -> list[dict]:
        out = []
        keys = self.emit_keys
        sensor, interface = self.sensor, self.interface
        tap = self.tap
        for conn, txn in done:
            if conn.cid is None:
                (cip, cport), (sip, sport) = conn.client, conn.server
                conn.cid = records.community_id(cip, cport, sip, sport)
                conn.client_rec = {"ip": records.ip_text(cip), "port": cport}
                conn.server_rec = {"ip": records.ip_text(sip), "port": sport}
                conn.encap_rec = None if conn.ctx is None else records.encapsulation(conn.ctx)
                if conn.uid is None:  # else carried over (FlowTable._after_rst)
                    conn.uid = self._uid()
            if txn.__class__ is TlsRecord:
                rec = records.build_tls(txn, conn.client_rec, conn.server_rec, conn.cid, conn.uid, sensor, interface,
                                        conn.encap_rec)
                for name in rec["anomalies"]:
                    self._count_record_anomaly(name)
                out.append(rec)
                if tap is not None:
                    tap.record(conn, rec)
                if keys is not None:
                    keys.append(self._emit_at + conn.order)
                continue
            if txn.request is None and txn.response is None:
                continue
            rec = records.build(txn, conn.client_rec, conn.server_rec, conn.cid, conn.uid, sensor, interface,
                                self.privacy, conn.encap_rec)
            if rec["request"] is None and rec["response"] is None:
                continue
            for name in rec["anomalies"]:
                self._count_record_anomaly(name)
            out.append(rec)
            if tap is not None:
                tap.record(conn, rec)
            if keys is not None:
                keys.append(self._emit_at + conn.order)
        self.records += len(out)
        if tap is not None:
            tap.settle()
        return out

    def _count_record_anomaly(self, name: str) -> None:
        # Transport anomalies are counted where they happen (flow table);
        # HTTP-level ones are counted once per record that carries them.
        if name in _COUNTED_BY_FLOWS:
            return
        self._count(name)


_COUNTED_BY_FLOWS = frozenset((
    "tcp_gap", "tcp_overlap_conflict", "tcp_buffer_overflow", "snaplen_truncated",
    "midstream_pickup", "conn_evicted", "idle_timeout", "cut_by_shutdown", "http_upgrade", "non_http",
    "memory_ooo_dropped", "memory_bodies_dropped", "memory_evicted",
    "tcp_rst_ignored", "tcp_syn_ignored", "tcp_fin_ignored", "tcp_syn_data", "tcp_urgent_data", "ip_ttl_changed",
    "tcp_bad_checksum", "ip_fragment_overlap",
))
