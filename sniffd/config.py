"""The daemon's configuration: one TOML file, checked whole before anything starts.

``load(path)`` reads the file with tomllib and returns a ``Config``;
``apply_overrides`` lays command-line flags over it; ``check_environment``
checks what the file alone cannot tell (the interface exists, the BPF filter
compiles, the user and group exist, the output directory exists).  Every
problem raises ``ConfigError`` with one line that names the file, the section
and the key, e.g.::

    config/sniffd.toml: [capture] snaplen: expected an integer, got 'big'

Unknown or misspelt sections and keys are errors (a typo that silently fell
back to a default would be found only when it mattered), with the closest
known name suggested.

The schema below is the single source of truth: section, key, type, default.
``config/sniffd.toml`` documents every key with the same default and why it
was chosen (tests/unit/test_config.py checks the two agree).  The ``[limits]``
keys are the fields of ``sniffd.settings.Settings``, taken from the dataclass
so the two cannot drift.
"""

from __future__ import annotations

import dataclasses
import difflib
import grp
import math
import os
import pwd
import tomllib
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sniffd.settings import OUTPUT_FORMATS, Settings

DEFAULT_CONFIG_PATH = "/etc/sniffd/sniffd.toml"

LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "console")


class ConfigError(Exception):
    """Bad configuration; the message is one line naming the file and key."""


@dataclass(frozen=True, slots=True)
class Key:
    type: type
    default: Any
    # Returns an error text ("must be ...") or None when the value is fine.
    # Every number's check is a Range (enforced below SCHEMA): no key takes
    # any number at all.
    check: Callable[[Any], str | None] | None = None


def _num(x: float) -> str:
    """A range end as the operator would write it: 262144, 0.01, 1099511627776."""
    return str(int(x)) if float(x).is_integer() else repr(float(x))


@dataclass(frozen=True, slots=True)
class Range:
    """The numbers a key accepts: ``low`` to ``high``, both included, and
    also 0 when ``off`` (0 then means "turned off")."""

    low: float
    high: float
    off: bool = False

    def __call__(self, value: Any) -> str | None:
        if self.low <= value <= self.high or (self.off and value == 0):
            return None
        zero = "0 (off) or " if self.off else ""
        shown = repr(value)
        if len(shown) > 24:  # a 400-digit integer: its size says enough
            shown = f"{shown[:12]}... ({len(shown)} digits)"
        return f"must be {zero}between {_num(self.low)} and {_num(self.high)}, got {shown}"

    def describe(self) -> str:
        """The range as the README and config/sniffd.toml write it: ``64..262144``."""
        return ("0 (off) or " if self.off else "") + f"{_num(self.low)}..{_num(self.high)}"


def _between(low: float, high: float, *, off: bool = False) -> Range:
    return Range(low, high, off)


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value not in choices:
            return f"must be one of {', '.join(choices)}, got {value!r}"
        return None

    return check


def _controls(value: str, allowed: str = "") -> str | None:
    """An error when ``value`` holds a control character (Unicode category
    Cc: NUL, C0, DEL, C1) other than those in ``allowed``.  A NUL cannot
    reach a system call (a C string ends there) and no other control
    character belongs in a name, a path or a filter."""
    for c in value:
        if c not in allowed and unicodedata.category(c) == "Cc":
            return f"must not contain control characters ({c!r}), got {value!r}"
    return None


# Linux's PATH_MAX is 4096 bytes with the terminating NUL, NAME_MAX 255: a
# longer path or name is refused by every system call (ENAMETOOLONG).
PATH_MAX_BYTES = 4095
NAME_MAX_BYTES = 255
# IFNAMSIZ is 16 with the terminating NUL (<linux/if.h>).
IFNAME_MAX_BYTES = 15


def _text(value: str) -> str | None:
    """Any string key: no control characters."""
    return _controls(value)


def _multiline_text(value: str) -> str | None:
    """A string that may be written over several lines (a BPF expression, a
    hex key): tab, LF and CR are white space there; no other control."""
    return _controls(value, "\t\n\r")


