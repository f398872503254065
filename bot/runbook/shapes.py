"""Argv shapes: the exact command lines a runbook may send, with typed placeholders for the values.

A runbook declares one :class:`Shape` per kind of command it yields (``Runbook.shapes``). A shape is a
sequence of tokens, each one of:

* a ``str``: that exact argument (a program name, an option, a runbook's constant ``sh -c`` script);
* a :class:`Slot`: one argument of a type: :class:`Int` in a range, :class:`PathArg` under the allowed
  roots of its kind (or strictly below them, for a directory a command deletes in), :class:`Host`,
  :class:`HostPort`, :class:`Port`, :class:`Unit`, :class:`Name`, :class:`Url`, :class:`Program` (a named
  binary in a system directory), :class:`Prefixed` (``--port=`` + a slot), :class:`Either` (one of
  several slots);
* a :class:`Repeat` of a token sequence (``Repeat(PathArg("log"), 1, 12)``; :func:`Opt` is 0 or 1)
  or an :class:`Alt` of sequences.

``Shape.sudo`` names the accounts the command may also run as through ``sudo -n [-u USER]``; every
shape may run without sudo. The forced-command gate (``incident-bot gate``, :mod:`bot.gate`) allows a
command line only when it matches a shape of an installed runbook; ``incident-bot gate --list`` prints
them all (:meth:`Shape.describe`). Matching is pure: paths are checked as text against a
:class:`Policy` (the allowed roots) and, when the policy says so, by their resolved location too.
"""

from __future__ import annotations

import ipaddress
import os
import posixpath
import re
import shlex
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_ROOTS",
    "ROOT",
    "Alt",
    "Either",
    "Host",
    "HostPort",
    "Int",
    "Name",
    "Opt",
    "PathArg",
    "Policy",
    "Port",
    "Prefixed",
    "Program",
    "Repeat",
    "Shape",
    "Slot",
    "Token",
    "Unit",
    "Url",
]

#: ``sudo`` value of a shape that may run as root through ``sudo -n``.
ROOT = ("root",)

#: Where each kind of path may be, before ``--root`` adds the operator's own directories.
DEFAULT_ROOTS: Mapping[str, tuple[str, ...]] = {
    # logs the runbooks tail
    "log": ("/var/log",),
    # proxy configuration read by nginx -T, apache2ctl, haproxy -c, grep, cat
    "config": (
        "/etc/nginx",
        "/etc/apache2",
        "/etc/httpd",
        "/etc/haproxy",
        "/usr/local/nginx",
        "/usr/local/etc/nginx",
        "/usr/local/etc/haproxy",
        "/usr/local/apache2",
        "/usr/share/nginx",
        "/opt",
    ),
    # pid files read with cat
    "run": ("/run", "/var/run"),
    # unix sockets and socket directories connected to (curl, psql, mysql, redis-cli)
    "socket": ("/run", "/var/run", "/tmp", "/var/lib/mysql", "/var/lib/redis"),
    # application directories: deployed files listed (find), maintenance flags (ls -ld)
    "app": ("/srv", "/var/www", "/opt"),
    # filesystems asked about with df (statfs only: any absolute path)
    "any": ("/",),
    # cache directories the clear_cache runbook empties (``find DIR -xdev -mindepth 1 -delete``): always
    # strictly below one of these (``PathArg("cache", below=True)``), never a root itself; the gate's
    # ``--root`` adds to these as to every kind (``--read-only`` refuses the deletion everywhere)
    "cache": ("/var/cache", "/srv", "/var/www", "/opt", "/var/lib"),
}
#: Directories a :class:`Program` may be started from (besides its bare name through PATH): root's own,
#: never a ``--root`` directory, which may be writable by someone else.
SYSTEM_BIN = (
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/local/nginx/sbin",
    "/usr/local/openresty/nginx/sbin",
    "/opt/nginx/sbin",
)

