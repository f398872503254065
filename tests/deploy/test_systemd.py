"""deploy/systemd/incident-bot.service: `systemd-analyze verify`, its security exposure, its hardening."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "systemd" / "incident-bot.service"
BINARY = "/usr/local/bin/incident-bot"


def _analyze() -> str:
    found = shutil.which("systemd-analyze")
    if not found:
        pytest.fail("systemd-analyze is missing: apt-get install systemd")
    return found


def _settings(text: str) -> dict[str, list[str]]:
    """The unit's assignments, every value of a key in order (systemd keys may repeat)."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit with its ExecStart binary pointed at an executable that exists (verify checks it does)."""
    stand_in = tmp_path / "incident-bot"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    copy = tmp_path / "incident-bot.service"
    copy.write_text(UNIT.read_text().replace(BINARY, str(stand_in)))
    return copy


def test_systemd_analyze_verify_accepts_the_unit(unit_copy: Path) -> None:
    """`systemd-analyze verify` finds no error and prints no warning."""
    done = subprocess.run([_analyze(), "verify", str(unit_copy)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""


def test_systemd_analyze_verify_reports_a_misspelt_setting(unit_copy: Path) -> None:
    """The verify step has teeth: a misspelt hardening key is reported, so a typo cannot slip in unnoticed."""
    unit_copy.write_text(unit_copy.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    done = subprocess.run([_analyze(), "verify", str(unit_copy)], capture_output=True, text=True, check=False)
    assert "Unknown key 'NoNewPrivilege'" in done.stderr


def test_the_security_exposure_is_at_most_two(unit_copy: Path) -> None:
    """`systemd-analyze security` rates the unit 2.0 or better (10 is an unprotected service)."""
    done = subprocess.run(
        [_analyze(), "security", "--offline=true", "--threshold=20", "--no-pager", str(unit_copy)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert level, done.stdout[-500:]
    assert float(level.group(1)) <= 2.0


def test_the_service_runs_as_its_own_account_with_no_way_to_gain_privileges() -> None:
    """Dedicated user and group, no new privileges, no capabilities, no setuid/setgid."""
    settings = _settings(UNIT.read_text())
    assert settings["User"] == ["incident-bot"] and settings["Group"] == ["incident-bot"]
    assert settings["NoNewPrivileges"] == ["yes"]
    assert settings["CapabilityBoundingSet"] == [""] and settings["AmbientCapabilities"] == [""]
    assert settings["RestrictSUIDSGID"] == ["yes"]


def test_the_filesystem_is_read_only_except_the_state_directory() -> None:
    """ProtectSystem=strict with only StateDirectory (and a private /tmp) writable; homes hidden."""
    settings = _settings(UNIT.read_text())
    assert settings["ProtectSystem"] == ["strict"]
    assert settings["ProtectHome"] == ["yes"] and settings["PrivateTmp"] == ["yes"]
    assert settings["StateDirectory"] == ["incident-bot"]
    assert "ReadWritePaths" not in settings
    assert settings["WorkingDirectory"] == ["/var/lib/incident-bot"]
    assert "HOME=/var/lib/incident-bot" in settings["Environment"]


def test_the_service_migrates_then_serves() -> None:
    """`db upgrade` before `serve` (PostgreSQL needs it; SQLite migrates itself and it is a no-op)."""
    settings = _settings(UNIT.read_text())
    assert settings["ExecStartPre"] == [f"{BINARY} db upgrade"]
    assert settings["ExecStart"] == [f"{BINARY} serve"]
    assert settings["EnvironmentFile"] == ["-/etc/incident-bot/incident-bot.env"]
