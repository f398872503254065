"""``incident-bot config check``: the configuration is validated (a bad one is one line, exit 2) and every
host is reached with a real SSH session running ``true`` (here: the test sshd, and a refused port),
one line per host, exit 1 when any host fails."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from bot.app import check_hosts
from bot.config import load_settings
from tests.adapters.conftest import Sshd, free_port


def write_config(sshd: Sshd, tmp_path: Path, *, refused: bool = True) -> Path:
    common = {"address": "127.0.0.1", "user": sshd.user, "identity": str(sshd.keys.client_key),
              "known_hosts": str(sshd.known_hosts)}  # fmt: skip
    hosts = {"web-1": {**common, "port": sshd.port}}
    if refused:
        hosts["web-2"] = {**common, "port": free_port()}
    config = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        "ssh": {"connect_timeout": 5},
        "hosts": hosts,
        "services": {"shop": {"hosts": sorted(hosts)}},
    }
    path = tmp_path / "incident-bot.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], check=False, capture_output=True, text=True, timeout=60
    )


async def test_each_host_gets_a_typed_answer(sshd: Sshd, tmp_path: Path) -> None:
    settings = load_settings(str(write_config(sshd, tmp_path)), env={})
    checks = await check_hosts(settings)
    assert [(c.host, c.ok) for c in checks] == [("web-1", True), ("web-2", False)]
    assert checks[0].detail == "ok"
    assert checks[1].detail.startswith("host_unreachable: ")
    assert "\n" not in checks[1].detail
    assert sshd.logins() == 1


def test_the_command_prints_a_line_per_host_and_exits_1_when_one_fails(sshd: Sshd, tmp_path: Path) -> None:
    out = cli("config", "check", "--config", str(write_config(sshd, tmp_path)))
    assert out.returncode == 1, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("configuration ok (") and "2 host(s), 1 service(s)" in lines[0]
    assert lines[1].split() == ["web-1", "ok"]
    assert lines[2].startswith("web-2  host_unreachable: ")
    assert len(lines) == 3


def test_all_hosts_reached_is_exit_0(sshd: Sshd, tmp_path: Path) -> None:
    out = cli("config", "check", "--config", str(write_config(sshd, tmp_path, refused=False)))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.splitlines()[1].split() == ["web-1", "ok"]


def test_a_host_key_that_does_not_match_is_reported_not_accepted(sshd: Sshd, tmp_path: Path) -> None:
    path = write_config(sshd, tmp_path, refused=False)
    sshd.known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {Path(f'{sshd.keys.other_host_key}.pub').read_text()}")
    out = cli("config", "check", "--config", str(path))
    assert out.returncode == 1
    assert out.stdout.splitlines()[1].startswith("web-1  host_key")


def test_an_invalid_configuration_is_one_line_and_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("services:\n  shop:\n    hosts: [nowhere]\n")
    out = cli("config", "check", "--config", str(path))
    assert out.returncode == 2
    assert out.stdout == ""
    assert len(out.stderr.splitlines()) == 1 and out.stderr.startswith("incident-bot: error: configuration: ")
