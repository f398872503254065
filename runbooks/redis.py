"""Redis: does it answer, and is it refusing clients or writes?

1. ``redis-cli -h <redis_host> -p <redis_port> ping``: ``PONG``; ``Could not connect … Connection
   refused``; ``ERR max number of clients reached``; ``LOADING``; ``NOAUTH`` (it answers, but the bot
   has no password).
2. Only when it answers (``PONG``, or a ``MISCONF``/``OOM``/``LOADING`` refusal, which a server that
   cannot save even gives PING): ``redis-cli … info`` (every default section, on every version):
   clients against ``maxclients`` and ``rejected_connections``, ``used_memory`` against
   ``maxmemory`` under ``noeviction`` (writes refused with OOM), ``rdb_last_bgsave_status:err``
   (writes refused with MISCONF), ``loading:1`` (the ``redis.info`` reader).

An app whose cache, session store or queue is down fails like one whose database is down, which is
why this runs on ``db`` hosts. Needs the fact ``redis_host`` and/or ``redis_port`` (defaults
127.0.0.1 and 6379); a ``redis_host`` that is an absolute path is the server's unix socket. No
password is ever passed (redis-cli reads ``REDISCLI_AUTH`` from the bot user's environment if the
operator sets one there). No sudo. Read-only.
"""

from __future__ import annotations

from bot.evidence.readers.redis import RedisLog, RedisPing
from bot.evidence.readers.redis_info import RedisInfo
from bot.runbook.api import Alt, Command, Host, PathArg, Port, Runbook, Shape, Steps
from runbooks._datastore import one, server_facts

#: Ping replies that prove a live server whose INFO says more (MISCONF even refuses PING).
ANSWERED = {"redis.pong", "redis.misconf", "redis.maxmemory", "redis.loading"}


class Redis(Runbook):
    name = "redis"
    title = "Redis: redis-cli ping, INFO clients/memory/persistence"
    statuses = frozenset({500, 502, 503, 504})
    roles = frozenset({"db"})
    readers = (RedisPing, RedisLog, RedisInfo)
    shapes = (Shape("redis-cli", Alt(("-s", PathArg("socket")), ("-h", Host(), "-p", Port())), Alt("ping", "info")),)

    def steps(self) -> Steps:
        server, findings = server_facts(self.facts, "redis", "6379")
        if server is None:
            return findings
        where = ("-s", server.host) if server.socket else ("-h", server.host, "-p", server.port)
        ping = one((yield Command.of("redis-cli", *where, "ping", timeout=10)))
        if ping.error is not None or ping.exit_status == 127:
            return [*findings, self.failed(ping)]
        found = self.read(ping, RedisPing, RedisLog, RedisInfo)
        findings += found
        if not found:
            return [*findings, self.failed(ping)]
        if not ANSWERED & {f.kind for f in found}:
            return findings
        info = one((yield Command.of("redis-cli", *where, "info", timeout=10)))
        if not info.ok:
            return [*findings, self.failed(info)]
        return findings + self.read(info, RedisInfo, RedisLog)