def _path(value: str) -> str | None:
    """A file path ("" allowed: the key's own check says if it may be empty)."""
    problem = _controls(value)
    if problem:
        return problem
    size = len(os.fsencode(value))
    if size > PATH_MAX_BYTES:
        return f"must be a path of at most {PATH_MAX_BYTES} bytes (PATH_MAX), got {size}"
    longest = max(len(os.fsencode(part)) for part in value.split("/"))
    if longest > NAME_MAX_BYTES:
        return f"must be a path whose names are at most {NAME_MAX_BYTES} bytes (NAME_MAX), got one of {longest}"
    return None


def _output_path(value: str) -> str | None:
    """A file path, "-", or a nats://HOST:PORT/SUBJECT URL (sniffd.natssink)."""
    from sniffd import natssink

    if natssink.is_nats_url(value):
        problem = _controls(value)
        if problem:
            return problem
        try:
            natssink.parse_url(value)
        except natssink.NatsUrlError as e:
            return f"bad NATS URL {natssink.shown_url(value)!r}: {e}"
        return None
    return "must not be empty" if not value else _path(value)


def _nats_stream(value: str) -> str | None:
    """A JetStream stream name ("" = any): no white space, '.', '*', '>', '/'
    or '\\' (the server refuses them), at most 255 characters."""
    problem = _controls(value)
    if problem:
        return problem
    if len(value) > 255:
        return f"must be at most 255 characters, got {len(value)}"
    bad = [c for c in value if c.isspace() or c in ".*>/\\"]
    if bad:
        return f"must be a stream name (no white space, '.', '*', '>', '/' or '\\'), got {value!r}"
    return None


def _interface(value: str) -> str | None:
    """A name the kernel accepts for an interface (net/core/dev.c
    dev_valid_name): 1 to 15 bytes, not "." or "..", no "/", ":" or white
    space; and no other control character."""
    problem = _controls(value)
    if problem:
        return problem
    size = len(os.fsencode(value))
    if not 1 <= size <= IFNAME_MAX_BYTES:
        return f"must be an interface name of 1 to {IFNAME_MAX_BYTES} bytes (IFNAMSIZ), got {value!r}"
    if value in (".", "..") or any(c in "/:" or c.isspace() for c in value):
        return f"must be an interface name (no '/', ':' or white space), got {value!r}"
    return None


# A sensor name is written in every record: a host name fits (RFC 1035 section
# 2.3.4: 253 characters; Linux's HOST_NAME_MAX is 64), and so does an
# FQDN-like label with some room; 255 characters bound what it adds to a line.
SENSOR_MAX_CHARS = 255


def _sensor(value: str) -> str | None:
    """[output] sensor: "" (the host name), or a name: at most 255
    characters, no control character, not only white space, none around it
    (it would be invisible in a log viewer and break exact matches)."""
    problem = _controls(value)
    if problem:
        return problem
    if len(value) > SENSOR_MAX_CHARS:
        return f"must be at most {SENSOR_MAX_CHARS} characters, got {len(value)}"
    if value != value.strip():
        return f"must not begin or end with white space, got {value!r}"
    return None


def _names(value: Any) -> str | None:
    for v in value:
        problem = _controls(v)
        if problem:
            return problem
    bad = [v for v in value if not v.strip()]
    return "names must not be empty" if bad else None


# RFC 9110 section 5.1: a field name is a token (section 5.6.2).
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _header_names(value: Any) -> str | None:
    problem = _names(value)
    if problem:
        return problem
    bad = [v for v in value if not set(v) <= _TCHAR]
    return f"expected header field names (RFC 9110 token characters), got {bad[0]!r}" if bad else None


def _media_types(value: Any) -> str | None:
    for v in value:
        problem = _controls(v)
        if problem:
            return problem
    bad = [v for v in value if v.count("/") != 1 or not all(v.split("/")) or any(c.isspace() for c in v)]
    return f"expected media types such as 'text/*' or 'application/json', got {bad[0]!r}" if bad else None


