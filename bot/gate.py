"""The forced-command gate: what the bot's SSH key may run on a host (``incident-bot gate``).

Installed as ``restrict,command="/usr/local/bin/incident-bot gate"`` before the bot's key in the bot
account's ``authorized_keys``, it is what sshd runs for every session of that key, whatever the client
asked; the asked command line is in ``SSH_ORIGINAL_COMMAND``. The gate runs it only when it is exactly
a command line the bot itself sends:

1. a command at all (a login or a subsystem such as sftp has none that passes);
2. plain words: ``shlex.join(shlex.split(line)) == line``, the form the SSH adapter's ``shlex.join``
   produces, so ``;``, ``&&``, ``|``, ``$(…)``, backticks, redirections, globs and newlines outside
   quotes never pass (inside quotes they are one argument's text, never shell syntax: nothing here
   runs a shell);
3. the adapter's wrapper (:func:`bot.adapters.ssh.build_argv`): ``env`` with exactly :data:`BASE_ENV`,
   ``timeout -k 2 SECONDS``, optionally ``sudo -n`` or ``sudo -n -u ACCOUNT``;
4. the rest matches a :class:`~bot.runbook.shapes.Shape` of an installed runbook (the
   ``incident_bot.runbooks`` entry points), with paths under the allowed roots, and, after sudo, only
   a shape that names that account;
5. with ``--read-only``, a shape of a read-only runbook: the shapes only mutating runbooks declare
   (``systemctl restart``, ``find … -delete`` and the checks around them) are refused, so the bot can
   read the host but never change it, whatever is approved in chat. A command a read-only runbook
   sends too still passes.

Then the whole argv is executed directly (``os.execvp``: no shell). Anything else exits 126 with one
line on stderr and in syslog (authpriv, ``incident-bot-gate``) saying why; the line shows the refused
command (at most 200 characters, escaped) and the client's address, nothing of the environment.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import syslog
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from bot.core.commands import BASE_ENV
from bot.runbook.registry import load
from bot.runbook.shapes import Policy, Shape, clean_path

#: Exit status of a refused command (POSIX shells use it for "found but cannot be run").
REFUSED = 126
#: ``timeout -k`` as the SSH adapter sends it (``bot.adapters.ssh.KILL_AFTER``; a test keeps them equal).
KILL_AFTER = "2"
#: Longest ``timeout`` the gate lets a command have, in seconds.
MAX_SECONDS = 3600.0
WRAPPER = ("env", *(f"{name}={value}" for name, value in BASE_ENV.items()), "timeout", "-k", KILL_AFTER)
_SECONDS = re.compile(r"^[0-9]{1,4}(?:\.[0-9]{1,3})?$")
_ACCOUNT = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
SHOWN = 200


@dataclass(frozen=True)
class Entry:
    """One allowed shape, the runbook that declares it, and whether that runbook changes the host."""

    runbook: str
    shape: Shape
    mutating: bool = False


@dataclass(frozen=True)
class Verdict:
    """The argv to execute, or why not (``argv`` empty)."""

    argv: tuple[str, ...] = ()
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return bool(self.argv)


def installed() -> list[Entry]:
    """Every shape of every installed runbook (broken plugins are left out: they run nowhere)."""
    catalog = load()
    return [
        Entry(name, shape, runbook.mutating)
        for name, runbook in sorted(catalog.runbooks.items())
        for shape in runbook.shapes
    ]


def check(line: str | None, entries: Sequence[Entry], policy: Policy, *, read_only: bool = False) -> Verdict:
    """Whether ``line`` (``SSH_ORIGINAL_COMMAND``) may run, and the argv to run; ``read_only`` leaves the
    shapes of mutating runbooks out."""
    if not line:
        return Verdict(reason="no command asked (an interactive login or a subsystem)")
    try:
        argv = shlex.split(line)
    except ValueError:
        return Verdict(reason="unbalanced quoting")
    if not argv or shlex.join(argv) != line:
        return Verdict(reason="not plain words as the bot quotes them (shell syntax, or quoting it never sends)")
    if tuple(argv[: len(WRAPPER)]) != WRAPPER:
        return Verdict(reason="not the bot's wrapper (env " + " ".join(WRAPPER[1:]) + " SECONDS …)")
    rest = argv[len(WRAPPER) :]
    seconds = rest[0] if rest else ""
    if not _SECONDS.match(seconds) or not 0 < float(seconds) <= MAX_SECONDS:
        return Verdict(reason=f"timeout must be 0.001 to {MAX_SECONDS:g} seconds")
    command, account = rest[1:], None
    if command[:2] == ["sudo", "-n"]:
        account, command = "root", command[2:]
        if command[:1] == ["-u"]:
            account, command = (command[1] if len(command) > 1 else ""), command[2:]
            if not _ACCOUNT.match(account):
                return Verdict(reason="sudo -u needs an account name")
    if not command:
        return Verdict(reason="no command after the wrapper")
    fits = [e for e in entries if e.shape.matches(command, policy)]
    if not fits:
        return Verdict(reason=f"no installed runbook sends this `{command[0][:40]}` command")
    if read_only and all(e.mutating for e in fits):
        names = ", ".join(sorted({e.runbook for e in fits}))
        what = command[0][:40]
        return Verdict(
            reason=f"read-only gate: only a runbook that changes the host ({names}) sends this `{what}` command"
        )
    if read_only:
        fits = [e for e in fits if not e.mutating]
    if account is not None and not any(account in e.shape.sudo for e in fits):
        return Verdict(reason=f"no runbook runs this `{command[0][:40]}` command with sudo as {account}")
    return Verdict(argv=tuple(argv))


def policy_for(roots: Sequence[str]) -> Policy:
    """The default roots plus the operator's ``--root`` directories (each a clean absolute path)."""
    for root in roots:
        if not clean_path(root) or root == "/":
            raise ValueError(f"--root {root!r} is not an absolute directory below / (no .., no control characters)")
    return Policy().with_roots(list(roots))


