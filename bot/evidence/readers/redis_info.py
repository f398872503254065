"""Redis ``INFO``: clients against ``maxclients``, memory against ``maxmemory``, the last save, loading.

Reads ``redis-cli INFO`` output (``key:value`` lines, CRLF or LF; the whole reply or the
``clients``, ``memory``, ``persistence`` and ``stats`` sections) and a ``NOAUTH`` reply. Field
names and values come from a real Redis 7.0 (tests/fixtures/runbooks/redis/SOURCES.md); they are the
same since Redis 2.6 (``maxclients`` moved into ``# Clients`` only in 7.0, so it is optional).

Cause choices follow :mod:`bot.evidence.readers.redis`: a full ``maxmemory`` under ``noeviction``
refuses writes (``OOM command not allowed``) → oom_kill; a failed background save makes Redis refuse
writes (``MISCONF``, with the default ``stop-writes-on-bgsave-error yes``), usually because the disk
is full → disk_full; clients at ``maxclients`` → db_connections_exhausted; ``loading:1`` → db_down.
``rejected_connections`` counts since the server started, so it is a weak hint on its own.
"""

from __future__ import annotations

import re
from typing import ClassVar

from bot.core.models import Finding, Severity, Signal, quote_line
from bot.evidence.reader import Reader

#: Clients (besides the one asking) or memory at or above this share of the limit count as full.
NEAR_LIMIT = 0.95

_KEYS = (
    "redis_version",
    "connected_clients",
    "maxclients",
    "rejected_connections",
    "used_memory",
    "used_memory_human",
    "maxmemory",
    "maxmemory_human",
    "maxmemory_policy",
    "rdb_last_bgsave_status",
    "aof_last_write_status",
    "aof_last_bgrewrite_status",
    "loading",
)
_FIELD = re.compile(r"^\s*(?P<key>" + "|".join(_KEYS) + r"):(?P<value>\S+)\s*$")
_NOAUTH = "NOAUTH Authentication required"


class RedisInfo(Reader):
    name = "redis.info"
    title = "redis-cli INFO: clients vs maxclients, used_memory vs maxmemory, last save status, loading"
    triggers = (
        r"(?m:^(?:connected_clients|maxclients|rejected_connections|used_memory|maxmemory):\d)",
        r"(?m:^(?:rdb_last_bgsave_status|aof_last_write_status|aof_last_bgrewrite_status):[a-z])",
        r"(?m:^(?:redis_version|maxmemory_policy|used_memory_human|maxmemory_human|loading):\S)",
        r"NOAUTH Authentication required",
    )
    signals: ClassVar[dict[str, Signal]] = {
        "redis.clients_near_limit": Signal(cause="db_connections_exhausted", weight=0.7),
        "redis.rejected_connections": Signal(cause="db_connections_exhausted", weight=0.35),
        "redis.memory_full": Signal(cause="oom_kill", weight=0.6),
        "redis.save_failing": Signal(cause="disk_full", weight=0.6),
        "redis.loading_dataset": Signal(cause="db_down", weight=0.65),
    }

    def __init__(self) -> None:
        self._values: dict[str, str] = {}
        self._lines: dict[str, str] = {}
        self._noauth: str | None = None

    def feed(self, line: str) -> bool:
        if _NOAUTH in line:
            self._noauth = self._noauth or quote_line(line)
            return False
        found = _FIELD.match(line)
        if found:
            self._values[found.group("key")] = found.group("value")
            self._lines[found.group("key")] = quote_line(line.strip())
        return False

    def _int(self, key: str) -> int | None:
        value = self._values.get(key, "")
        return int(value) if value.isdigit() else None

    def _evidence(self, *keys: str) -> tuple[str, ...]:
        return tuple(self._lines[k] for k in keys if k in self._lines)

    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        if self._noauth is not None:
            out.append(
                self._finding(
                    "redis.auth_required",
                    Severity.INFO,
                    "Redis answers but requires AUTH (the bot has no Redis password)",
                    (self._noauth,),
                    {},
                )
            )
        if not self._values:
            return out
        clients, maxclients = self._int("connected_clients"), self._int("maxclients")
        if clients is not None and maxclients:
            others = max(clients - 1, 0)  # the client that ran INFO is one of them
            if others >= NEAR_LIMIT * maxclients:
                out.append(
                    self._finding(
                        "redis.clients_near_limit",
                        Severity.CRITICAL,
                        f"{clients} clients connected of maxclients={maxclients}: new connections are refused",
                        self._evidence("connected_clients", "maxclients"),
                        {"connected_clients": clients, "maxclients": maxclients},
                    )
                )
        rejected = self._int("rejected_connections")
        if rejected:
            out.append(
                self._finding(
                    "redis.rejected_connections",
                    Severity.WARNING,
                    f"{rejected} connections rejected since the server started (maxclients reached)",
                    self._evidence("rejected_connections", "maxclients"),
                    {"rejected_connections": rejected},
                )
            )
        used, maxmemory = self._int("used_memory"), self._int("maxmemory")
        policy = self._values.get("maxmemory_policy", "noeviction")
        if used is not None and maxmemory and used >= NEAR_LIMIT * maxmemory:
            refuses = policy == "noeviction"
            out.append(
                self._finding(
                    "redis.memory_full" if refuses else "redis.memory_evicting",
                    Severity.CRITICAL if refuses else Severity.INFO,
                    f"used_memory {used} of maxmemory {maxmemory} ({used / maxmemory:.0%}), policy {policy}: "
                    + ("writes are refused (OOM)" if refuses else "keys are being evicted"),
                    self._evidence("used_memory", "maxmemory", "maxmemory_policy"),
                    {"used_memory": used, "maxmemory": maxmemory, "maxmemory_policy": policy},
                )
            )
        failing = [
            k
            for k in ("rdb_last_bgsave_status", "aof_last_write_status", "aof_last_bgrewrite_status")
            if self._values.get(k) == "err"
        ]
        if failing:
            out.append(
                self._finding(
                    "redis.save_failing",
                    Severity.CRITICAL,
                    f"Redis's last save failed ({', '.join(failing)}): writes are refused (MISCONF) until a save works",
                    self._evidence(*failing),
                    {"failing": failing},
                )
            )
        if self._values.get("loading") == "1":
            out.append(
                self._finding(
                    "redis.loading_dataset",
                    Severity.CRITICAL,
                    "Redis is loading its dataset and refuses commands",
                    self._evidence("loading"),
                    {},
                )
            )
        if not any(f.severity in (Severity.CRITICAL, Severity.WARNING) for f in out):
            version = self._values.get("redis_version", "?")
            memory = self._values.get("used_memory_human", self._values.get("used_memory", "?"))
            limit = self._values.get("maxmemory_human", "none") if maxmemory else "none"
            out.append(
                self._finding(
                    "redis.healthy",
                    Severity.OK,
                    f"Redis {version}: {clients if clients is not None else '?'} clients"
                    f" (maxclients {maxclients if maxclients else '?'}), used_memory {memory} (maxmemory {limit}),"
                    f" last save {self._values.get('rdb_last_bgsave_status', '?')}",
                    self._evidence("redis_version", "connected_clients", "used_memory", "rdb_last_bgsave_status"),
                    {k: v for k, v in self._values.items() if not k.endswith("_human")},
                )
            )
        return out

    def _finding(
        self, kind: str, severity: Severity, summary: str, evidence: tuple[str, ...], data: dict[str, object]
    ) -> Finding:
        return Finding(kind=kind, severity=severity, summary=summary, evidence=evidence, data=data, reader=self.name)


READERS = (RedisInfo,)