def parse_listen(value: str) -> tuple[str, int]:
    """``"ADDRESS:PORT"`` (``"[IPv6]:PORT"`` for IPv6) -> (address, port); ValueError
    saying what is wrong.  An IP address, not a host name: nothing is looked up."""
    import ipaddress

    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or port != port.strip():
        raise ValueError(f'expected "ADDRESS:PORT", e.g. "127.0.0.1:9853" or "[::1]:9853", got {value!r}')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        family = 6
    else:
        family = 4
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"expected an IP address before the port (no host names), got {value!r}") from None
    if address.version != family:
        raise ValueError(f'an IPv6 address is written in brackets ("[::1]:9853"), got {value!r}')
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"the port must be between 1 and 65535, got {value!r}")
    return str(address), int(port)


def _listen(value: str) -> str | None:
    """[metrics] listen: "" (no listener: textfile only) or "ADDRESS:PORT"."""
    if not value:
        return None
    try:
        parse_listen(value)
    except ValueError as e:
        return str(e)
    return None


def _textfile(value: str) -> str | None:
    """[metrics] textfile: "" (off) or a path ending in .prom, the only files
    node_exporter's textfile collector reads."""
    if not value:
        return None
    problem = _path(value)
    if problem:
        return problem
    if not value.endswith(".prom") or value.endswith("/.prom"):
        return f"must be a file name ending in .prom (node_exporter reads only those), got {value!r}"
    return None


# Settings fields configured outside [limits], by section; settings.py groups
# its fields the same way.  Every other Settings field is a [limits] key.
SETTINGS_SECTIONS: dict[str, tuple[str, ...]] = {
    "tcp": ("verify_checksums",),
    "privacy": ("redact", "redact_headers", "redact_params", "redact_key", "redact_key_file"),
    "bodies": ("capture_bodies", "max_body_bytes", "max_decoded_bytes", "body_content_types"),
    # The section's other keys are the sink's, not the pipeline's.
    "output": ("sensor", "format"),
    "flow_pcaps": ("flow_pcap_dir", "flow_pcap_when", "flow_pcap_max_file_mb", "flow_pcap_max_total_mb",
                   "flow_pcap_max_buffer_mb"),
}

# Settings' annotations (strings under `from __future__ import annotations`).
_ANNOTATION_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str, "tuple[str, ...]": tuple}

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40
HOUR_S, DAY_S, WEEK_S = 3600, 86400, 7 * 86400

