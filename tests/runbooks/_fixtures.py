"""Captured outputs for the host-side runbook tests (see tests/fixtures/runbooks/<module>/SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

from bot.core.commands import Command, CommandResult

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "runbooks"
#: The lab directory the fixtures were captured from (it appears in paths inside them).
LAB = "/tmp/hs-cap/lab"


def fx(module: str, name: str) -> str:
    return (ROOT / module / name).read_text(encoding="utf-8")


def result(
    stdout: str = "", *, exit_status: int | None = 0, stderr: str = "", error: str | None = None
) -> CommandResult:
    """A canned reply with an exit status or error (drive() fills in the command and host)."""
    return CommandResult(command=Command.of("x"), host="h", exit_status=exit_status, stdout=stdout, stderr=stderr,
                         error=error)
