"""Disk: is a filesystem, or its inodes, full? (``df -hP``, ``df -iP``, and the app's data directory)

What it checks, and why: a full filesystem makes every write fail (``No space left on device``), which
an application turns into 500s (sessions, uploads, caches, logs, PostgreSQL's WAL); a filesystem out of
inodes fails the same way with space left. ``df -P -- DATA_DIR`` names the filesystem the application
writes to (the ``data_dir`` fact), so a small dedicated mount is seen even among many.

Needs: nothing; the ``data_dir`` fact adds the app's own filesystem. Sudo: none.
"""

from __future__ import annotations

from typing import ClassVar

from bot.evidence.readers.disk import DfReader
from bot.runbook.api import Command, CommandResult, Finding, PathArg, Reader, Runbook, Shape, Steps
from runbooks._facts import invalid_fact, valid_path


class Disk(Runbook):
    name = "disk"
    title = "Disk space and inodes (df)"
    readers: ClassVar[tuple[type[Reader], ...]] = (DfReader,)
    shapes = (
        Shape("df", "-hP"),
        Shape("df", "-iP"),
        Shape("df", "-P", "--", PathArg("any")),
        Shape("df", "-iP", "--", PathArg("any")),
    )

    def steps(self) -> Steps:
        findings: list[Finding] = []
        commands = [Command.of("df", "-hP", timeout=15), Command.of("df", "-iP", timeout=15)]
        data_dir = (self.facts.get("data_dir") or "").strip()
        if data_dir and valid_path(data_dir):
            commands.append(Command.of("df", "-P", "--", data_dir, timeout=15))
            commands.append(Command.of("df", "-iP", "--", data_dir, timeout=15))
        elif data_dir:
            findings.append(invalid_fact(self.name, "data_dir", data_dir))
        replies = yield tuple(commands)
        assert isinstance(replies, tuple)
        # df exits 1 when one filesystem cannot be read (a stale NFS mount) but prints the others.
        usable = [r for r in replies if r.error is None and r.exit_status != 127 and r.stdout.strip()]
        findings.extend(self.failed(r) for r in replies if r not in usable)
        if usable:
            # One scan over every table: the same mount seen twice is one finding.
            first, *rest = usable
            text = "\n".join([first.stdout, *(f"### $ {r.command.display}\n{r.stdout}" for r in rest)])
            findings.extend(self.read(_with_stdout(first, text), DfReader))
        return findings


def _with_stdout(result: CommandResult, text: str) -> CommandResult:
    return result.model_copy(update={"stdout": text, "stderr": ""})