# The range of every number among the Settings fields ([limits] and
# [bodies]); settings.py gives the reason for each default, these the
# reasons for each end.  None of them may be 0: a zero timeout or bound
# would turn it into "drop everything".  The low ends are where a bound
# still does what it says (at it, something is dropped or flushed and
# counted); the fuzzer runs sniffd near them (fuzz/fuzzinput.py TIGHT,
# captures/fuzz/*.toml: `sniffd read -c` must take those).
SETTINGS_RANGES: dict[str, Range] = {
    # Housekeeping runs once per second of packet time (pipeline.
    # EXPIRE_EVERY_S), so a shorter idle timeout cannot act sooner.  A week:
    # keep-alive servers close after 5-120 s, TCP keepalive probes after 2 h;
    # a connection silent for a week is gone.
    "idle_timeout_s": _between(1, WEEK_S),
    # 10 ms: below it the reordering of the capture path itself (NIC
    # queues, GRO) would be declared gaps.  An hour: Linux gives up
    # retransmitting after ~15 min (tcp_retries2), so a hole older than
    # that is never filled.
    "gap_timeout_s": _between(0.01, HOUR_S),
    # 10 M: at ~2 KiB each when idle, 20 GiB, past any memory budget a
    # gateway gives sniffd; the table could never be that full.
    "max_connections": _between(1, 10_000_000),
    # Any positive size works (a segment that does not fit is dropped and
    # counted, tcp_buffer_overflow).  1 GiB is the largest TCP window (RFC
    # 7323 section 2.3): a receiver never accepts more out of order.
    "max_conn_buffer_bytes": _between(1, GiB),
    "max_total_buffer_bytes": _between(1, TiB),
    # Housekeeping once a second (as above); RFC 791 bounds the reassembly
    # timer by the largest TTL, 255 s: no fragment is older than that.
    "frag_timeout_s": _between(1, 255),
    # A million datagrams in reassembly at once is beyond any link (Linux
    # holds 4 MiB of fragments per namespace by default).
    "max_frag_datagrams": _between(1, 1_000_000),
    # A fragmented datagram has at least two fragments; a 65,535-byte
    # IPv4 datagram in 8-byte fragments has 8192.
    "max_frags_per_datagram": _between(2, 8192),
    # 64 Ki requests waiting on one connection is a flood, not pipelining.
    "max_pending_requests": _between(1, 65536),
    # 16 bytes: the shortest request line ("GET / HTTP/1.1" CRLF).  16 MiB
    # is far past any server's limit (nginx 32 KiB, Apache 8 KiB a line).
    "max_header_bytes": _between(16, 16 * MiB),
    # Apache refuses more than 100 fields, nginx's buffers hold about 500
    # short ones; 65536 is past anything a server takes.
    "max_header_count": _between(1, 65536),
    # The shortest target, "/", is one byte; 16 MiB: no server takes one
    # that long (nginx and Apache refuse beyond 8 KiB).
    "max_uri_bytes": _between(1, 16 * MiB),
    # 0.01 MiB (10 KiB): a few connections' table entries (~2 KiB each);
    # below, every connection is shed as it starts and nothing is logged
    # (1e-300 was accepted: a budget of 0 bytes).  1 TiB: past any machine
    # sniffd runs on (its unit has MemoryMax=1G); beyond, it bounds nothing.
    "memory_budget_mb": _between(0.01, 1024 * 1024),
    # 64 MiB of one body in one record is a file transfer, not an API
    # payload; each record holds its body in memory and on one line.
    "max_body_bytes": _between(1, 64 * MiB),
    # The decompression-bomb cap: 256 MiB of one body is a quarter of the
    # unit's MemoryMax.
    "max_decoded_bytes": _between(1, 256 * MiB),
    # Flow pcaps (sniffd.flowpcap).  A file at least holds its header and
    # a handshake (0.001 MiB, 1,048 bytes); at most 4 GiB, where the 32-bit
    # offsets of other tools' pcap indexes end.  The directory holds at
    # least one file of the smallest size, at most 1 PiB.  The held
    # frames: at least a few full ones (10 KiB), at most the largest
    # memory budget.
    "flow_pcap_max_file_mb": _between(0.001, 4096),
    "flow_pcap_max_total_mb": _between(0.001, 1024 * 1024 * 1024),
    "flow_pcap_max_buffer_mb": _between(0.01, 1024 * 1024),
}


def _flow_pcap_when(value: Any) -> str | None:
    """[flow_pcaps] flow_pcap_when: sniffd.flowpcap.When's terms."""
    from sniffd.flowpcap import When

    problem = _names(value)
    if problem:
        return problem
    try:
        When(value)
    except ValueError as e:
        return str(e)
    return None


def _settings_schema(section: str) -> dict[str, Key]:
    """The keys of ``section`` taken from the Settings dataclass, so the two cannot drift."""
    elsewhere = {name for names in SETTINGS_SECTIONS.values() for name in names}
    mine = SETTINGS_SECTIONS.get(section)
    keys: dict[str, Key] = {}
    for f in dataclasses.fields(Settings):
        if (f.name not in mine) if mine is not None else (f.name in elsewhere):
            continue
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
        typ = _ANNOTATION_TYPES.get(annotation)
        if typ is None:
            raise TypeError(f"sniffd.settings.Settings.{f.name}: type {annotation!r} has no config mapping in sniffd/config.py")
        check = None
        if typ in (int, float):
            check = SETTINGS_RANGES.get(f.name)
            if check is None:
                raise TypeError(f"sniffd.settings.Settings.{f.name}: a number needs a range in sniffd/config.py SETTINGS_RANGES")
        elif typ is tuple:
            check = {"body_content_types": _media_types, "redact_headers": _header_names,
                     "flow_pcap_when": _flow_pcap_when}.get(f.name, _names)
        elif f.name == "verify_checksums":
            check = _one_of("auto", "on", "off")
        elif f.name == "redact_key":
            check = _multiline_text
        elif f.name in ("redact_key_file", "flow_pcap_dir"):
            check = _path
        elif f.name == "sensor":
            check = _sensor
        elif f.name == "format":
            check = _one_of(*OUTPUT_FORMATS)
        elif typ is str:
            check = _text
        keys[f.name] = Key(typ, f.default, check)
    return keys


