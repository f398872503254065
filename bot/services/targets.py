"""Resolving what a person or an alert names into the hosts to reach.

A name is, in order: a host of the config, a service of the config (its hosts), an alias of the
OpenSSH client config, or ``[user@]host[:port]``. Only the first two are allowed when the run comes
from an alert or a chat message (DESIGN §7: an alert cannot name an arbitrary host).
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.config import HostConfig, Settings
from bot.core.commands import Target, parse_address
from bot.errors import UsageError


class TargetRefused(UsageError):
    code = "target_refused"


@dataclass(frozen=True)
class Overrides:
    """Connection options given on the command line; they win over the config."""

    identity: str | None = None
    known_hosts: str | None = None
    ssh_config: str | None = None


def parse(text: str) -> tuple[str | None, str, int | None]:
    """``[user@]host[:port]`` split, or a UsageError that says what is wrong."""
    try:
        return parse_address(text)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _expand(path: str | None) -> str | None:
    return os.path.expanduser(path) if path else None


def ssh_config_aliases(path: str) -> list[str]:
    """Host patterns declared in an OpenSSH client config (``Host`` lines; negations skipped)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return []
    aliases: list[str] = []
    for line in text.splitlines():
        words = line.strip().split()
        if len(words) >= 2 and words[0].lower() == "host":
            aliases.extend(w for w in words[1:] if not w.startswith("!"))
    return aliases


def _from_config(name: str, host: HostConfig, settings: Settings, over: Overrides) -> Target:
    ssh = settings.ssh
    identity = _expand(over.identity or host.identity or ssh.identity)
    known = _expand(over.known_hosts or host.known_hosts or ssh.known_hosts)
    config = _expand(over.ssh_config or ssh.config)
    return Target(
        name=name,
        address=host.address,
        port=host.port,
        user=host.user or ssh.user,
        identity=(identity,) if identity else (),
        known_hosts=(known,) if known else (),
        host_key_policy=ssh.host_key_policy,
        ssh_config=(config,) if config and Path(config).is_file() else (),
        proxy_jump=host.proxy_jump,
        use_agent=ssh.use_agent,
        allow_sudo=host.allow_sudo,
        connect_timeout=ssh.connect_timeout,
        roles=tuple(host.roles),
        facts=dict(host.facts),
    )


def resolve(name: str, settings: Settings, over: Overrides | None = None, *, adhoc: bool = True) -> list[Target]:
    """The targets ``name`` stands for. ``adhoc`` allows hosts outside the config (CLI only)."""
    over = over or Overrides()
    if name in settings.hosts:
        return [_from_config(name, settings.hosts[name], settings, over)]
    if name in settings.services:
        return [_from_config(h, settings.hosts[h], settings, over) for h in settings.services[name].hosts]
    if not adhoc:
        raise TargetRefused(f"{name!r} is not a host or service of the configuration")
    config = _expand(over.ssh_config or settings.ssh.config)
    config_files = (config,) if config and Path(config).is_file() else ()
    if config_files:
        patterns = ssh_config_aliases(config_files[0])
        if any(fnmatch.fnmatchcase(name, p) for p in patterns if p != "*"):
            # asyncssh applies HostName, Port, User, IdentityFile and ProxyJump from the file.
            return [_adhoc(name, name, None, None, config_files, settings, over)]
    user, host, port = parse(name)
    return [_adhoc(name, host, port, user, config_files, settings, over)]


def _adhoc(  # noqa: PLR0917 - private builder, called twice above
    name: str,
    address: str,
    port: int | None,
    user: str | None,
    config_files: tuple[str, ...],
    settings: Settings,
    over: Overrides,
) -> Target:
    ssh = settings.ssh
    identity = _expand(over.identity or ssh.identity)
    known = _expand(over.known_hosts or ssh.known_hosts)
    return Target(
        name=name,
        address=address,
        port=port,
        user=user or (None if port is None else ssh.user),
        identity=(identity,) if identity else (),
        known_hosts=(known,) if known else (),
        host_key_policy=ssh.host_key_policy,
        ssh_config=config_files,
        use_agent=ssh.use_agent,
        connect_timeout=ssh.connect_timeout,
    )


def names(targets: Sequence[Target]) -> str:
    return ", ".join(t.name for t in targets)
