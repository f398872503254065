"""Memory: how much is available, and did the kernel OOM killer kill anything?

What it checks, and why: an app server or database killed by the OOM killer answers nothing (502) or
loses its connections (500); memory nearly exhausted with swap full is the step before. ``free -m``
shows what is available; the kernel log shows the kills: ``journalctl -k --since "-2 hours"`` (sudo,
else as the bot's user), falling back to ``dmesg -T`` (sudo, else plain) and then to the tail of
``/var/log/kern.log`` or ``/var/log/messages``.

Needs: nothing. Sudo: for the kernel log on hosts where ``kernel.dmesg_restrict`` is set and the bot's
user is not in the ``adm``/``systemd-journal`` group; without it the fallbacks are tried.
"""

from __future__ import annotations

from typing import ClassVar

from bot.evidence.readers.memory import FreeReader, OomKillerReader
from bot.runbook.api import ROOT, Command, CommandResult, Finding, Reader, Runbook, Severity, Shape, Steps

KERNEL_LOG_TAIL = (
    'for f in /var/log/kern.log /var/log/messages; do if [ -r "$f" ]; then exec tail -n 2000 -- "$f"; fi; done; '
    'echo "no readable /var/log/kern.log or /var/log/messages" >&2; exit 1'
)


def _journal(sudo: bool) -> Command:
    return Command.of("journalctl", "-k", "--no-pager", "--since", "-2 hours", "-o", "short-iso", timeout=20, sudo=sudo)


def _usable(result: CommandResult) -> bool:
    """The kernel log was read (an empty log is read too); not: no program, no permission, no journal."""
    if result.error is not None or result.exit_status != 0:
        return False
    text = result.stderr
    return not any(
        marker in text
        for marker in (
            "No journal files were found",
            "Operation not permitted",
            "Permission denied",
            "not seeing messages from other users",
        )
    )


class Memory(Runbook):
    name = "memory"
    title = "Memory and OOM kills (free, kernel log)"
    readers: ClassVar[tuple[type[Reader], ...]] = (FreeReader, OomKillerReader)
    shapes = (
        Shape("free", "-m"),
        Shape("journalctl", "-k", "--no-pager", "--since", "-2 hours", "-o", "short-iso", sudo=ROOT),
        Shape("dmesg", "-T", sudo=ROOT),
        Shape("sh", "-c", KERNEL_LOG_TAIL, "sh"),
    )

    def steps(self) -> Steps:
        free, journal = yield (Command.of("free", "-m", timeout=10), _journal(sudo=True))
        assert isinstance(free, CommandResult) and isinstance(journal, CommandResult)
        findings: list[Finding] = []
        if free.error is None and free.exit_status == 127:
            findings.append(self.failed(free))
        else:
            findings.extend(self.read(free, FreeReader))
        candidates = (
            _journal(sudo=False),
            Command.of("dmesg", "-T", timeout=15, sudo=True),
            Command.of("dmesg", "-T", timeout=15),
            Command.pipeline(KERNEL_LOG_TAIL, timeout=15, label="tail -n 2000 /var/log/kern.log"),
        )
        no_sudo = journal.error == "sudo_not_allowed"
        missing = {"journalctl"} if journal.exit_status == 127 else set()
        kernel = journal
        for command in candidates:
            if _usable(kernel):
                break
            if (command.sudo and no_sudo) or command.argv[0] in missing:
                continue
            reply = yield command
            assert isinstance(reply, CommandResult)
            kernel = reply
            no_sudo = no_sudo or reply.error == "sudo_not_allowed"
            if reply.exit_status == 127:
                missing.add(command.argv[0])
        if not _usable(kernel):
            findings.append(self.failed(kernel))
            return findings
        oom = self.read(kernel, OomKillerReader)
        findings.extend(oom)
        if not oom:
            findings.append(
                Finding(
                    kind="memory.no_oom_kill",
                    severity=Severity.OK,
                    summary=f"no OOM kill in the kernel log (`{kernel.command.display}`)",
                    data={"source": kernel.command.display},
                    runbook=self.name,
                )
            )
        return findings