_CTRL = re.compile(r"[\x00-\x1f\x7f]")
_DNS = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_UNIT = re.compile(r"^[A-Za-z0-9@._:-]{1,256}$")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.$-]{0,62}$")
_URL = re.compile(r"^https?://[^\s\x00-\x1f\x7f/?#@]+(?:[/?#][^\s\x00-\x1f\x7f]*)?$")
_DIGITS = re.compile(r"^(?:0|[1-9][0-9]{0,11})$")


@dataclass(frozen=True)
class Policy:
    """Where paths may point: roots per path kind; ``resolve`` also checks where symlinks lead."""

    roots: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_ROOTS))
    resolve: bool = True

    def with_roots(self, extra: Sequence[str]) -> Policy:
        """This policy with ``extra`` directories added to every kind (the operator's ``--root``)."""
        roots = {kind: (*paths, *extra) for kind, paths in self.roots.items()}
        return Policy(roots, self.resolve)


def clean_path(value: str) -> bool:
    """An absolute path with no control characters, no empty, ``.`` or ``..`` component (a trailing
    ``/`` is allowed), at most 4096 characters."""
    if not value.startswith("/") or _CTRL.search(value) or len(value) > 4096:
        return False
    body = value[1:-1] if value.endswith("/") and value != "/" else value[1:]
    return value == "/" or all(part not in ("", ".", "..") for part in body.split("/"))


def under(path: str, roots: Sequence[str]) -> bool:
    """``path`` is one of ``roots`` or inside one of them (component-wise, not by string prefix)."""
    text = path.rstrip("/") or "/"
    for root in roots:
        base = root.rstrip("/") or "/"
        if base in ("/", text) or text.startswith(base + "/"):
            return True
    return False