# The defaults here are the documented ones; config/sniffd.toml gives the reason
# for each next to the key, and the reason for each range end is given here.
SCHEMA: dict[str, dict[str, Key]] = {
    "capture": {
        "interface": Key(str, "eth0", _interface),
        "bpf_filter": Key(str, "tcp port 80 or tcp port 8080", _multiline_text),
        # 64 bytes hold the Ethernet, IP and TCP headers of a segment (with
        # some options); 262144 is libpcap's largest (MAXIMUM_SNAPLEN).
        "snaplen": Key(int, 262144, _between(64, 262144)),
        "promiscuous": Key(bool, True),
        # Below 64 KiB the ring holds only a few full frames; the kernel
        # takes the size as an int (setsockopt PACKET_RX_RING).
        "buffer_bytes": Key(int, 32 * MiB, _between(64 * KiB, 2**31 - 1)),
        # 1 ms to 1 s: records must reach the file within a second, and a
        # read timeout of 0 would mean "wait forever" to libpcap.
        "read_timeout_ms": Key(int, 200, _between(1, 1000)),
        # 65536 packets is ~100 MiB of full frames in one batch, far past
        # the point where a larger batch saves any per-call cost.
        "batch_size": Key(int, 512, _between(1, 65536)),
        # The queue bounds memory (queue_batches * batch_size frames); 65536
        # batches of one packet each are still bounded.
        "queue_batches": Key(int, 64, _between(1, 65536)),
        # Capture processes in one PACKET_FANOUT group; 1 = today's single
        # process.  64 is far above the cores of any gateway sniffd runs on
        # (the kernel takes up to 256 members per group).
        "workers": Key(int, 1, _between(1, 64)),
    },
    "limits": _settings_schema("limits"),
    "tcp": _settings_schema("tcp"),
    "privacy": _settings_schema("privacy"),
    "bodies": _settings_schema("bodies"),
    "output": {
        "path": Key(str, "/var/log/sniffd/http.jsonl", _output_path),
        # 0 turns rotation off.  4 KiB: smaller, rotation would make a file
        # of every record or two and keep_files would drop them at once.
        # 1 TiB: a file that size defeats the point of rotating.
        "rotate_bytes": Key(int, 100 * MiB, _between(4 * KiB, TiB, off=True)),
        "keep_files": Key(int, 10, _between(1, 10000)),
        "flush_interval_s": Key(float, 1.0, _between(0.01, 1.0)),
        # Records held in memory while the output is blocked (disk full, log
        # directory gone): 64 MiB is about a minute of a busy gateway's
        # records; 4 GiB is past what a service with MemoryMax=1G can hold.
        "backlog_mb": Key(float, 64.0, _between(0.001, 4096)),
        **_settings_schema("output"),
    },
    "flow_pcaps": _settings_schema("flow_pcaps"),
    # Used only when [output] path is a nats:// URL (sniffd.natssink).
    "nats": {
        # The stream that must take the subject; "" = whichever does.
        "stream": Key(str, "", _nats_stream),
        # Off: sniffd does not create streams on someone's server unless asked
        # (a stream's limits and storage are the server operator's choice).
        "create_stream": Key(bool, False),
        # Publishes awaiting JetStream's ack at once: 1024 keeps a local
        # server busy (the throughput stops growing well below it) while a
        # re-send after an outage is at most 1024 records.  1..65536.
        "max_pending_acks": Key(int, 1024, _between(1, 65536)),
        # A publish not acknowledged by then is sent again (same message id):
        # 5 s, nats-py's own request timeout; 0.1 s is below a loaded
        # server's fsync; 300 s would hold the buffer for a dead server.
        "ack_timeout_s": Key(float, 5.0, _between(0.1, 300)),
        # How long start-up waits for the server: `read` fails after it,
        # `run` starts blocked and keeps trying.  5 s covers a TLS-less
        # connect across a WAN several times over.
        "connect_timeout_s": Key(float, 5.0, _between(0.1, 300)),
        # Between reconnection attempts (without end): 1 s, so the output
        # resumes within about a second of the server's return.
        "reconnect_wait_s": Key(float, 1.0, _between(0.05, 60)),
        # At the end of `read` and at shutdown, how long to wait for the
        # outstanding acks; what is unacknowledged then is counted lost.
        # 5 s: with the shutdown budget it stays inside systemd's
        # TimeoutStopSec=15.
        "close_timeout_s": Key(float, 5.0, _between(0.1, 600)),
    },
    "log": {
        "level": Key(str, "info", _one_of(*LOG_LEVELS)),
        "format": Key(str, "json", _one_of(*LOG_FORMATS)),
    },
    "privileges": {
        "user": Key(str, "sniffd", _text),
        "group": Key(str, "", _text),
    },
    "stats": {
        # 0 turns the stats events off.  At least a second apart, or they
        # would be most of the log; at most a day apart.
        "interval_s": Key(float, 60.0, _between(1, DAY_S, off=True)),
    },
    "metrics": {
        "enabled": Key(bool, True),
        # Loopback only: the numbers (hosts' traffic rates, anomalies) are
        # for the machine's own Prometheus agent or an SSH tunnel.
        "listen": Key(str, "127.0.0.1:9853", _listen),
        "textfile": Key(str, "", _textfile),
        # 1 s: a write a second is the most a collector needs (it reads the
        # file at each scrape); an hour: staler numbers mislead.
        "textfile_interval_s": Key(float, 15.0, _between(1, HOUR_S)),
    },
}