def shown(line: str | None) -> str:
    """The refused line for a log: escaped (newlines, quotes, control characters), at most 200 characters."""
    if line is None:
        return "(none)"
    text = json.dumps(line[:SHOWN], ensure_ascii=True)
    return text + ("…" if len(line) > SHOWN else "")


def log_refusal(reason: str, line: str | None, environ: Mapping[str, str]) -> None:
    """One line to stderr (the bot records it) and to syslog authpriv (the host's admin sees it)."""
    client = (environ.get("SSH_CONNECTION") or "").split(" ")[0] or "unknown"
    message = f"refused a command from {client}: {reason}: {shown(line)}"
    sys.stderr.write(f"incident-bot gate: {message}\n")
    sys.stderr.flush()
    syslog.openlog("incident-bot-gate", syslog.LOG_PID, syslog.LOG_AUTHPRIV)
    syslog.syslog(syslog.LOG_WARNING, message)
    syslog.closelog()


def run(
    environ: Mapping[str, str],
    policy: Policy,
    entries: Sequence[Entry] | None = None,
    execute: Callable[[str, list[str]], object] = os.execvp,
    *,
    read_only: bool = False,
) -> int:
    """Check ``SSH_ORIGINAL_COMMAND`` and execute it (never returns then); else log and return 126.
    ``read_only`` (``--read-only``) refuses the commands only mutating runbooks send."""
    line = environ.get("SSH_ORIGINAL_COMMAND")
    verdict = check(line, installed() if entries is None else entries, policy, read_only=read_only)
    if not verdict.allowed:
        log_refusal(verdict.reason, line, environ)
        return REFUSED
    argv = list(verdict.argv)
    try:
        execute(argv[0], argv)
    except FileNotFoundError:
        sys.stderr.write(f"incident-bot gate: {argv[0]}: not found\n")
        return 127
    except OSError as exc:
        sys.stderr.write(f"incident-bot gate: {argv[0]}: {exc.strerror or 'cannot run'}\n")
        return REFUSED
    return REFUSED  # os.execvp never returns; a stand-in ``execute`` may


def listing(entries: Sequence[Entry], policy: Policy, *, as_json: bool, read_only: bool = False) -> str:
    """The allowed shapes (``--list``): one line each, ``RUNBOOK SUDO SHAPE`` (a mutating runbook's marked
    ``(mutating runbook)``), or JSON with the roots; ``read_only`` leaves mutating runbooks' shapes out."""
    shown = [e for e in entries if not (read_only and e.mutating)]
    if as_json:
        shapes = [
            {
                "runbook": e.runbook,
                "program": e.shape.program,
                "sudo": list(e.shape.sudo),
                "shape": e.shape.describe(),
                "mutating": e.mutating,
            }
            for e in shown
        ]
        roots = {kind: list(paths) for kind, paths in policy.roots.items()}
        body = {"wrapper": [*WRAPPER, "SECONDS"], "read_only": read_only, "roots": roots, "shapes": shapes}
        return json.dumps(body, indent=1) + "\n"
    lines = [f"# every command runs as: {' '.join(WRAPPER)} SECONDS [sudo -n [-u ACCOUNT]] COMMAND"]
    lines += [f"# <{kind} path> under: {' '.join(paths)}" for kind, paths in policy.roots.items()]
    changing = sorted({e.runbook for e in entries if e.mutating})
    if changing and read_only:
        lines.append(f"# read-only: the commands of {', '.join(changing)} (they change the host) are refused")
    elif changing:
        lines.append(f"# {', '.join(changing)} change the host (after an approval in chat); --read-only refuses them")
    for e in shown:
        sudo = "sudo:" + ",".join(e.shape.sudo) if e.shape.sudo else "-"
        mark = "  (mutating runbook)" if e.mutating else ""
        lines.append(f"{e.runbook:<15} {sudo:<14} {e.shape.describe()}{mark}")
    return "\n".join(lines) + "\n"
