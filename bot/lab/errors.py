"""Errors of the fault lab, all :class:`~bot.errors.BotError` subclasses with one-line messages."""

from __future__ import annotations

from collections.abc import Iterable

from bot.errors import BotError, UsageError


class LabError(BotError):
    """The lab could not do what was asked (a component failed to start, stop or break)."""

    code = "lab"
    exit_code = 1


class LabNotRunning(LabError):
    """A command needs a running lab and there is none in the lab directory."""

    code = "lab_not_running"

    def __init__(self, lab_dir: str) -> None:
        super().__init__(f"no lab is running in {lab_dir}: run `incident-bot lab up` first")
        self.lab_dir = lab_dir


class UnknownScenario(UsageError):
    """``lab break`` was given a name that is not in the scenario table."""

    code = "unknown_scenario"

    def __init__(self, name: str, valid: Iterable[str]) -> None:
        self.valid = sorted(valid)
        super().__init__(f"unknown scenario {name!r}; valid scenarios: {', '.join(self.valid)}")
        self.name = name


class ScenarioUnavailable(LabError):
    """The scenario exists but cannot be reproduced here (e.g. disk_full without root)."""

    code = "scenario_unavailable"
    exit_code = 2

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"scenario {name} is unavailable: {reason}")
        self.name = name
        self.reason = reason