def _every_number_has_a_range() -> None:
    for section, keys in SCHEMA.items():
        for name, key in keys.items():
            if key.type in (int, float) and not isinstance(key.check, Range):
                raise TypeError(f"sniffd/config.py: [{section}] {name} is a number without a Range")


_every_number_has_a_range()

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", tuple: "an array of strings"}


@dataclass(slots=True)
class Config:
    """Validated configuration: ``values[section][key]``, plus where each came from."""

    path: str | None
    values: dict[str, dict[str, Any]]
    # "section.key" -> how to name it in a message ("FILE: [capture] snaplen" or "--snaplen").
    origins: dict[str, str] = field(default_factory=dict)

    def get(self, section: str, key: str) -> Any:
        return self.values[section][key]

    def where(self, section: str, key: str) -> str:
        return self.origins.get(f"{section}.{key}") or self._file_where(section, key)

    def _file_where(self, section: str, key: str) -> str:
        prefix = f"{self.path}: " if self.path else ""
        return f"{prefix}[{section}] {key}"

    def settings(self) -> Settings:
        fields = dict(self.values["limits"])
        for section, names in SETTINGS_SECTIONS.items():
            fields.update((name, self.values[section][name]) for name in names)
        return Settings(**fields)

    def redact_key(self) -> bytes | None:
        """The token key for redaction from [privacy] redact_key or redact_key_file.

        None when redaction is off or no key is configured (the pipeline then
        uses a random key for the run).  Raises ConfigError naming the key.
        Read as the starting user, before privileges are dropped (so when
        started as root, the key file can be readable by root only).
        """
        privacy = self.values["privacy"]
        if not privacy["redact"]:
            return None
        key, key_file = privacy["redact_key"], privacy["redact_key_file"]
        if key and key_file:
            raise ConfigError(f"{self.where('privacy', 'redact_key_file')}: set redact_key or redact_key_file, not both")
        if key:
            return _hex_key(self.where("privacy", "redact_key"), key)
        if key_file:
            where = self.where("privacy", "redact_key_file")
            try:
                with open(key_file, encoding="utf-8") as f:
                    text = f.read()
            except OSError as e:
                raise ConfigError(f"{where}: cannot read {key_file}: {e.strerror}") from None
            except UnicodeDecodeError:
                raise ConfigError(f"{where}: {key_file} must hold the key as hex digits") from None
            return _hex_key(f"{where}: {key_file}", text)
        return None

    # Shorthands the daemon reads often.
    @property
    def capture(self) -> dict[str, Any]:
        return self.values["capture"]

    @property
    def output(self) -> dict[str, Any]:
        return self.values["output"]


