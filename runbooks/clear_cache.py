"""Clear a named cache directory: delete everything inside it, keep the directory (``mutating``: it runs
only after a second authorised person approves it in the incident's thread).

The parameter is a cache's NAME, never a path: the host's ``cache_dirs`` fact maps names to directories,
comma-separated ``NAME=PATH`` pairs::

    hosts:
      app-1:
        facts: {cache_dirs: "thumbs=/var/cache/app/thumbs,pages=/srv/app/cache"}

A NAME is 1 to 64 letters, digits and ``_.-`` (not starting with ``.`` or ``-``); a PATH is absolute,
written plainly (no ``.``, ``..`` or empty component) and strictly below one of the cache roots
(``bot.runbook.shapes.DEFAULT_ROOTS["cache"]``: /var/cache, /srv, /var/www, /opt, /var/lib), never a root
itself. A name that is not in the fact (or is there twice), or a path that breaks those rules, is refused
with one ``action.refused`` finding and nothing runs.

Then, in order:

1. ``stat -c %F -- PATH``: it must be a directory. A missing one is ``action.cache_missing`` (nothing to
   clear); a symbolic link or a file is refused (``find`` would not clear what a link points to, and
   the fact should name the directory itself);
2. ``du -sk -- PATH``: the size before;
3. ``find PATH -xdev -mindepth 1 -delete``: everything below PATH, depth first, PATH itself kept. PATH is
   absolute, so ``find`` cannot read it as an option or an expression; ``--`` would not help anyway:
   GNU find takes it as the end of ITS options (``-H -L -P``) but still reads a starting point that
   begins with ``-`` as an expression. ``find`` does not follow symbolic links (``-P``, the default: a
   link inside is deleted, not what it points to), and ``-xdev`` keeps it off other filesystems mounted
   inside;
4. ``du -sk -- PATH``: the size after.

Outcome: ``action.cache_cleared`` (ok: "cleared cache thumbs (/var/cache/app/thumbs) on app-1: 120 MiB →
4 KiB"), or ``action.cache_clear_failed`` (critical: what ``find`` could not delete, quoted, and the sizes).

Sudo: each command runs as the bot's login user first (a cache the bot's user may clear is cleared as
that user; root logins need nothing else). A command that meets ``Permission denied`` (or ``Operation
not permitted``) is run again through ``sudo -n``, and so is every command after it. Without the host's
``allow_sudo`` that retry is never sent and the finding says sudo is needed. ``deploy/sudoers/incident-bot``
allows these three commands as root only below /var/cache (FHS: data an application can regenerate);
other cache directories must be writable by the bot's user, or added to that file.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Mapping

from pydantic import BaseModel, ConfigDict, field_validator

from bot.runbook.api import ROOT, Command, CommandResult, Finding, PathArg, Reply, Runbook, Severity, Shape, Step, Steps
from bot.runbook.shapes import DEFAULT_ROOTS, below, clean_path

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
#: Directories a cache may be in (strictly below one of them).
ROOTS = DEFAULT_ROOTS["cache"]
_CACHE = PathArg("cache", below=True)
STAT_SECONDS = 10.0
DU_SECONDS = 60.0
#: ``find -delete`` of a big cache (many small files) takes a while; the runner's deadline still applies.
DELETE_SECONDS = 120.0
_DENIED = ("Permission denied", "Operation not permitted")
_SHOWN = 3


def valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def cache_dirs(facts: Mapping[str, str]) -> dict[str, list[str]]:
    """The ``cache_dirs`` fact: each valid NAME and the PATHs given for it (entries with an invalid name
    or no ``=`` are left out; a name given twice has two paths, which :class:`ClearCache` refuses)."""
    found: dict[str, list[str]] = {}
    for item in (facts.get("cache_dirs") or "").split(","):
        name, sep, path = item.partition("=")
        if sep and valid_name(name.strip()):
            found.setdefault(name.strip(), []).append(path.strip())
    return found


def path_problem(path: str) -> str | None:
    """Why ``path`` may not be cleared, or None: it must be clean, absolute and strictly below a cache root."""
    if not path.startswith("/"):
        return "is not an absolute path"
    if not clean_path(path):
        return "is not written plainly (no `.`, `..` or empty component, no control character)"
    if not below(path, ROOTS):
        text = path.rstrip("/") or "/"
        if text == "/" or text in ROOTS:
            return f"is a cache root itself; name a directory below it ({', '.join(ROOTS)})"
        return f"is not below a cache root ({', '.join(ROOTS)})"
    return None


def size(kib: int | None) -> str:
    """``du -k`` kibibytes for people: ``512 KiB``, ``120 MiB``, ``1.5 GiB``."""
    if kib is None:
        return "?"
    value, unit = float(kib), "KiB"
    for bigger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, bigger
    text = f"{value:.1f}".removesuffix(".0")
    return f"{text} {unit}"


def kib_of(result: CommandResult) -> int | None:
    """The total ``du -sk`` printed (its last ``SIZE<TAB>PATH`` line), also after errors about some files."""
    found = re.findall(r"(?m)^(\d+)\t", result.stdout)
    return int(found[-1]) if found else None


def _denied(result: CommandResult) -> bool:
    return result.error is None and result.exit_status != 0 and any(word in result.stderr for word in _DENIED)


def _sudo_refused(result: CommandResult) -> bool:
    """sudo itself said no (not allowed by the host's configuration, or no sudoers rule), not the command."""
    return result.error == "sudo_not_allowed" or (result.exit_status == 1 and result.stderr.startswith("sudo:"))


def _lines(text: str) -> tuple[str, ...]:
    return tuple(line for line in text.strip().splitlines()[:_SHOWN] if line.strip())


class ClearCacheParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The NAME of a cache in the host's ``cache_dirs`` fact (never a path).
    cache: str

    @field_validator("cache")
    @classmethod
    def _cache(cls, cache: str) -> str:
        if not valid_name(cache):
            raise ValueError(
                f"invalid cache name {cache[:60]!r}: a name from the host's cache_dirs fact "
                "(letters, digits and _.-), not a path"
            )
        return cache


class ClearCache(Runbook):
    name = "clear_cache"
    title = "Clear a named cache directory"
    mutating = True
    Params = ClearCacheParams
    shapes = (
        Shape("stat", "-c", "%F", "--", _CACHE, sudo=ROOT),
        Shape("du", "-sk", "--", _CACHE, sudo=ROOT),
        Shape("find", _CACHE, "-xdev", "-mindepth", "1", "-delete", sudo=ROOT),
    )

    def __init__(self, params: BaseModel | None = None, facts: Mapping[str, str] | None = None) -> None:
        super().__init__(params, facts)
        #: Run through sudo from now on (the login user met "Permission denied").
        self._sudo = False
        #: sudo's own refusal (or ``sudo_not_allowed``), once met: no further retry is sent.
        self._no_sudo: CommandResult | None = None

    def steps(self) -> Steps:
        params = self.params
        assert isinstance(params, ClearCacheParams)
        name = params.cache
        known = cache_dirs(self.facts)
        paths = known.get(name)
        if not paths:
            listed = ", ".join(sorted(known)) or "the host has none"
            return [
                self._refused(name, f"there is no cache named {name!r} in this host's `cache_dirs` fact ({listed})")
            ]
        if len(paths) > 1:
            return [
                self._refused(name, f"the `cache_dirs` fact names {name!r} {len(paths)} times ({', '.join(paths)})")
            ]
        path = paths[0]
        problem = path_problem(path)
        if problem is not None:
            return [self._refused(name, f"its path {path[:200]!r} in the `cache_dirs` fact {problem}")]
        path = path.rstrip("/")

        kind = yield from self._run(("stat", "-c", "%F", "--", path), STAT_SECONDS)
        if kind.error is not None:
            return [self.failed(kind)]
        if kind.exit_status != 0 and "No such file or directory" in kind.stderr:
            return [
                Finding(
                    kind="action.cache_missing",
                    severity=Severity.WARNING,
                    summary=f"cache {name} ({path}) does not exist on {kind.host}: nothing to clear",
                    evidence=_lines(kind.stderr),
                    data={"cache": name, "path": path},
                    host=kind.host,
                    runbook=self.name,
                )
            ]
        if kind.exit_status != 0:
            return [self._failed(name, path, kind, f"cannot look at it{self._sudo_note()}")]
        what = kind.stdout.strip()
        if what == "symbolic link":
            why = f"{path} is a symbolic link: name the directory itself in `cache_dirs` (find does not follow links)"
            return [self._refused(name, why)]
        if what != "directory":
            return [self._refused(name, f"{path} is a {what or 'thing stat did not name'}, not a directory")]

        before = yield from self._run(("du", "-sk", "--", path), DU_SECONDS)
        if before.error is not None:
            return [self.failed(before)]
        if not before.ok:
            why = f"cannot read all of it{self._sudo_note()}; nothing was deleted"
            return [self._failed(name, path, before, why, before=kib_of(before))]

        delete = yield from self._run(("find", path, "-xdev", "-mindepth", "1", "-delete"), DELETE_SECONDS)
        after = yield from self._run(("du", "-sk", "--", path), DU_SECONDS)
        before_kib, after_kib = kib_of(before), kib_of(after) if after.error is None else None
        if delete.ok:
            return [
                Finding(
                    kind="action.cache_cleared",
                    severity=Severity.OK,
                    summary=f"cleared cache {name} ({path}) on {delete.host}: {size(before_kib)} → {size(after_kib)}",
                    evidence=(*_lines(before.stdout), *_lines(after.stdout)),
                    data={
                        "cache": name,
                        "path": path,
                        "before_kib": before_kib,
                        "after_kib": after_kib,
                        "sudo": delete.command.sudo,
                    },
                    host=delete.host,
                    runbook=self.name,
                )
            ]
        if delete.error is not None:
            why = self.failed(delete).summary + "; part of it may be deleted"
        else:
            why = f"`find` could not delete everything{self._sudo_note()}"
        return [self._failed(name, path, delete, why, before=before_kib, after=after_kib)]

    def _run(self, argv: tuple[str, ...], seconds: float) -> Generator[Step, Reply, CommandResult]:
        """``argv`` as the login user, or through sudo once a command met "Permission denied" as that user
        (it is then sent again with sudo, unless sudo was already refused on this host)."""
        result = yield Command.of(*argv, timeout=seconds, sudo=self._sudo)
        assert isinstance(result, CommandResult)
        if self._sudo or self._no_sudo is not None or not _denied(result):
            return result
        retry = yield Command.of(*argv, timeout=seconds, sudo=True)
        assert isinstance(retry, CommandResult)
        if _sudo_refused(retry):
            self._no_sudo = retry
            return result
        self._sudo = True
        return retry

    def _sudo_note(self) -> str:
        """Why sudo did not help, when it was tried."""
        refusal = self._no_sudo
        if refusal is None:
            return ""
        if refusal.error == "sudo_not_allowed":
            return " as the bot's user, and this host's configuration does not allow sudo"
        said = refusal.stderr.strip().splitlines()[0]
        return f" as the bot's user, and sudo refused ({said}): see deploy/sudoers/incident-bot"

    def _refused(self, name: str, why: str) -> Finding:
        return Finding(
            kind="action.refused",
            severity=Severity.WARNING,
            summary=f"did not clear cache {name}: {why}",
            data={"cache": name, "fact": "cache_dirs"},
            runbook=self.name,
        )

    def _failed(
        self,
        name: str,
        path: str,
        result: CommandResult,
        why: str,
        *,
        before: int | None = None,
        after: int | None = None,
    ) -> Finding:
        """``action.cache_clear_failed`` quoting ``result``'s errors, with the sizes before and after when known."""
        sizes = f" ({size(before)} → {size(after)})" if before is not None and after is not None else ""
        return Finding(
            kind="action.cache_clear_failed",
            severity=Severity.CRITICAL,
            summary=f"clearing cache {name} ({path}) on {result.host} failed: {why}{sizes}",
            evidence=_lines(result.stderr),
            data={
                "cache": name,
                "path": path,
                "before_kib": before,
                "after_kib": after,
                "exit_status": result.exit_status,
                "error": result.error,
                "sudo": result.command.sudo,
            },
            host=result.host,
            runbook=self.name,
        )
