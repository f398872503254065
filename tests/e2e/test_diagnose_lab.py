"""`incident-bot diagnose` over real SSH against the fault lab, for every scenario.

For each scenario the lab is broken for real, the site is requested through nginx (asserting the real
status), and `incident-bot diagnose` runs as a user runs it, as a subprocess, against the lab's sshd.
The top cause must be the scenario's, and its evidence must quote a real line of the lab's logs.
The "done when" of the runbooks issue is checked literally too: the target from `lab status`
(`user@127.0.0.1:port -i key --known-hosts file`, no configuration, nothing known in advance about
the host) names upstream_down with nginx's `connect() … failed (111: Connection refused)` line.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from bot.lab import SCENARIOS, Lab, probe
from tests.labfixture import running_lab


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab("ibl-e2e-") as the_lab:
        yield the_lab


def diagnose(*args: str) -> tuple[dict[str, Any], str]:
    done = subprocess.run(
        [sys.executable, "-m", "bot", "diagnose", *args, "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def log_lines(lab: Lab) -> set[str]:
    lines: set[str] = set()
    for path in lab.paths.log_files().values():
        if path.exists():
            lines.update(path.read_text(errors="replace").splitlines())
    return lines


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_diagnose_names_the_scenarios_cause_with_a_real_log_line(lab: Lab, name: str) -> None:
    scenario = SCENARIOS[name]
    # Each scenario is its own incident: start from empty logs, as after a log rotation.
    lab.rotate_logs()
    lab.break_(name)
    try:
        status, _, _ = probe(lab.url)
        if name == "rate_limited":  # the first request of a burst still passes
            status, _, _ = probe(lab.url)
        assert status == scenario.status
        config = str(lab.paths.root / "incident-bot.yaml")
        body, progress = diagnose("lab", "--config", config, "--status", str(scenario.status))
    finally:
        lab.repair()
    causes = body["causes"]
    assert causes[0]["id"] == scenario.cause, [(c["id"], c["confidence"], c["supported_by"]) for c in causes[:3]]
    real = log_lines(lab)
    if name == "maintenance_mode":
        # Deliberate maintenance leaves no error line: the evidence is the flag file on the host.
        real.update(line for line in causes[0]["evidence"] if str(lab.paths.maintenance_flag) in line)
    quoted = causes[0]["evidence"]
    assert quoted and any(line in real for line in quoted), quoted
    assert body["target"] == "lab"
    assert "lab" in progress  # live progress went to stderr


def test_the_target_from_lab_status_alone_names_upstream_down_with_the_111_line(lab: Lab) -> None:
    lab.rotate_logs()
    lab.break_("upstream_down")
    try:
        assert probe(lab.url)[0] == 502
        status = lab.status()
        body, _ = diagnose(*status.diagnose_args, "--status", "502")
    finally:
        lab.repair()
    top = body["causes"][0]
    assert top["id"] == "upstream_down"
    assert any("connect() to unix:" in line and "failed (111: Connection refused)" in line for line in top["evidence"])