def _hex_key(where: str, text: str) -> bytes:
    from sniffd.redact import MIN_KEY_BYTES

    try:
        key = bytes.fromhex("".join(text.split()))
    except ValueError:
        raise ConfigError(f"{where}: the key must be hex digits (e.g. from `openssl rand -hex 32`)") from None
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(f"{where}: the key must be at least {MIN_KEY_BYTES} bytes ({2 * MIN_KEY_BYTES} hex digits), got {len(key)}")
    return key


def defaults() -> Config:
    return Config(None, {s: {k: key.default for k, key in keys.items()} for s, keys in SCHEMA.items()})


def _show(value: Any) -> str:
    """A value as the operator wrote it in TOML (true, not True)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return repr(value)


def coerce(where: str, key: Key, value: Any) -> Any:
    """Check ``value`` against ``key``; return it (ints widened to float where a number is wanted).

    An integer key takes no float, not even 65535.0 (TOML writes integers
    without a point; a float there is a slip worth naming).  A number key
    takes no nan or inf (TOML has both): checked before the range, as nan
    compares false with everything."""
    ok = False
    if key.type is bool:
        ok = isinstance(value, bool)
    elif key.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif key.type is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: must be a finite number, got {value!r}")
    elif key.type is str:
        ok = isinstance(value, str)
    elif key.type is tuple:
        ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
        if ok:
            value = tuple(value)
    if not ok:
        raise ConfigError(f"{where}: expected {_TYPE_NAMES[key.type]}, got {_show(value)}")
    if key.check is not None:
        problem = key.check(value)
        if problem:
            raise ConfigError(f"{where}: {problem}")
    # Widened only once in range: float() of a 400-digit integer overflows.
    return float(value) if key.type is float else value


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def parse(data: dict[str, Any], path: str | None) -> Config:
    """Validate a parsed TOML document; unknown names and wrong types raise ConfigError."""
    cfg = defaults()
    cfg.path = path
    prefix = f"{path}: " if path else ""
    sections = list(SCHEMA)
    for name, table in data.items():
        if name not in SCHEMA:
            owners = [s for s, keys in SCHEMA.items() if name in keys]
            if owners and not isinstance(table, dict):
                raise ConfigError(f"{prefix}{name}: key outside any section (put it under [{owners[0]}])")
            close = difflib.get_close_matches(name, sections, n=1, cutoff=0.6)
            hint = f"did you mean [{close[0]}]?" if close else "known: " + ", ".join(f"[{s}]" for s in sections)
            raise ConfigError(f"{prefix}[{name}]: unknown section ({hint})")
        if not isinstance(table, dict):
            raise ConfigError(f"{prefix}{name}: expected a [{name}] section, got {_show(table)}")
        keys = SCHEMA[name]
        for key, value in table.items():
            where = f"{prefix}[{name}] {key}"
            if key not in keys:
                # Right key, wrong section is a common slip; else a typo.
                owners = [s for s, ks in SCHEMA.items() if key in ks]
                hint = f" (it belongs in [{owners[0]}])" if owners else _suggest(key, list(keys))
                raise ConfigError(f"{where}: unknown key{hint}")
            cfg.values[name][key] = coerce(where, keys[key], value)
    return cfg


def load(path: str) -> Config:
    """Read and validate the TOML file at ``path``."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except PermissionError:
        raise ConfigError(f"{path}: permission denied") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 ({e.reason})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    return parse(data, path)


def apply_overrides(cfg: Config, overrides: dict[tuple[str, str], tuple[str, Any]]) -> Config:
    """Lay command-line values over the file: ``{(section, key): (flag, value)}``; None = not given."""
    for (section, key), (flag, value) in overrides.items():
        if value is None:
            continue
        cfg.values[section][key] = coerce(flag, SCHEMA[section][key], value)
        cfg.origins[f"{section}.{key}"] = flag
    return cfg


