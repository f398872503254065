"""Capture a runbook's real command outputs from a host, for ``drive`` fixtures.

Usage (the fault lab's ssh_config; one JSON file per scenario)::

    .venv/bin/python -m tests.runbooks.record SSH_CONFIG HOST runbooks.discovery:Discovery OUT.json [FACTS.json]

Each command the runbook asks for is run over ``ssh -F SSH_CONFIG HOST`` exactly as the SSH adapter
sends it (``env LC_ALL=C … argv`` quoted with ``shlex.join``; ``sudo -n`` when asked), and the reply is
stored under the command's display text: ``{"stdout", "stderr", "exit_status"}``. :func:`replies`
turns such a file back into the mapping ``bot.testing.drive`` takes.
"""

from __future__ import annotations

import importlib
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from bot.core.commands import Command, CommandResult
from bot.core.models import Finding
from bot.runbook.base import Runbook
from bot.testing import Canned, drive


def replies(path: Path) -> dict[str | tuple[str, ...], str | CommandResult]:
    """The recorded outputs of ``path`` as ``drive`` replies (keyed by display text)."""
    recorded: dict[str, dict[str, Any]] = json.loads(path.read_text())
    out: dict[str | tuple[str, ...], str | CommandResult] = {}
    for display, reply in recorded.items():
        out[display] = CommandResult(
            command=Command.of("recorded"),
            host="recorded",
            exit_status=reply["exit_status"],
            stdout=reply["stdout"],
            stderr=reply["stderr"],
        )
    return out


def asked(
    runbook: type[Runbook],
    params: dict[str, object],
    canned: dict[str | tuple[str, ...], Canned],
    facts: dict[str, str] | None = None,
) -> tuple[list[Command], list[Finding]]:
    """Every command ``runbook`` asked for on ``canned`` replies, and its findings."""
    seen: list[Command] = []

    class Spy(runbook):  # type: ignore[valid-type,misc]
        def steps(self):  # type: ignore[no-untyped-def]
            inner = super().steps()
            step = next(inner)
            try:
                while True:
                    seen.extend(step if isinstance(step, tuple) else (step,))
                    step = inner.send((yield step))
            except StopIteration as done:
                return done.value

    findings = drive(Spy, params, canned, facts=facts)
    return seen, findings


def _run(ssh_config: str, host: str, command: Command) -> CommandResult:
    argv = ["env", "LC_ALL=C", "SYSTEMD_PAGER=cat", "PAGER=cat", *command.argv]
    if command.sudo:
        argv = ["sudo", "-n", *argv]
    done = subprocess.run(
        ["ssh", "-F", ssh_config, host, shlex.join(argv)], capture_output=True, text=True, timeout=60, check=False
    )
    return CommandResult(
        command=command, host=host, exit_status=done.returncode, stdout=done.stdout, stderr=done.stderr
    )


def main(argv: list[str]) -> None:
    ssh_config, host, target, out = argv[:4]
    facts = json.loads(Path(argv[4]).read_text()) if len(argv) > 4 else {}
    module, _, cls_name = target.partition(":")
    runbook = getattr(importlib.import_module(module), cls_name)
    recorded: dict[str, dict[str, Any]] = {}
    steps = runbook(None, facts).steps()

    def answer(command: Command) -> CommandResult:
        result = _run(ssh_config, host, command)
        recorded[command.display] = {
            "stdout": result.stdout,
            "stderr": result.stderr,
            "exit_status": result.exit_status,
        }
        return result

    try:
        step = next(steps)
        while True:
            reply = tuple(answer(c) for c in step) if isinstance(step, tuple) else answer(step)
            step = steps.send(reply)
    except StopIteration:
        pass
    Path(out).write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