def valid_host(value: str) -> bool:
    """A DNS name or an IP literal (IPv6 without brackets), never something read as an option."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return bool(_DNS.match(value)) and not value.startswith("-")
    return True


class Slot(ABC):
    """One argument of a type; ``label`` is how ``--list`` shows it."""

    label: str = "arg"

    @abstractmethod
    def accepts(self, value: str, policy: Policy) -> bool:
        """Whether ``value`` may stand here under ``policy``."""

    def describe(self) -> str:
        return f"<{self.label}>"


@dataclass(frozen=True)
class Int(Slot):
    """A decimal integer ``lo``..``hi`` written plainly (no sign, no leading zero)."""

    lo: int
    hi: int

    def accepts(self, value: str, policy: Policy) -> bool:
        return bool(_DIGITS.match(value)) and self.lo <= int(value) <= self.hi

    def describe(self) -> str:
        return f"<int {self.lo}..{self.hi}>"


def below(path: str, roots: Sequence[str]) -> bool:
    """``path`` is strictly inside one of ``roots``: :func:`under` one, and none of them itself (nor ``/``)."""
    text = path.rstrip("/") or "/"
    return text != "/" and under(text, roots) and all(text != (root.rstrip("/") or "/") for root in roots)


@dataclass(frozen=True)
class PathArg(Slot):
    """A clean absolute path (:func:`clean_path`) under the policy's roots of one of ``kinds``.

    With ``policy.resolve`` the path's resolved location (symlinks followed) must be under those
    roots too, so a link planted in a log directory does not lead elsewhere. With ``below`` the path
    (and its resolved location) must be strictly inside a root, never a root itself (:func:`below`):
    what a command that deletes under the path needs.
    """

    kinds: tuple[str, ...]
    below: bool = False

    def __init__(self, *kinds: str, below: bool = False) -> None:
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "below", below)

    def accepts(self, value: str, policy: Policy) -> bool:
        if not clean_path(value):
            return False
        roots = [root for kind in self.kinds for root in policy.roots.get(kind, ())]
        inside = below if self.below else under
        if not inside(value, roots):
            return False
        return not policy.resolve or inside(os.path.realpath(value), [os.path.realpath(r) for r in roots] + roots)

    def describe(self) -> str:
        return f"<{'|'.join(self.kinds)} path{' below a root' if self.below else ''}>"


@dataclass(frozen=True)
class Host(Slot):
    """A host name or IP literal."""

    def accepts(self, value: str, policy: Policy) -> bool:
        return valid_host(value)

    def describe(self) -> str:
        return "<host>"


@dataclass(frozen=True)
class Port(Slot):
    """A TCP port, 1 to 65535."""

    def accepts(self, value: str, policy: Policy) -> bool:
        return Int(1, 65535).accepts(value, policy)

    def describe(self) -> str:
        return "<port>"


@dataclass(frozen=True)
class HostPort(Slot):
    """``host:port`` or ``[v6]:port``."""

    def accepts(self, value: str, policy: Policy) -> bool:
        if value.startswith("["):
            host, sep, port = value[1:].partition("]:")
            return bool(sep) and ":" in host and valid_host(host) and Port().accepts(port, policy)
        host, sep, port = value.rpartition(":")
        return bool(sep) and ":" not in host and valid_host(host) and Port().accepts(port, policy)

    def describe(self) -> str:
        return "<host:port>"


@dataclass(frozen=True)
class Unit(Slot):
    """A systemd unit name (letters, digits, ``@._:-``; not starting with ``-``)."""

    def accepts(self, value: str, policy: Policy) -> bool:
        return bool(_UNIT.match(value)) and not value.startswith("-")

    def describe(self) -> str:
        return "<unit>"


@dataclass(frozen=True)
class Name(Slot):
    """A database role or database name (letters, digits, ``_.$-``, at most 63 characters)."""

    def accepts(self, value: str, policy: Policy) -> bool:
        return bool(_NAME.match(value))

    def describe(self) -> str:
        return "<name>"


@dataclass(frozen=True)
class Url(Slot):
    """An ``http://`` or ``https://`` URL with no whitespace, control characters or user info, whose host
    is not a link-local address (a cloud's instance metadata service: no runbook probes it)."""

    def accepts(self, value: str, policy: Policy) -> bool:
        if not _URL.match(value) or len(value) > 4096:
            return False
        host = value.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
        host = host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0]
        try:
            return not ipaddress.ip_address(host).is_link_local
        except ValueError:
            return True

    def describe(self) -> str:
        return "<url>"


@dataclass(frozen=True)
class Program(Slot):
    """A program by one of ``names``: bare (found through PATH) or an absolute path in one of the
    :data:`SYSTEM_BIN` directories (a source build's ``/usr/local/nginx/sbin`` included)."""

    names: tuple[str, ...]

    def __init__(self, *names: str) -> None:
        object.__setattr__(self, "names", names)

    def accepts(self, value: str, policy: Policy) -> bool:
        if value in self.names:
            return True
        if not clean_path(value) or value.endswith("/") or posixpath.basename(value) not in self.names:
            return False
        return posixpath.dirname(value) in SYSTEM_BIN

    def describe(self) -> str:
        return f"<{'|'.join(self.names)} binary>"


@dataclass(frozen=True)
class Prefixed(Slot):
    """``prefix``, a value ``slot`` accepts and ``suffix``, in one argument (``--port=5432``)."""

    prefix: str
    slot: Slot
    suffix: str = ""

    def accepts(self, value: str, policy: Policy) -> bool:
        if not (value.startswith(self.prefix) and value.endswith(self.suffix)):
            return False
        inner = value[len(self.prefix) : len(value) - len(self.suffix)]
        return len(value) >= len(self.prefix) + len(self.suffix) and self.slot.accepts(inner, policy)

    def describe(self) -> str:
        text = self.prefix + self.slot.describe() + self.suffix
        return f'"{text}"' if any(c.isspace() for c in text) else text


