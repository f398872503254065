"""Sockets: the TCP summary (``ss -s``) and what listens where (``ss -ltnp``, ``ss -lxnp``).

What it checks, and why: a pile of TIME-WAIT sockets runs the ephemeral ports out (port_exhaustion,
nginx ``(99: Cannot assign requested address)``); a listening socket whose accept queue is full means
the program behind it accepts nothing more (worker_saturation: every worker busy or stuck); the list
of listeners shows whether the upstream the proxy forwards to listens at all, and which program owns
it.

Needs: nothing. Sudo: none (``-p`` names the owning process only for the bot's own processes unless it
runs as root; the queue counts are shown either way).
"""

from __future__ import annotations

from typing import ClassVar

from bot.evidence.readers.listeners import SsListeners
from bot.evidence.readers.sockets import SsSummaryReader
from bot.runbook.api import Command, CommandResult, Finding, Reader, Runbook, Shape, Steps


class Sockets(Runbook):
    name = "sockets"
    title = "Sockets (ss -s, listening sockets and their accept queues)"
    readers: ClassVar[tuple[type[Reader], ...]] = (SsSummaryReader, SsListeners)
    shapes = (Shape("ss", "-s"), Shape("ss", "-ltnp"), Shape("ss", "-lxnp"))

    def steps(self) -> Steps:
        replies = yield (
            Command.of("ss", "-s", timeout=10),
            Command.of("ss", "-ltnp", timeout=10),
            Command.of("ss", "-lxnp", timeout=10),
        )
        assert isinstance(replies, tuple)
        findings: list[Finding] = []
        summary, tcp, unix = replies
        findings.extend(self._read(summary, SsSummaryReader))
        listeners = [r for r in (tcp, unix) if r.error is None and r.exit_status != 127]
        findings.extend(self.failed(r) for r in (tcp, unix) if r not in listeners)
        if listeners:
            first, *rest = listeners
            text = "\n".join([first.stdout, *(f"### $ {r.command.display}\n{r.stdout}" for r in rest)])
            findings.extend(self.read(first.model_copy(update={"stdout": text}), SsListeners))
        return findings

    def _read(self, result: CommandResult, reader: type[Reader]) -> list[Finding]:
        if result.error is None and result.exit_status == 127:
            return [self.failed(result)]
        return self.read(result, reader)
