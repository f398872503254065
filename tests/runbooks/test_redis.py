"""The redis runbook on real captured runs against Redis 7.0 (tests/fixtures/runbooks/redis/SOURCES.md),
and the ``redis.info`` reader it brings to ``explain``."""

from __future__ import annotations

import pytest

from bot.core.commands import Command, CommandResult
from bot.core.models import Finding
from bot.diagnosis.engine import diagnose
from bot.evidence.readers.redis_info import RedisInfo
from bot.evidence.registry import load
from bot.testing import drive, kinds
from runbooks.redis import Redis
from tests.runbooks._datastores import records, replay, replies

FACTS = {"redis_host": "127.0.0.1", "redis_port": "56389"}


def _kinds(found: list[Finding]) -> set[str]:
    return {f.kind for f in found}


def _top(found: list[Finding]) -> str:
    return diagnose(found, 500, load().signals()).causes[0].id


def _info(name: str) -> str:
    return next(r["stdout"] for r in records("redis", name) if r["argv"][-1] == "info")


def test_healthy_redis_answers_and_its_info_is_summarised() -> None:
    found, asked = replay(Redis, "redis", "healthy", facts=FACTS)
    assert [c.argv for c in asked] == [
        ("redis-cli", "-h", "127.0.0.1", "-p", "56389", "ping"),
        ("redis-cli", "-h", "127.0.0.1", "-p", "56389", "info"),
    ]
    assert _kinds(found) == {"redis.pong", "redis.healthy"}
    assert all(f.severity.value == "ok" for f in found)


def test_maxclients_refusal_is_db_connections_exhausted() -> None:
    """Ping answered ``ERR max number of clients reached``: no INFO (it would be refused too)."""
    found, asked = replay(Redis, "redis", "maxclients", facts=FACTS)
    assert len(asked) == 1
    assert _kinds(found) == {"redis.max_clients"}
    assert _top(found) == "db_connections_exhausted"


def test_rejected_connections_since_start_are_a_warning() -> None:
    found = drive(Redis, {}, replies("redis", "after-maxclients"), facts=FACTS)
    assert _kinds(found) == {"redis.pong", "redis.rejected_connections"}
    assert "rejected_connections:1" in next(f for f in found if f.kind == "redis.rejected_connections").evidence


def test_maxmemory_under_noeviction_refuses_writes() -> None:
    """used_memory 3 MB over maxmemory 1 MB with noeviction: redis.memory_full (oom_kill)."""
    found = drive(Redis, {}, replies("redis", "maxmemory"), facts=FACTS)
    assert "redis.memory_full" in _kinds(found)
    assert _top(found) == "oom_kill"


def test_failed_save_misconf_even_on_ping_then_info_confirms() -> None:
    """MISCONF answers even PING; INFO is still read: rdb_last_bgsave_status:err; top cause disk_full."""
    facts = {"redis_host": "127.0.0.1", "redis_port": "56390"}
    found, asked = replay(Redis, "redis", "bgsave-failed", facts=facts)
    assert len(asked) == 2
    assert {"redis.misconf", "redis.save_failing"} <= _kinds(found)
    assert "rdb_last_bgsave_status:err" in next(f for f in found if f.kind == "redis.save_failing").evidence
    assert _top(found) == "disk_full"


def test_noauth_means_it_answers_but_is_not_read_further() -> None:
    found, asked = replay(Redis, "redis", "noauth", facts=FACTS)
    assert len(asked) == 1
    assert _kinds(found) == {"redis.auth_required"}
    assert found[0].severity.value == "info"


def test_refused_connection_is_db_down() -> None:
    found = drive(Redis, {}, replies("redis", "down"), facts=FACTS)
    assert _kinds(found) == {"redis.connect_refused"}
    assert _top(found) == "db_down"


SOCKET = ("redis-cli", "-s", "/run/redis/redis.sock")


def test_a_socket_path_uses_redis_cli_s() -> None:
    pong = next(r["stdout"] for r in records("redis", "healthy") if r["argv"][-1] == "ping")
    found = drive(
        Redis,
        {},
        {
            ("redis-cli", "-s", "/run/redis/redis.sock", "ping"): pong,
            ("redis-cli", "-s", "/run/redis/redis.sock", "info"): _info("healthy"),
        },
        facts={"redis_host": "/run/redis/redis.sock"},
    )
    assert _kinds(found) == {"redis.pong", "redis.healthy"}


def test_missing_redis_cli_is_a_failed_command() -> None:
    missing = CommandResult(
        command=Command.of("x"),
        host="h",
        exit_status=127,
        stderr="timeout: failed to run command 'redis-cli': No such file or directory\n",
    )
    found = drive(Redis, {}, {("redis-cli", "-h", "127.0.0.1", "-p", "56389", "ping"): missing}, facts=FACTS)
    assert _kinds(found) == {"runbook.command_failed"}


def test_no_facts_means_nothing_to_run() -> None:
    assert drive(Redis, {}, {}, facts={}) == []


BAD = [("redis_host", v) for v in ("$(id)", "h;id", "`id`", "a\nb", "-x", "a b", "relative/redis.sock")] + [
    ("redis_port", v) for v in ("00000", "65536", "abc", "-1", "$(id)", "6379;id")
]


@pytest.mark.parametrize(("fact", "value"), BAD)
def test_unsafe_facts_are_refused_and_never_reach_a_command(fact: str, value: str) -> None:
    facts = {"redis_host": "127.0.0.1", "redis_port": "6379", fact: value}
    asked: list[Command] = []
    steps = Redis(None, facts).steps()
    try:
        step = next(steps)
        while True:
            assert not isinstance(step, tuple)
            asked.append(step)
            step = steps.send(CommandResult(command=step, host="h", exit_status=1))
    except StopIteration as done:
        found: list[Finding] = done.value
    assert any(f.kind == "runbook.bad_fact" and f.data["fact"] == fact for f in found)
    assert all(value not in arg for c in asked for arg in c.argv)


def test_info_reader_near_misses() -> None:
    """Healthy INFO has no warning; maxclients 1 with only the INFO caller connected is not full;
    a full maxmemory with an eviction policy is info, not a refusal."""
    assert kinds(_info("healthy"), [RedisInfo]) == {"redis.healthy"}
    assert "redis.clients_near_limit" not in kinds(_info("after-maxclients"), [RedisInfo])
    evicting = _info("maxmemory").replace("maxmemory_policy:noeviction", "maxmemory_policy:allkeys-lru")
    assert kinds(evicting, [RedisInfo]) == {"redis.memory_evicting", "redis.healthy"}
    assert "redis.memory_full" in kinds(_info("maxmemory"))  # registered for explain
