"""Commands run on hosts, their results, and the hosts they run on.

A :class:`Command` is an argv tuple, never a shell string: the SSH adapter quotes it with
``shlex.join`` and nothing else builds a command line. The only shell a runbook may use is a fixed
pipeline (:meth:`Command.pipeline`) whose text is a constant of the runbook, with no interpolation;
values go in as positional parameters (``"$1"``), which the shell never re-parses.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Environment every remote command gets: no pagers, no colours, C locale so outputs parse.
BASE_ENV: dict[str, str] = {"LC_ALL": "C", "SYSTEMD_PAGER": "cat", "PAGER": "cat", "SYSTEMD_COLORS": "0"}
_ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")


class Command(BaseModel):
    """One command for a host: argv, an optional per-command timeout, whether it needs ``sudo -n``."""

    model_config = ConfigDict(frozen=True)

    argv: tuple[str, ...] = Field(min_length=1)
    timeout: float | None = Field(default=None, gt=0, le=600)
    sudo: bool = False
    label: str = ""

    @field_validator("argv")
    @classmethod
    def _no_nul(cls, argv: tuple[str, ...]) -> tuple[str, ...]:
        for arg in argv:
            if "\x00" in arg:
                raise ValueError("an argument contains a NUL byte")
        return argv

    @classmethod
    def of(cls, *argv: str, timeout: float | None = None, sudo: bool = False, label: str = "") -> Command:
        return cls(argv=argv, timeout=timeout, sudo=sudo, label=label)

    @classmethod
    def pipeline(
        cls, script: str, *args: str, timeout: float | None = None, sudo: bool = False, label: str = ""
    ) -> Command:
        """A fixed shell pipeline; ``args`` reach it as ``$1``, ``$2``… and are never parsed as shell."""
        return cls(argv=("sh", "-c", script, "sh", *args), timeout=timeout, sudo=sudo, label=label or script)

    @property
    def display(self) -> str:
        return self.label or " ".join(self.argv)


class CommandResult(BaseModel):
    """What came back: exit status (None when the command never finished), output, time, error code."""

    model_config = ConfigDict(frozen=True)

    command: Command
    host: str
    exit_status: int | None
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    #: Our error code when the command did not complete (``command_timeout``, ``host_unreachable``…).
    error: str | None = None
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None and self.exit_status == 0


class Target(BaseModel):
    """A host to reach over SSH, as resolved from the config, an ssh_config alias or ``user@host:port``."""

    model_config = ConfigDict(frozen=True)

    name: str
    address: str
    #: None: whatever the OpenSSH client config says for this name, else 22.
    port: int | None = Field(default=22, ge=1, le=65535)
    user: str | None = None
    identity: tuple[str, ...] = ()
    known_hosts: tuple[str, ...] = ()
    #: ``strict`` (default) or ``accept-new`` (trust on first use, recording the key).
    host_key_policy: Literal["strict", "accept-new"] = "strict"
    ssh_config: tuple[str, ...] = ()
    proxy_jump: str | None = None
    use_agent: bool = False
    allow_sudo: bool = False
    connect_timeout: float = Field(default=5.0, gt=0)
    roles: tuple[str, ...] = ()
    facts: dict[str, str] = Field(default_factory=dict)

    @field_validator("facts")
    @classmethod
    def _fact_names(cls, facts: dict[str, str]) -> dict[str, str]:
        for key in facts:
            if not re.match(r"^[a-z][a-z0-9_]*$", key):
                raise ValueError(f"fact name {key!r} must be lower_snake_case")
        return facts


_HOST_RE = re.compile(r"^[A-Za-z0-9_.%-]+$")
_IPV6_RE = re.compile(r"^[0-9A-Fa-f:.]+(%[A-Za-z0-9_.-]+)?$")
_USER_RE = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.@+-]*$")


def parse_address(text: str) -> tuple[str | None, str, int | None]:
    """Split ``[user@]host[:port]`` (IPv6 as ``[::1]:2222``, ``[::1]`` or bare ``::1``) into its parts.

    Raises ValueError with a message that says what is wrong; nothing that could be read as an
    ssh option (a leading ``-``) or contains whitespace is accepted.
    """
    raw = text.strip()
    if not raw:
        raise ValueError("empty SSH target: expected [user@]host[:port]")
    user: str | None = None
    rest = raw
    if "@" in raw:
        user, _, rest = raw.rpartition("@")
        if not _USER_RE.match(user):
            raise ValueError(f"invalid user name in SSH target {text!r}")
    port_text: str | None = None
    if rest.startswith("["):
        host, sep, tail = rest[1:].partition("]")
        if not sep or not _IPV6_RE.match(host) or ":" not in host:
            raise ValueError(f"invalid bracketed IPv6 address in SSH target {text!r}")
        if tail:
            if not tail.startswith(":"):
                raise ValueError(f"unexpected text after ']' in SSH target {text!r}")
            port_text = tail[1:]
    elif rest.count(":") > 1:
        host = rest  # a bare IPv6 address: no port possible without brackets
        if not _IPV6_RE.match(host):
            raise ValueError(f"invalid IPv6 address in SSH target {text!r}")
    else:
        host, sep, port_part = rest.partition(":")
        port_text = port_part if sep else None
        if not host or not _HOST_RE.match(host) or host.startswith(("-", ".")):
            raise ValueError(f"invalid host name in SSH target {text!r}")
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"invalid port {port_text!r} in SSH target {text!r}: expected 1-65535")
        port = int(port_text)
    return user, host, port
