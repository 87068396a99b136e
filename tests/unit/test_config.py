"""Configuration: bad files and flags give one clear line and a non-zero exit, through the real CLI.

Each bad case runs the installed ``sniffd`` executable (``check`` and
``run``), as an operator would, and expects exactly one line on stderr naming
the file, the section and the key, exit status 2, nothing on stdout and no
output file created (nothing was started).
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from sniffd import config as configmod

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "config" / "sniffd.toml"
SNIFFD = Path(sys.executable).parent / "sniffd"

# A failing `sniffd run` must stop before capturing; 30 s only trips if it hangs.
CLI_TIMEOUT_S = 30


def current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SNIFFD), *args], capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def write_config(tmp_path: Path, text: str) -> Path:
    """A config whose other keys are valid on any machine (lo, the current user, a temp output)."""
    path = tmp_path / "sniffd.toml"
    path.write_text(text)
    return path


# (name, TOML text, flags, expected stderr line after "sniffd: error: {path}: ")
# The text is complete: sections not mentioned fall back to their defaults, and
# every case also passes -o/--user so that only the key under test is wrong.
BAD_FILES = [
    ("unknown_key", "[capture]\ncolour = 'blue'\n", [], "[capture] colour: unknown key"),
    ("misspelt_key", "[capture]\nsnaplenn = 65535\n", [], "[capture] snaplenn: unknown key (did you mean snaplen?)"),
    ("key_in_wrong_section", "[capture]\nidle_timeout_s = 30\n", [], "[capture] idle_timeout_s: unknown key (it belongs in [limits])"),
    ("misspelt_section", "[captur]\nsnaplen = 65535\n", [], "[captur]: unknown section (did you mean [capture]?)"),
    ("key_outside_section", "interface = 'lo'\n", [], "interface: key outside any section (put it under [capture])"),
    ("wrong_type_int", "[capture]\nsnaplen = 'big'\n", [], "[capture] snaplen: expected an integer, got 'big'"),
    ("wrong_type_bool", "[capture]\npromiscuous = 'yes'\n", [], "[capture] promiscuous: expected true or false, got 'yes'"),
    ("wrong_type_float", "[limits]\nidle_timeout_s = '5m'\n", [], "[limits] idle_timeout_s: expected a number, got '5m'"),
    ("out_of_range", "[capture]\nsnaplen = 10\n", [], "[capture] snaplen: must be between 64 and 262144, got 10"),
    ("zero_limit", "[limits]\nmax_connections = 0\n", [], "[limits] max_connections: must be between 1 and 10000000, got 0"),
    ("bad_choice", "[log]\nformat = 'xml'\n", [], "[log] format: must be one of json, console, got 'xml'"),
    (
        "invalid_bpf",
        "[capture]\nbpf_filter = 'tcp port'\n",
        [],
        "[capture] bpf_filter: invalid BPF expression 'tcp port': can't parse filter expression: syntax error",
    ),
    ("missing_interface", "[capture]\ninterface = 'nosuch0'\n", [], "[capture] interface: no such interface 'nosuch0' (available: "),
    ("no_such_user", "[privileges]\nuser = 'no-such-user-x'\n", ["--user-from-file"], "[privileges] user: no such user 'no-such-user-x'"),
    ("invalid_toml", "[capture\n", [], "invalid TOML: "),
    ("array_of_non_strings", "[privacy]\nredact_headers = [1]\n", [], "[privacy] redact_headers: expected an array of strings, got an array"),
    (
        "bad_media_type",
        "[bodies]\nbody_content_types = ['json']\n",
        [],
        "[bodies] body_content_types: expected media types such as 'text/*' or 'application/json', got 'json'",
    ),
    ("short_redact_key", "[privacy]\nredact_key = 'abcd'\n", [], "[privacy] redact_key: the key must be at least 16 bytes (32 hex digits), got 2"),
    ("non_hex_redact_key", "[privacy]\nredact_key = 'not hex'\n", [], "[privacy] redact_key: the key must be hex digits"),
    ("missing_key_file", "[privacy]\nredact_key_file = '/nonexistent/redact.key'\n", [], "[privacy] redact_key_file: cannot read /nonexistent/redact.key: No such file or directory"),
    # NUL bytes and other control characters in strings and paths (a NUL
    # used to pass `check` and crash `run` with a traceback)
    ("nul_in_output_path", '[output]\npath = "/tmp/a\\u0000b"\n', [], "[output] path: must not contain control characters ('\\x00'), got '/tmp/a\\x00b'"),
    ("nul_in_key_file", '[privacy]\nredact_key_file = "/etc/k\\u0000"\n', [], "[privacy] redact_key_file: must not contain control characters ('\\x00')"),
    ("nul_in_filter", '[capture]\nbpf_filter = "tcp\\u0000 port 80"\n', [], "[capture] bpf_filter: must not contain control characters ('\\x00')"),
    ("nul_in_user", '[privileges]\nuser = "root\\u0000"\n', ["--user-from-file"], "[privileges] user: must not contain control characters ('\\x00')"),
    ("nul_in_group", '[privileges]\ngroup = "\\u0000"\n', [], "[privileges] group: must not contain control characters ('\\x00')"),
    ("nul_in_redact_key", '[privacy]\nredact_key = "00\\u0000"\n', [], "[privacy] redact_key: must not contain control characters ('\\x00')"),
    ("nul_in_param_name", '[privacy]\nredact_params = ["a\\u0000"]\n', [], "[privacy] redact_params: must not contain control characters ('\\x00')"),
    ("newline_in_interface", '[capture]\ninterface = "eth\\n0"\n', [], "[capture] interface: must not contain control characters ('\\n'), got 'eth\\n0'"),
    ("escape_in_output_path", '[output]\npath = "/tmp/\\u001b[2Jx"\n', [], "[output] path: must not contain control characters ('\\x1b')"),
    ("interface_too_long", "[capture]\ninterface = 'abcdefghijklmnop'\n", [], "[capture] interface: must be an interface name of 1 to 15 bytes (IFNAMSIZ), got 'abcdefghijklmnop'"),
    ("interface_with_slash", "[capture]\ninterface = '../lo'\n", [], "[capture] interface: must be an interface name (no '/', ':' or white space), got '../lo'"),
    ("path_name_too_long", f"[output]\npath = '/tmp/{'x' * 256}'\n", [], "[output] path: must be a path whose names are at most 255 bytes (NAME_MAX), got one of 256"),
    ("header_name_not_a_token", "[privacy]\nredact_headers = ['x api key']\n", [], "[privacy] redact_headers: expected header field names (RFC 9110 token characters), got 'x api key'"),
    # numbers: not finite, out of range, a float for an integer
    ("inf_timeout", "[limits]\ngap_timeout_s = inf\n", [], "[limits] gap_timeout_s: must be a finite number, got inf"),
    ("nan_timeout", "[limits]\nidle_timeout_s = nan\n", [], "[limits] idle_timeout_s: must be a finite number, got nan"),
    ("minus_inf_interval", "[stats]\ninterval_s = -inf\n", [], "[stats] interval_s: must be a finite number, got -inf"),
    ("huge_budget", "[limits]\nmemory_budget_mb = 1e300\n", [], "[limits] memory_budget_mb: must be between 0.01 and 1048576, got 1e+300"),
    ("tiny_budget", "[limits]\nmemory_budget_mb = 1e-300\n", [], "[limits] memory_budget_mb: must be between 0.01 and 1048576, got 1e-300"),
    ("giant_integer_for_a_number", f"[limits]\nmemory_budget_mb = 1{'0' * 400}\n", [], "[limits] memory_budget_mb: must be between 0.01 and 1048576, got 100000000000... (401 digits)"),
    ("week_and_more_idle", "[limits]\nidle_timeout_s = 604801\n", [], "[limits] idle_timeout_s: must be between 1 and 604800, got 604801"),
    ("negative_count", "[limits]\nmax_frags_per_datagram = -1\n", [], "[limits] max_frags_per_datagram: must be between 2 and 8192, got -1"),
    ("float_for_integer", "[limits]\nmax_connections = 1e5\n", [], "[limits] max_connections: expected an integer, got 100000.0"),
    ("body_cap_too_large", "[bodies]\nmax_decoded_bytes = 1073741824\n", [], "[bodies] max_decoded_bytes: must be between 1 and 268435456, got 1073741824"),
    ("rotation_too_small", "[output]\nrotate_bytes = 10\n", [], "[output] rotate_bytes: must be 0 (off) or between 4096 and 1099511627776, got 10"),
    ("stats_too_often", "[stats]\ninterval_s = 0.001\n", [], "[stats] interval_s: must be 0 (off) or between 1 and 86400, got 0.001"),
    ("sensor_too_long", f"[output]\nsensor = '{'g' * 256}'\n", [], "[output] sensor: must be at most 255 characters, got 256"),
    ("newline_in_sensor", '[output]\nsensor = "gw\\n01"\n', [], "[output] sensor: must not contain control characters ('\\n'), got 'gw\\n01'"),
    # [nats]: the NATS output's keys (sniffd.natssink)
    ("nats_stream_with_a_dot", "[nats]\nstream = 'sniffd.http'\n", [], "[nats] stream: must be a stream name (no white space, '.', '*', '>', '/' or '\\'), got 'sniffd.http'"),
    ("nats_no_acks_in_flight", "[nats]\nmax_pending_acks = 0\n", [], "[nats] max_pending_acks: must be between 1 and 65536, got 0"),
    ("nats_create_stream_not_bool", "[nats]\ncreate_stream = 'yes'\n", [], "[nats] create_stream: expected true or false, got 'yes'"),
]


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    d = tmp_path / "out"
    d.mkdir()
    return d


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("name,text,case_flags,expected", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_config_gives_one_line_naming_the_key_and_exit_2(tmp_path, out_dir, command, name, text, case_flags, expected):
    path = write_config(tmp_path, text)
    flags = ["-o", str(out_dir / "http.jsonl")]
    if "--user-from-file" not in case_flags:
        flags += ["--user", current_user()]
    if "interface" not in text:
        flags += ["-i", "lo"]
    proc = run_cli(command, "-c", str(path), *flags)
    lines = proc.stderr.splitlines()
    assert 2 == proc.returncode, proc.stderr
    assert 1 == len(lines), proc.stderr
    assert lines[0].startswith(f"sniffd: error: {path}: {expected}"), lines[0]
    assert "" == proc.stdout
    assert [] == list(out_dir.iterdir()), "nothing may be written before the config is valid"


# `sniffd read -c` takes [limits], [tcp], [privacy] and [bodies] from the file
# and checks all of it, the same way.
READ_BAD_FILES = [c for c in BAD_FILES if c[0] in (
    "nul_in_output_path", "inf_timeout", "huge_budget", "tiny_budget", "giant_integer_for_a_number",
    "float_for_integer", "nul_in_key_file", "unknown_key", "body_cap_too_large")]


@pytest.mark.parametrize("name,text,case_flags,expected", READ_BAD_FILES, ids=[c[0] for c in READ_BAD_FILES])
def test_read_with_a_bad_config_gives_one_line_naming_the_key_and_exit_2(tmp_path, out_dir, name, text, case_flags, expected):
    path = write_config(tmp_path, text)
    proc = run_cli("read", "-c", str(path), str(REPO / "captures" / "sample.pcap"), "-o", str(out_dir / "records.jsonl"))
    lines = proc.stderr.splitlines()
    assert 2 == proc.returncode, proc.stderr
    assert 1 == len(lines), proc.stderr
    assert lines[0].startswith(f"sniffd: error: {path}: {expected}"), lines[0]
    assert "" == proc.stdout
    assert [] == list(out_dir.iterdir())


BAD_FLAGS = [
    ("missing_interface_flag", ["-i", "nosuch0"], "--interface: no such interface 'nosuch0' (available: "),
    ("invalid_bpf_flag", ["-i", "lo", "-f", "tcp prot 80"], "--filter: invalid BPF expression 'tcp prot 80': "),
    ("snaplen_flag_out_of_range", ["-i", "lo", "--snaplen", "1"], "--snaplen: must be between 64 and 262144, got 1"),
    ("missing_output_dir", ["-i", "lo", "-o", "/nonexistent-dir/http.jsonl"], "--output: directory /nonexistent-dir does not exist"),
    # A nats:// output: checked as a URL, the password never echoed.
    ("nats_url_with_a_wildcard", ["-i", "lo", "-o", "nats://u:secret@127.0.0.1:4222/sniffd.*"],
     "--output: bad NATS URL 'nats://127.0.0.1:4222/sniffd.*': the subject must not hold wildcards (* or >): records are published to one subject, got 'sniffd.*'"),
    ("nats_url_without_subject", ["-i", "lo", "-o", "nats://127.0.0.1:4222"], "--output: bad NATS URL 'nats://127.0.0.1:4222': no subject (nats://HOST:PORT/SUBJECT)"),
    ("tls_url", ["-i", "lo", "-o", "tls://127.0.0.1:4222/sniffd"], "--output: bad NATS URL 'tls://127.0.0.1:4222/sniffd': the scheme must be nats://, got tls://"),
]


@pytest.mark.parametrize("command", ["check", "run"])
@pytest.mark.parametrize("name,flags,expected", BAD_FLAGS, ids=[c[0] for c in BAD_FLAGS])
def test_bad_flag_gives_one_line_naming_the_flag_and_exit_2(tmp_path, out_dir, command, name, flags, expected):
    path = write_config(tmp_path, "")
    if "-o" not in flags:
        flags = flags + ["-o", str(out_dir / "http.jsonl")]
    proc = run_cli(command, "-c", str(path), "--user", current_user(), *flags)
    lines = proc.stderr.splitlines()
    assert 2 == proc.returncode, proc.stderr
    assert 1 == len(lines), proc.stderr
    assert lines[0].startswith(f"sniffd: error: {expected}"), lines[0]
    assert [] == list(out_dir.iterdir())


def test_missing_config_file_named_in_the_error(tmp_path):
    proc = run_cli("run", "-c", str(tmp_path / "absent.toml"))
    assert 2 == proc.returncode
    assert [f"sniffd: error: {tmp_path / 'absent.toml'}: no such config file"] == proc.stderr.splitlines()


def test_check_accepts_the_example_config_with_flags_overriding_it(tmp_path):
    proc = run_cli("check", "-c", str(EXAMPLE), "-i", "lo", "-f", "tcp port 8080", "--user", current_user(), "-o", str(tmp_path / "x.jsonl"))
    assert 0 == proc.returncode, proc.stderr
    assert (
        f"{EXAMPLE}: OK: interface lo, filter 'tcp port 8080', output {tmp_path / 'x.jsonl'}, user {current_user()}\n"
    ) == proc.stdout


def test_interfaces_lists_loopback():
    proc = run_cli("interfaces")
    assert 0 == proc.returncode, proc.stderr
    assert "lo" in [line.split("\t")[0] for line in proc.stdout.splitlines()]


# --- the example file documents the schema ------------------------------------


def test_example_config_sets_every_key_to_its_default():
    """config/sniffd.toml is the reference: every key, every default, nothing else."""
    with EXAMPLE.open("rb") as f:
        doc = tomllib.load(f)
    expected = {s: {k: key.default for k, key in keys.items()} for s, keys in configmod.SCHEMA.items()}
    # TOML arrays load as lists; Settings keeps tuples.
    doc = {s: {k: tuple(v) if isinstance(v, list) else v for k, v in keys.items()} for s, keys in doc.items()}
    assert expected == doc


def test_example_config_comments_every_key():
    """Each key is preceded by a comment block (saying its default and why)."""
    lines = EXAMPLE.read_text().splitlines()
    uncommented = []
    for i, text in enumerate(lines):
        m = re.match(r"^(\w+)\s*=", text)
        if not m:
            continue
        j = i - 1
        # Keys may share one comment block when they are listed together.
        while j >= 0 and re.match(r"^\w+\s*=", lines[j]):
            j -= 1
        if j < 0 or not lines[j].startswith("#"):
            uncommented.append(m.group(1))
    assert [] == uncommented


def test_limits_tcp_privacy_and_bodies_sections_are_exactly_the_settings_fields():
    from dataclasses import fields

    from sniffd.settings import Settings

    sections = [*configmod.SCHEMA["limits"], *configmod.SCHEMA["tcp"], *configmod.SCHEMA["privacy"],
                *configmod.SCHEMA["bodies"], *configmod.SETTINGS_SECTIONS["output"], *configmod.SCHEMA["flow_pcaps"]]
    assert sorted(f.name for f in fields(Settings)) == sorted(sections)
    assert ("sensor", "format") == configmod.SETTINGS_SECTIONS["output"]
    cfg = configmod.parse(
        {
            "limits": {"idle_timeout_s": 30, "max_connections": 7},
            "privacy": {"redact_headers": ["x-api-key"]},
            "bodies": {"capture_bodies": True, "body_content_types": ["application/json"]},
        },
        "x.toml",
    )
    assert Settings(
        idle_timeout_s=30.0, max_connections=7, redact_headers=("x-api-key",), capture_bodies=True, body_content_types=("application/json",)
    ) == cfg.settings()


def test_redact_key_comes_from_hex_or_a_key_file(tmp_path):
    key_file = tmp_path / "redact.key"
    key_file.write_text("00112233445566778899aabbccddeeff0011\n")
    cfg = configmod.parse({"privacy": {"redact_key_file": str(key_file)}}, "x.toml")
    assert bytes.fromhex("00112233445566778899aabbccddeeff0011") == cfg.redact_key()
    cfg = configmod.parse({"privacy": {"redact_key": "ab" * 16}}, "x.toml")
    assert b"\xab" * 16 == cfg.redact_key()
    assert configmod.parse({}, "x.toml").redact_key() is None
    assert configmod.parse({"privacy": {"redact": False, "redact_key": "zz"}}, "x.toml").redact_key() is None


# --- every key's bounds, in process ------------------------------------------

NUMBER_KEYS = [(s, k, key) for s, keys in configmod.SCHEMA.items() for k, key in keys.items() if key.type in (int, float)]
TEXT_KEYS = [(s, k, key) for s, keys in configmod.SCHEMA.items() for k, key in keys.items() if key.type in (str, tuple)]


def parse_one(section: str, name: str, value) -> configmod.Config:
    return configmod.parse({section: {name: value}}, "x.toml")


def refused(section: str, name: str, value) -> str:
    """The ConfigError message for ``value``, checked to be one line naming the file and key."""
    with pytest.raises(configmod.ConfigError) as e:
        parse_one(section, name, value)
    message = str(e.value)
    assert 1 == len(message.splitlines()), message
    assert message.startswith(f"x.toml: [{section}] {name}: "), message
    return message


@pytest.mark.parametrize("section,name,key", NUMBER_KEYS, ids=[f"{s}.{k}" for s, k, _ in NUMBER_KEYS])
def test_every_number_key_takes_both_ends_of_its_range_and_nothing_beyond(section, name, key):
    """Every number has a Range (config.py refuses to load otherwise); its
    ends are accepted, one step past either end, nan and inf are not."""
    r = key.check
    assert isinstance(r, configmod.Range)
    assert r.low > 0 and r.low <= key.default <= r.high or (r.off and key.default == 0)
    ends = [r.low, r.high] + ([0] if r.off else [])
    for end in ends:
        value = int(end) if key.type is int else float(end)
        assert value == parse_one(section, name, value).get(section, name)
    step = 1 if key.type is int else r.low / 2
    below = r.low - step if not (r.off and r.low - step == 0) else -step
    beyond = [below, r.high + step, r.high * 2 if r.high else 1]
    if key.type is float:
        beyond += [float("nan"), float("inf"), float("-inf"), 10**400]
    else:
        beyond += [-(10**400), 10**400, float(r.low)]  # an integer key takes no float
    for value in beyond:
        refused(section, name, int(value) if key.type is int and isinstance(value, int) else value)


@pytest.mark.parametrize("section,name,key", TEXT_KEYS, ids=[f"{s}.{k}" for s, k, _ in TEXT_KEYS])
@pytest.mark.parametrize("char", ["\x00", "\x1b", "\x7f", "\x85"], ids=["nul", "esc", "del", "c1-nel"])
def test_every_string_key_refuses_nul_and_control_characters(section, name, key, char):
    value = f"a{char}b"
    refused(section, name, (value,) if key.type is tuple else value)


def test_defaults_pass_their_own_checks():
    for section, keys in configmod.SCHEMA.items():
        for name, key in keys.items():
            assert key.default == configmod.coerce(f"[{section}] {name}", key, key.default)


def test_interface_names_follow_the_kernel_rules():
    for good in ("lo", "eth0", "any", "enp0s31f6", "a" * 15, "br-lan.10", "wlan0@x"):
        assert good == parse_one("capture", "interface", good).get("capture", "interface")
    for bad in ("", "a" * 16, ".", "..", "a/b", "eth0:1", "eth 0", "eth\t0"):
        refused("capture", "interface", bad)


def test_sensor_is_the_host_name_by_default_or_a_name_of_at_most_255_characters():
    import socket

    from sniffd.pipeline import Pipeline

    assert "" == configmod.defaults().settings().sensor
    assert socket.gethostname() == Pipeline(configmod.defaults().settings()).sensor
    for good in ("gw-01", "gw 01.example.test", "a" * 255, "Zürich-edge", "dc\\gw"):
        cfg = parse_one("output", "sensor", good)
        assert (good, good) == (cfg.settings().sensor, Pipeline(cfg.settings()).sensor)
    assert "must be at most 255 characters, got 256" in refused("output", "sensor", "a" * 256)
    assert "must not begin or end with white space, got ' gw'" in refused("output", "sensor", " gw")
    assert "must not begin or end with white space" in refused("output", "sensor", "gw ")
    assert "must not begin or end with white space" in refused("output", "sensor", " ")
    assert "expected a string, got 1" in refused("output", "sensor", 1)


def test_filter_and_key_may_span_lines():
    text = "tcp port 80\n\tor tcp port 8080\r\n"
    assert text == parse_one("capture", "bpf_filter", text).get("capture", "bpf_filter")
    refused("capture", "bpf_filter", "tcp\x0bport 80")


def test_readme_configuration_reference_gives_every_key_its_default_and_range():
    """One table row per number key (a key listed with others has the
    row to itself), with its default and its Range as Range.describe()
    writes it; every other key appears in a row of its section."""
    text = (REPO / "README.md").read_text()
    table = text[text.index("### Configuration reference"):]
    table = table[: table.index("\n\n", table.index("| section | key |"))]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 4:
            rows.setdefault(cells[0], []).append(cells)
    missing = []
    for section, keys in configmod.SCHEMA.items():
        for name, key in keys.items():
            mine = [r for r in rows.get(section, []) if f"`{name}`" in r[1]]
            if not mine:
                missing.append(f"[{section}] {name}: no row")
            elif key.type in (int, float):
                (row,) = mine
                if row[1] != f"`{name}`" or not row[3].endswith(f"({key.check.describe()})"):
                    missing.append(f"[{section}] {name}: row {row} lacks ({key.check.describe()})")
                elif configmod._show(key.default) != row[2].strip("`") and repr(key.default) != row[2].strip("`"):
                    missing.append(f"[{section}] {name}: default {row[2]} is not {key.default!r}")
    assert [] == missing


def test_the_fuzzers_tight_bounds_are_accepted():
    """`sniffd read -c` replays fuzz crashes with the fuzzer's tight bounds
    (captures/fuzz/*.toml, fuzz/fuzzinput.py TIGHT): the ranges must take them."""
    sys.path.insert(0, str(REPO / "fuzz"))
    try:
        import fuzzinput
    finally:
        sys.path.remove(str(REPO / "fuzz"))
    configmod.parse(tomllib.loads(fuzzinput.tight_toml()), "TIGHT")
    for path in sorted((REPO / "captures" / "fuzz").glob("*.toml")):
        configmod.load(str(path))
