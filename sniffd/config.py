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
import os
import pwd
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sniffd.settings import Settings

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
    check: Callable[[Any], str | None] | None = None


def _between(low: float, high: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if not low <= value <= high:
            return f"must be between {low:g} and {high:g}, got {value!r}"
        return None

    return check


def _at_least(low: float) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value < low:
            return f"must be at least {low:g}, got {value!r}"
        return None

    return check


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if value not in choices:
            return f"must be one of {', '.join(choices)}, got {value!r}"
        return None

    return check


def _positive(value: Any) -> str | None:
    return f"must be greater than 0, got {value!r}" if not value > 0 else None


def _names(value: Any) -> str | None:
    bad = [v for v in value if not v.strip()]
    return "names must not be empty" if bad else None


def _media_types(value: Any) -> str | None:
    bad = [v for v in value if v.count("/") != 1 or not all(v.split("/"))]
    return f"expected media types such as 'text/*' or 'application/json', got {bad[0]!r}" if bad else None


def _non_empty(value: Any) -> str | None:
    return "must not be empty" if not value else None


# Settings fields configured outside [limits], by section; settings.py groups
# its fields the same way.  Every other Settings field is a [limits] key.
SETTINGS_SECTIONS: dict[str, tuple[str, ...]] = {
    "tcp": ("verify_checksums",),
    "privacy": ("redact", "redact_headers", "redact_params", "redact_key", "redact_key_file"),
    "bodies": ("capture_bodies", "max_body_bytes", "max_decoded_bytes", "body_content_types"),
}

# Settings' annotations (strings under `from __future__ import annotations`).
_ANNOTATION_TYPES: dict[str, type] = {"int": int, "float": float, "bool": bool, "str": str, "tuple[str, ...]": tuple}


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
        if typ is int:
            # Every bound must be positive: a zero timeout or buffer would
            # turn a bound into "drop everything".
            check = _at_least(1)
        elif typ is float:
            check = _positive
        elif typ is tuple:
            check = _media_types if f.name == "body_content_types" else _names
        elif f.name == "verify_checksums":
            check = _one_of("auto", "on", "off")
        keys[f.name] = Key(typ, f.default, check)
    return keys


# The defaults here are the documented ones; config/sniffd.toml gives the reason
# for each next to the key.
SCHEMA: dict[str, dict[str, Key]] = {
    "capture": {
        "interface": Key(str, "eth0", _non_empty),
        "bpf_filter": Key(str, "tcp port 80 or tcp port 8080"),
        "snaplen": Key(int, 262144, _between(64, 262144)),
        "promiscuous": Key(bool, True),
        "buffer_bytes": Key(int, 32 * 1024 * 1024, _between(65536, 2**31 - 1)),
        "read_timeout_ms": Key(int, 200, _between(1, 1000)),
        "batch_size": Key(int, 512, _between(1, 65536)),
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
        "path": Key(str, "/var/log/sniffd/http.jsonl", _non_empty),
        "rotate_bytes": Key(int, 100 * 1024 * 1024, _at_least(0)),
        "keep_files": Key(int, 10, _between(1, 10000)),
        "flush_interval_s": Key(float, 1.0, _between(0.01, 1.0)),
    },
    "log": {
        "level": Key(str, "info", _one_of(*LOG_LEVELS)),
        "format": Key(str, "json", _one_of(*LOG_FORMATS)),
    },
    "privileges": {
        "user": Key(str, "sniffd"),
        "group": Key(str, ""),
    },
    "stats": {
        "interval_s": Key(float, 60.0, _between(0, 86400)),
    },
}

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
        for section in SETTINGS_SECTIONS:
            fields.update(self.values[section])
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
    """Check ``value`` against ``key``; return it (ints widened to float where a number is wanted)."""
    ok = False
    if key.type is bool:
        ok = isinstance(value, bool)
    elif key.type is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif key.type is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            value = float(value)
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
    return value


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
    if out != "-":
        directory = os.path.dirname(os.path.abspath(out))
        if not os.path.isdir(directory):
            raise ConfigError(f"{cfg.where('output', 'path')}: directory {directory} does not exist")
        if os.path.isdir(out):
            raise ConfigError(f"{cfg.where('output', 'path')}: {out} is a directory")
