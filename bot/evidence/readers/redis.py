"""Redis: ``redis-cli ping``, client errors in app logs, and the server log's persistence errors.

An app whose Redis (cache, sessions, queue) is down answers 500 the same way as with a database that
is down, so a Redis that refuses connections, is still loading its dataset or has been shut down
maps to ``db_down``, the closest cause of the catalog. Texts come from a real Redis 7.0 run
(tests/fixtures/db/SOURCES.md) and public bug reports; older servers word MISCONF as ``... but is
currently not able to persist on disk``, and redis-py strips the ``OOM``/``LOADING`` prefix
(``OutOfMemoryError: command not allowed when used memory > 'maxmemory'.``), so patterns match the
stable middle of each message.

Cause choices:

* ``MISCONF`` (writes refused because the last RDB save failed) → ``disk_full``: a full disk is the
  usual reason; the server log line that says why (``No space left on device``, ``Permission
  denied``) is read too and, when present, names the precise cause.
* ``OOM command not allowed when used memory > 'maxmemory'`` → ``oom_kill``: no process is killed,
  but it is the catalog's memory-exhaustion cause and its next steps (memory headroom, limits) are
  the right ones; the evidence line makes the difference plain.
* ``max number of clients reached`` → ``db_connections_exhausted`` (``maxclients``).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal
from bot.evidence.reader import LinePattern, PatternReader, Reader, Tally, tally_findings

_TARGET = re.compile(r"(?:connect to Redis at|connecting to|Redis connection to) (?P<target>[^\s,;]+?)[.:]?(?:\s|$)")


def _p(kind: str, trigger: str, summary: str, severity: Severity = Severity.CRITICAL, **kw: Any) -> LinePattern:
    return LinePattern(f"redis.{kind}", trigger, summary, severity, **kw)


class RedisLog(PatternReader):
    name = "redis.log"
    title = "Redis client errors and server log"
    patterns = (
        _p(
            "misconf",
            r"MISCONF (?:Redis is configured to save RDB snapshots|Errors writing to the AOF)",
            "{count}× Redis refuses writes: it cannot persist to disk (MISCONF)",
        ),
        _p(
            "save_disk_full",
            r"(?:Write error saving DB on disk|Failed opening[^\n]*RDB file|Error writing to the AOF file"
            r"|Error moving temp DB file)[^\n]*No space left on device",
            "{count}× Redis could not save its snapshot: no space left on device",
        ),
        _p(
            "save_permission",
            r"(?:Failed opening[^\n]*RDB file|Error moving temp DB file|Opening the temp file)[^\n]*Permission denied",
            "{count}× Redis could not save its snapshot: permission denied",
            Severity.WARNING,
        ),
        _p(
            "save_failed",
            r"Background saving error|Write error saving DB on disk|Failed opening[^\n]*RDB file",
            "{count}× Redis background save failed",
            Severity.WARNING,
        ),
        _p(
            "maxmemory",
            r"command not allowed when used memory > 'maxmemory'",
            "{count}× Redis refuses writes: maxmemory reached (noeviction)",
        ),
        _p(
            "loading",
            r"Redis is loading the dataset in memory",
            "{count}× Redis is loading its dataset and refuses commands",
        ),
        _p("max_clients", r"max number of clients reached", "{count}× Redis refused a connection: maxclients reached"),
        _p("dns", r"Error -[23] connecting to", "{count}× the Redis host name {target} does not resolve", key="target"),
        _p(
            "connect_refused",
            r"Could not connect to Redis at [^\n]*Connection refused|Error (?:111|10061) connecting to"
            r"|ECONNREFUSED [^\s]*:6379\b",
            "{count}× connection to Redis at {target} refused (server not running)",
            key="target",
        ),
        _p(
            "connect_failed",
            r"Could not connect to Redis at",
            "{count}× cannot connect to Redis at {target}",
            key="target",
        ),
    )
    signals: ClassVar[dict[str, Signal]] = {
        "redis.misconf": Signal(cause="disk_full", weight=0.7),
        "redis.save_disk_full": Signal(cause="disk_full", weight=0.9),
        "redis.save_permission": Signal(cause="permission_denied", weight=0.6),
        "redis.maxmemory": Signal(cause="oom_kill", weight=0.7),
        "redis.loading": Signal(cause="db_down", weight=0.7),
        "redis.max_clients": Signal(cause="db_connections_exhausted", weight=0.85),
        "redis.dns": Signal(cause="dns_failure", weight=0.8),
        "redis.connect_refused": Signal(cause="db_down", weight=0.8),
        "redis.connect_failed": Signal(cause="db_down", weight=0.65),
    }

    def extract(self, pattern: LinePattern, detail: re.Pattern[str] | None, line: str) -> dict[str, Any]:
        target = _TARGET.search(line)
        return {"target": target.group("target")} if target else {}


class RedisPing(Reader):
    name = "redis.ping"
    title = "redis-cli ping"
    triggers = (r"(?m:^[\s\"']*PONG[\"']?\s*$)",)
    header = r"redis-cli\b[^\n]*\bping"
    signals: ClassVar[dict[str, Signal]] = {}

    def __init__(self) -> None:
        self.tally = Tally()

    def feed(self, line: str) -> bool:
        if line.strip().strip("\"'") == "PONG":
            self.tally.add("redis.pong", line)
        return False

    def findings(self) -> list[Finding]:
        return tally_findings(
            self.name, self.tally.items(), lambda *_: ("redis-cli ping: PONG (Redis answers)", Severity.OK)
        )


READERS = (RedisLog, RedisPing)
