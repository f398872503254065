"""What the datastore runbooks (postgres, mysql, redis) share: checking their connection facts, the
server they name, and reading a client session that the server may have refused.

A ``<prefix>_host`` is a host name, an IP address, or an absolute path (a unix socket, or for libpq
a socket directory); a ``<prefix>_port`` is 1 to 65535. A fact that does not match its rule is not
used, and a ``runbook.bad_fact`` warning says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Set
from dataclasses import dataclass

from bot.runbook.api import CommandResult, Finding, Reader, Reply, Runbook
from runbooks._facts import check_facts

HOST = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]*|[0-9A-Fa-f:.]+|/[A-Za-z0-9_./-]*)$")
PORT = re.compile(r"^[0-9]{1,5}$")
DEFAULT_HOST = "127.0.0.1"


@dataclass(frozen=True)
class Server:
    """Where a datastore listens: a host and port, or (a host that is an absolute path) a unix socket."""

    host: str
    port: str

    @property
    def socket(self) -> bool:
        return self.host.startswith("/")


def server_facts(facts: Mapping[str, str], prefix: str, default_port: str) -> tuple[Server | None, list[Finding]]:
    """The server the valid ``<prefix>_host``/``<prefix>_port`` facts name (None when neither is
    set and valid; the other defaults), and a finding for each invalid one."""
    host, port = f"{prefix}_host", f"{prefix}_port"
    good, bad = check_facts(facts, {host: HOST, port: PORT})
    if not good:
        return None, bad
    return Server(good.get(host, DEFAULT_HOST), good.get(port, default_port)), bad


def one(reply: Reply) -> CommandResult:
    assert isinstance(reply, CommandResult), "one command was yielded"
    return reply


def session_findings(
    runbook: Runbook,
    result: CommandResult,
    reader: type[Reader],
    log: type[Reader],
    server_state: Set[str],
) -> list[Finding]:
    """A client session's output read by ``reader``; when the client failed, what its refusal says
    about the server (the ``log`` reader's kinds in ``server_state``), else the failure itself."""
    if result.error is not None or result.exit_status == 127:
        return [runbook.failed(result)]
    if result.exit_status == 0:
        return runbook.read(result, reader)
    refusal = [f for f in runbook.read(result, log) if f.kind in server_state]
    return refusal or [runbook.failed(result)]
