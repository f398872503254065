"""Redis readers on real Redis 7.0 captures (tests/fixtures/db/SOURCES.md) and near misses."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.evidence.readers.redis import RedisLog, RedisPing
from bot.testing import explain, kinds, read

FIXTURES = Path(__file__).parents[2] / "fixtures" / "db"
READERS = [RedisLog, RedisPing]


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("redis7-misconf.txt", "redis.misconf"),
        ("redis7-server-disk-full.log", "redis.save_disk_full"),
        ("redis7-server-permission.log", "redis.save_permission"),
        ("redis7-server-misconf.log", "redis.save_failed"),
        ("redis7-cli-oom.txt", "redis.maxmemory"),
        ("redis7-py-oom.txt", "redis.maxmemory"),
        ("redis7-loading.txt", "redis.loading"),
        ("redis7-maxclients.txt", "redis.max_clients"),
        ("redis7-py-dns.txt", "redis.dns"),
        ("redis7-cli-ping-down.txt", "redis.connect_refused"),
        ("redis7-py-refused.txt", "redis.connect_refused"),
        ("redis7-cli-socket-missing.txt", "redis.connect_failed"),
        ("redis7-cli-ping-ok.txt", "redis.pong"),
    ],
)
def test_kind_recognised_in_real_capture(name: str, kind: str) -> None:
    """Each Redis message kind is found in the capture that produced it."""
    assert kind in kinds(fixture(name), READERS)


def test_refusal_keeps_the_address() -> None:
    """redis-cli and redis-py refusals are keyed by the address they tried."""
    for name in ("redis7-cli-ping-down.txt", "redis7-py-refused.txt"):
        (finding,) = read(fixture(name), [RedisLog])
        assert finding.data["target"] == "127.0.0.1:56379"


def test_pong_is_ok_and_not_db_down() -> None:
    """``PONG`` is a healthy finding with no cause."""
    text = fixture("redis7-cli-ping-ok.txt")
    (finding,) = read(text, READERS)
    assert finding.severity == "ok"
    assert not explain(text, 500).evidence_found


def test_clean_server_log_is_ignored() -> None:
    """Start-up, the overcommit warning and shutdown lines of a healthy server give no finding."""
    assert kinds(fixture("redis7-server.log"), READERS) == set()


def test_read_only_save_failure_has_no_cause_of_its_own() -> None:
    """A failed background save without ENOSPC/EACCES is a warning only; MISCONF carries the cause."""
    (finding,) = read(fixture("redis7-server-misconf.log"), READERS)
    assert finding.kind == "redis.save_failed"
    assert RedisLog.signals.get("redis.save_failed") is None


@pytest.mark.parametrize(
    ("name", "status", "cause"),
    [
        ("redis7-py-refused.txt", 500, "db_down"),
        ("redis7-misconf.txt", 500, "disk_full"),
        ("redis7-maxclients.txt", 500, "db_connections_exhausted"),
        ("redis7-py-oom.txt", 500, "oom_kill"),
        ("redis7-loading.txt", 500, "db_down"),
    ],
)
def test_explain_ranks_the_redis_cause_first(name: str, status: int, cause: str) -> None:
    """Through the whole explain pipeline the captured failure names its catalog cause first."""
    assert explain(fixture(name), status).causes[0].id == cause
