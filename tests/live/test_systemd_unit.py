"""systemd/sniffd.service stays least-privilege: systemd's own exposure score is 1.6 or lower."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "sniffd.service"

# "OK" in systemd-analyze's scale starts below 5; the unit scores 1.6, and the
# metrics issue (13) keeps it there: notify, watchdog and a loopback-only
# IPAddressAllow must not cost exposure.
MAX_EXPOSURE = 1.6


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key, []).append(value)
    return settings


def test_unit_exposure_score_is_at_most_1_6():
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed (package systemd); cannot score the unit")
    # --offline=true reads the unit file itself; run from its directory so the
    # file, not an installed unit of the same name, is analysed.
    proc = subprocess.run(
        [exe, "security", "--offline=true", "--no-pager", UNIT.name],
        cwd=UNIT.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in proc.stderr and "unrecognized option" in proc.stderr:
        pytest.skip(f"this systemd-analyze has no --offline (systemd < 250): {proc.stderr.strip()}")
    m = re.search(r"Overall exposure level for sniffd\.service: (\d+(?:\.\d+)?)", proc.stdout)
    assert m, f"no score in systemd-analyze output:\n{proc.stdout}\n{proc.stderr}"
    score = float(m.group(1))
    assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}:\n{proc.stdout}"


def test_unit_runs_sniffd_run_unprivileged_with_only_cap_net_raw():
    s = unit_settings()
    assert s["ExecStart"][0].split()[1:3] == ["run", "-c"]
    assert ["sniffd"] == s["User"]
    assert ["CAP_NET_RAW"] == s["AmbientCapabilities"]
    assert ["CAP_NET_RAW"] == s["CapabilityBoundingSet"]
    assert ["yes"] == s["NoNewPrivileges"]
    assert ["strict"] == s["ProtectSystem"]
    assert ["/var/log/sniffd"] == s["ReadWritePaths"]
    assert ["0027"] == s["UMask"]
    assert ["on-failure"] == s["Restart"]
    assert "@system-service" in s["SystemCallFilter"]


def test_unit_waits_for_ready_feeds_a_watchdog_and_does_not_restart_on_a_bad_config():
    """Type=notify (sniffd sends READY=1 itself, sniffd.notify), a watchdog it
    feeds from its processing loop, only the main process notifying, and exit
    status 2 (bad configuration) not restarted every RestartSec."""
    s = unit_settings()
    assert ["notify"] == s["Type"]
    assert ["main"] == s["NotifyAccess"]
    assert ["30s"] == s["WatchdogSec"]
    assert ["2"] == s["RestartPreventExitStatus"]
    # The metrics endpoint is reachable on loopback, nothing else.
    assert (["any"], ["localhost"]) == (s["IPAddressDeny"], s["IPAddressAllow"])
    assert "AF_UNIX" in s["RestrictAddressFamilies"][0].split()
