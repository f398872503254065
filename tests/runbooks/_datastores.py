"""Replays of the datastore runbooks' captured runs (tests/fixtures/runbooks/{postgres,mysql,redis}/).

Each fixture lists the commands of one real run in order, with what each printed (see the
SOURCES.md beside them). :func:`replies` gives them to ``bot.testing.drive`` keyed by argv;
:func:`replay` answers in order by (argv, sudo), for runs that ask the same argv twice (a retry
with sudo).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bot.core.commands import Command, CommandResult
from bot.core.models import Finding
from bot.runbook.base import Runbook, Steps
from bot.testing import Canned

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "runbooks"


def records(module: str, name: str) -> list[dict[str, Any]]:
    return list(json.loads((ROOT / module / f"{name}.json").read_text(encoding="utf-8")))


def result_of(record: Mapping[str, Any], command: Command | None = None) -> CommandResult:
    """A recorded command's result (for ``command``, or the recorded argv and sudo flag)."""
    command = command or Command(argv=tuple(record["argv"]), sudo=record["sudo"])
    return CommandResult(
        command=command,
        host="capture",
        exit_status=record["exit_status"],
        stdout=record["stdout"],
        stderr=record["stderr"],
        error=record["error"],
    )


def replies(module: str, name: str) -> dict[str | tuple[str, ...], Canned]:
    return {tuple(r["argv"]): result_of(r) for r in records(module, name)}


def replay(
    runbook: type[Runbook],
    module: str,
    name: str,
    *,
    facts: Mapping[str, str],
    params: BaseModel | None = None,
) -> tuple[list[Finding], list[Command]]:
    """Run ``runbook`` on a capture, answering each command with the next record of the same argv
    and sudo flag; returns its findings and the commands it asked for."""
    pending = records(module, name)
    asked: list[Command] = []

    def answer(command: Command) -> CommandResult:
        asked.append(command)
        for i, record in enumerate(pending):
            if tuple(record["argv"]) == command.argv and record["sudo"] == command.sudo:
                return result_of(pending.pop(i), command)
        raise AssertionError(f"{runbook.name} asked {command.argv!r} (sudo={command.sudo}), not in {name}")

    found = run_steps(runbook(params, facts).steps(), answer)
    assert not pending, f"{name}: the runbook did not ask for {[r['argv'][:2] for r in pending]}"
    return found, asked


def run_steps(steps: Steps, answer: Callable[[Command], CommandResult]) -> list[Finding]:
    """Run a runbook's steps to the end, answering each command it yields (alone or in a tuple)."""
    try:
        step = next(steps)
        while True:
            step = steps.send(tuple(answer(c) for c in step) if isinstance(step, tuple) else answer(step))
    except StopIteration as done:
        found: list[Finding] = done.value
    return found