@dataclass(frozen=True)
class Either(Slot):
    """A value any one of ``slots`` accepts."""

    slots: tuple[Slot, ...]

    def __init__(self, *slots: Slot) -> None:
        object.__setattr__(self, "slots", slots)

    def accepts(self, value: str, policy: Policy) -> bool:
        return any(slot.accepts(value, policy) for slot in self.slots)

    def describe(self) -> str:
        return "|".join(slot.describe() for slot in self.slots)


@dataclass(frozen=True)
class Repeat:
    """``tokens`` repeated ``lo`` to ``hi`` times."""

    tokens: tuple[Token, ...]
    lo: int
    hi: int

    def __init__(self, token: Token | tuple[Token, ...], lo: int, hi: int) -> None:
        object.__setattr__(self, "tokens", token if isinstance(token, tuple) else (token,))
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)


@dataclass(frozen=True)
class Alt:
    """One of several token sequences."""

    options: tuple[tuple[Token, ...], ...]

    def __init__(self, *options: Token | tuple[Token, ...]) -> None:
        object.__setattr__(self, "options", tuple(o if isinstance(o, tuple) else (o,) for o in options))


Token = str | Slot | Repeat | Alt


def Opt(*tokens: Token) -> Repeat:
    """``tokens`` once or not at all."""
    return Repeat(tuple(tokens), 0, 1)


@dataclass(frozen=True)
class _Match:
    """Backtracking over one argv: every position where a token sequence can end."""

    argv: Sequence[str]
    policy: Policy

    def ends(self, tokens: Sequence[Token], at: int) -> Iterator[int]:
        if not tokens:
            yield at
            return
        head, rest = tokens[0], tokens[1:]
        if isinstance(head, (str, Slot)):
            argv = self.argv
            if at < len(argv) and (argv[at] == head if isinstance(head, str) else head.accepts(argv[at], self.policy)):
                yield from self.ends(rest, at + 1)
            return
        if isinstance(head, Alt):
            for option in head.options:
                for end in self.ends(option, at):
                    yield from self.ends(rest, end)
            return
        yield from self.repeat(head, 0, rest, at)

    def repeat(self, rep: Repeat, done: int, rest: Sequence[Token], at: int) -> Iterator[int]:
        if done >= rep.lo:
            yield from self.ends(rest, at)
        if done < rep.hi:
            for end in self.ends(rep.tokens, at):
                if end > at:  # each repetition consumes something: no endless empty loops
                    yield from self.repeat(rep, done + 1, rest, end)


def _describe(tokens: Sequence[Token]) -> str:
    parts: list[str] = []
    for token in tokens:
        if isinstance(token, str):
            parts.append(shlex.quote(token))
        elif isinstance(token, Slot):
            parts.append(token.describe())
        elif isinstance(token, Alt):
            parts.append("(" + " | ".join(_describe(option) for option in token.options) + ")")
        else:
            inner = _describe(token.tokens)
            if (token.lo, token.hi) == (0, 1):
                parts.append(f"[{inner}]")
            else:
                parts.append(f"({inner}){{{token.lo},{token.hi}}}")
    return " ".join(parts)


@dataclass(frozen=True)
class Shape:
    """One kind of command line a runbook sends: its tokens, and who it may run as through sudo."""

    tokens: tuple[Token, ...]
    sudo: tuple[str, ...] = ()

    def __init__(self, *tokens: Token, sudo: tuple[str, ...] = ()) -> None:
        if not tokens or not isinstance(tokens[0], (str, Program)):
            raise ValueError("a shape starts with its program: a name, or a Program slot")
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "sudo", sudo)

    @property
    def program(self) -> str:
        """The program's name (the first of a :class:`Program` slot's names)."""
        first = self.tokens[0]
        return first if isinstance(first, str) else first.names[0] if isinstance(first, Program) else ""

    def matches(self, argv: Sequence[str], policy: Policy) -> bool:
        """Whether ``argv`` is exactly this shape (every argument accounted for) under ``policy``."""
        return any(end == len(argv) for end in _Match(argv, policy).ends(self.tokens, 0))

    def describe(self) -> str:
        return _describe(self.tokens)