# --- checks that look at the machine, not just the file -------------------


def interface_exists(name: str) -> bool:
    """True for a kernel interface in this network namespace, or libpcap's "any".

    /sys/class/net is read rather than pcap_findalldevs so the check works
    under systemd's ProcSubset=pid (findalldevs reads /proc/net/dev).
    """
    if name == "any":
        return True
    if "/" in name or name in (".", ".."):
        return False
    return os.path.exists(os.path.join("/sys/class/net", name))


def compile_filter(bpf: str, snaplen: int) -> str | None:
    """Compile ``bpf`` for Ethernet without opening anything; return libpcap's error or None.

    The filter is compiled again for the interface's real link type when the
    capture opens, still before any packet is handled.
    """
    import pcapy

    if not bpf:
        return None
    try:
        pcapy.compile(pcapy.DLT_EN10MB, snaplen, bpf, 1, 0xFFFFFFFF)
    except pcapy.PcapError as e:
        return str(e)
    return None


def check_environment(cfg: Config) -> None:
    """Everything that can be checked before capturing; raises ConfigError on the first problem."""
    cap = cfg.capture
    iface = cap["interface"]
    if not interface_exists(iface):
        try:
            available = sorted(os.listdir("/sys/class/net"))
        except OSError:
            available = []
        listing = f" (available: {', '.join(available)})" if available else ""
        raise ConfigError(f"{cfg.where('capture', 'interface')}: no such interface {iface!r}{listing}")
    problem = compile_filter(cap["bpf_filter"], cap["snaplen"])
    if problem:
        raise ConfigError(f"{cfg.where('capture', 'bpf_filter')}: invalid BPF expression {cap['bpf_filter']!r}: {problem}")
    user = cfg.get("privileges", "user")
    group = cfg.get("privileges", "group")
    if user:
        try:
            pwd.getpwnam(user)
        except KeyError:
            raise ConfigError(f"{cfg.where('privileges', 'user')}: no such user {user!r}") from None
    if group:
        try:
            grp.getgrnam(group)
        except KeyError:
            raise ConfigError(f"{cfg.where('privileges', 'group')}: no such group {group!r}") from None
        if not user:
            raise ConfigError(f"{cfg.where('privileges', 'group')}: a group needs a user to switch to ([privileges] user is empty)")
    cfg.redact_key()
    out = cfg.output["path"]
    from sniffd.natssink import is_nats_url

    if out != "-" and not is_nats_url(out):
        directory = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(directory):
            raise ConfigError(f"{cfg.where('output', 'path')}: directory {directory} does not exist")
        if os.path.isdir(out):
            raise ConfigError(f"{cfg.where('output', 'path')}: {out} is a directory")
    textfile = cfg.get("metrics", "textfile")
    if cfg.get("metrics", "enabled") and textfile:
        directory = os.path.dirname(os.path.abspath(textfile))
        if not os.path.isdir(directory):
            raise ConfigError(f"{cfg.where('metrics', 'textfile')}: directory {directory} does not exist")
    problem = flow_pcap_problem(cfg.values["flow_pcaps"])
    if problem:
        raise ConfigError(f"{cfg.where('flow_pcaps', problem[0])}: {problem[1]}")


def flow_pcap_problem(fp: dict[str, Any]) -> tuple[str, str] | None:
    """What the [flow_pcaps] keys say together that none says alone: the
    directory exists, and the total holds a whole file.  (key, problem) or None."""
    from sniffd.flowpcap import check_directory

    if not fp["flow_pcap_dir"]:
        return None
    problem = check_directory(fp["flow_pcap_dir"])
    if problem:
        return "flow_pcap_dir", problem
    if fp["flow_pcap_max_total_mb"] < fp["flow_pcap_max_file_mb"]:
        return "flow_pcap_max_total_mb", (f"must be at least flow_pcap_max_file_mb ({_num(fp['flow_pcap_max_file_mb'])}), "
                                          f"got {_num(fp['flow_pcap_max_total_mb'])}")
    return None
