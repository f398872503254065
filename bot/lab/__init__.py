"""The fault lab: real sshd, nginx, gunicorn and PostgreSQL on 127.0.0.1, broken on purpose.

``incident-bot lab up | break SCENARIO | repair | down | status``; see :mod:`bot.lab.lab` and the
scenario table in :mod:`bot.lab.scenarios`.
"""

from __future__ import annotations

from bot.lab.errors import LabError, LabNotRunning, ScenarioUnavailable, UnknownScenario
from bot.lab.lab import Lab, probe
from bot.lab.paths import LabPaths, default_lab_dir
from bot.lab.scenarios import SCENARIOS, Scenario
from bot.lab.status import LabStatus

__all__ = [
    "SCENARIOS",
    "Lab",
    "LabError",
    "LabNotRunning",
    "LabPaths",
    "LabStatus",
    "Scenario",
    "ScenarioUnavailable",
    "UnknownScenario",
    "default_lab_dir",
    "probe",
]
