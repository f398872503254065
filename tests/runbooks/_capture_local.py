"""Capture a runbook's real run on THIS machine, for the datastore fixtures (no SSH needed).

Usage::

    .venv/bin/python -m tests.runbooks._capture_local runbooks.redis:Redis FACTS_JSON PARAMS_JSON sudo|nosudo OUT.json

Each command the runbook asks for runs locally exactly as the SSH adapter would send it
(``bot.adapters.ssh.build_argv``: ``env LC_ALL=C … timeout -k 2 N [sudo -n] argv``); a ``sudo``
command with ``nosudo`` is answered as the adapter does, ``sudo_not_allowed``, without running.
``CAPTURE_AS=user`` runs the non-sudo commands as that user (``runuser -u user --``). OUT.json lists
every command's argv, sudo flag, exit status, stdout and stderr in order; the findings are printed.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from typing import Any

from bot.adapters.ssh import build_argv
from bot.core.commands import Command, CommandResult
from tests.runbooks._datastores import result_of, run_steps


def _run(command: Command, allow_sudo: bool) -> dict[str, Any]:
    record: dict[str, Any] = {"argv": list(command.argv), "sudo": command.sudo}
    if command.sudo and not allow_sudo:
        return {**record, "exit_status": None, "stdout": "", "stderr": "", "error": "sudo_not_allowed"}
    argv = build_argv(command, command.timeout or 15, sudo=command.sudo)
    if os.environ.get("CAPTURE_AS") and not command.sudo:
        argv = ["runuser", "-u", os.environ["CAPTURE_AS"], "--", *argv]
    done = subprocess.run(argv, check=False, capture_output=True, text=True)
    return {**record, "exit_status": done.returncode, "stdout": done.stdout, "stderr": done.stderr, "error": None}


def main(spec: str, facts: str, params: str, sudo: str, out: str) -> None:
    module, name = spec.split(":")
    runbook = getattr(importlib.import_module(module), name)
    steps = runbook(runbook.Params.model_validate(json.loads(params)), json.loads(facts)).steps()
    records: list[dict[str, Any]] = []

    def answer(command: Command) -> CommandResult:
        record = _run(command, sudo == "sudo")
        records.append(record)
        return result_of(record, command)

    findings = run_steps(steps, answer)
    with open(out, "w", encoding="utf-8") as handle:
        json.dump(records, handle, indent=1)
        handle.write("\n")
    for finding in findings:
        print(f"{finding.severity.value:8} {finding.kind:35} {finding.summary}")


if __name__ == "__main__":
    main(*sys.argv[1:6])
