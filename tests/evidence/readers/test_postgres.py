"""PostgreSQL readers on real PostgreSQL 15 captures (tests/fixtures/db/SOURCES.md) and near misses."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.evidence.readers.postgres import DbPoolLog, PgIsReady, PgStatActivity, PostgresLog, parse_interval
from bot.testing import explain, kinds, read

FIXTURES = Path(__file__).parents[2] / "fixtures" / "db"
READERS = [PostgresLog, DbPoolLog, PgIsReady, PgStatActivity]


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("pg15-psql-too-many-clients.txt", "postgres.too_many_clients"),
        ("pg15-psycopg2-too-many-clients.txt", "postgres.reserved_slots"),
        ("pg15-php-pdo-errors.txt", "postgres.reserved_slots"),
        ("pg15-server.log", "postgres.starting_up"),
        ("pg15-psql-pg_isready-shutting-down.txt", "postgres.shutting_down"),
        ("pg15-psql-pg_isready-recovery.txt", "postgres.recovery"),
        ("pg15-server.log", "postgres.not_accepting"),
        ("pg15-server.log", "postgres.backend_killed"),
        ("pg15-server-segfault.log", "postgres.backend_crashed"),
        ("pg15-idle-tx-and-crash-clients.txt", "postgres.crash_restart"),
        ("pg15-idle-tx-and-crash-clients.txt", "postgres.idle_tx_timeout"),
        ("pg15-fast-shutdown-clients.txt", "postgres.admin_shutdown"),
        ("pg15-sqlalchemy-statement-timeout.txt", "postgres.statement_timeout"),
        ("pg15-psql-query-errors.txt", "postgres.lock_timeout"),
        ("pg15-psql-query-errors.txt", "postgres.query_cancelled"),
        ("pg15-psql-query-errors.txt", "postgres.deadlock"),
        ("pg15-psql-query-errors.txt", "postgres.disk_full"),
        ("pg15-server.log", "postgres.auth_failed"),
        ("pg15-psycopg2-dns.txt", "postgres.dns"),
        ("pg15-psycopg2-refused.txt", "postgres.connect_refused"),
        ("pg15-sqlalchemy-refused.txt", "postgres.connect_refused"),
        ("pg15-psql-pg_isready-stopped.txt", "postgres.connect_refused"),
        ("pg15-psycopg2-backend-killed.txt", "postgres.connection_lost"),
        ("pg15-server.log", "postgres.slow_query"),
        ("pg15-sqlalchemy-pool-timeout.txt", "db_pool.timeout"),
        ("public-hikaricp-963.txt", "db_pool.timeout"),
    ],
)
def test_log_kind_recognised_in_real_capture(name: str, kind: str) -> None:
    """Each server-log or client message kind is found in the capture that produced it."""
    assert kind in kinds(fixture(name), READERS)


def test_unix_socket_refusal_names_the_socket() -> None:
    """A missing unix socket (server stopped) is a refusal keyed by the socket path."""
    found = read(fixture("pg15-psql-pg_isready-stopped.txt"), [PostgresLog])
    hosts = {f.data.get("host") for f in found if f.kind == "postgres.connect_refused"}
    assert hosts == {"127.0.0.1:55432", "/tmp/pgcap/.s.PGSQL.55432"}


def test_pre14_libpq_wording_and_docker_prefix() -> None:
    """libpq ≤ 13 ``could not connect to server`` behind a compose prefix is a refusal."""
    text = (
        "web_1  | psycopg2.OperationalError: could not connect to server: Connection refused\n"
        'web_1  | \tIs the server running on host "db" (172.18.0.2) and accepting\n'
    )
    found = read(text, [PostgresLog])
    assert [f.kind for f in found] == ["postgres.connect_refused"]
    assert found[0].data["count"] == 1


def test_fast_slow_query_lines_are_not_slow_queries() -> None:
    """``duration:`` lines under the threshold (log_min_duration_statement=0) are ignored."""
    lines = [line for line in fixture("pg15-server.log").splitlines() if "duration: 0." in line]
    assert lines
    assert kinds("\n".join(lines), READERS) == set()


def test_slow_query_reports_the_slowest_duration() -> None:
    """The slow-query finding carries the slowest duration seen."""
    text = "2026-11-30 05:05:33.482 UTC [22181] LOG:  duration: 6006.446 ms  statement: SELECT pg_sleep(6)"
    (finding,) = read(text, [PostgresLog])
    assert finding.kind == "postgres.slow_query"
    assert finding.data["max_ms"] == pytest.approx(6006.446)


def test_healthy_pg_isready_is_ok_and_not_db_down() -> None:
    """``accepting connections`` (exit 0) is an OK finding with no cause."""
    text = fixture("pg15-pg_isready-accepting.txt")
    (finding,) = read(text, [PgIsReady])
    assert finding.kind == "postgres.ready"
    assert finding.severity == "ok"
    assert not explain(text, 500).evidence_found


def test_pg_isready_states_map_to_kinds() -> None:
    """rejecting (exit 1) and no response (exit 2) are failures; the exit lines are not double counted."""
    assert kinds(fixture("pg15-psql-pg_isready-recovery.txt"), [PgIsReady]) == {"postgres.rejecting"}
    found = read(fixture("pg15-psql-pg_isready-stopped.txt"), [PgIsReady])
    assert {f.kind for f in found} == {"postgres.no_response"}


def test_pg_isready_exit_code_alone_in_a_headed_block() -> None:
    """Inside a ``### $ pg_isready`` block a bare exit status is read when no state text is shown."""
    assert kinds("### $ pg_isready -q -h db\nexit=2\n", [PgIsReady]) == {"postgres.no_response"}
    assert kinds("### $ pg_isready -q -h db\nexit code 0\n", [PgIsReady]) == {"postgres.ready"}


def test_exit_line_outside_a_pg_isready_block_is_ignored() -> None:
    """``exit=2`` without a pg_isready header means nothing to this reader."""
    assert kinds("### $ df -h\nexit=2\n", [PgIsReady]) == set()


@pytest.mark.parametrize(
    "name",
    ["pg15-pg_stat_activity-long.txt", "pg15-pg_stat_activity-long-x.txt", "pg15-pg_stat_activity-long-A.txt"],
)
def test_long_query_and_lock_wait_in_every_psql_layout(name: str) -> None:
    """Aligned, expanded and unaligned psql output all give the 38 s query and the 37 s lock wait."""
    found = {f.kind: f for f in read(fixture(name), [PgStatActivity])}
    assert set(found) == {"postgres.long_query", "postgres.lock_wait"}
    assert found["postgres.long_query"].data["pids"] == ["19085"]
    assert found["postgres.lock_wait"].data["pids"] == ["19106"]
    assert found["postgres.lock_wait"].evidence


def test_short_activity_is_not_slow() -> None:
    """A 5 s query and a 2 s lock wait are below the thresholds: no finding."""
    assert kinds(fixture("pg15-pg_stat_activity-short.txt"), [PgStatActivity]) == set()


def test_connections_at_max_are_exhausted() -> None:
    """5 of max_connections=5 is near the limit; 3 of 5 is only informational."""
    (full,) = read(fixture("pg15-connections-full.txt"), [PgStatActivity])
    assert full.kind == "postgres.connections_near_limit"
    assert full.data["ratio"] == 1.0
    (ok,) = read(fixture("pg15-connections-ok.txt"), [PgStatActivity])
    assert ok.kind == "postgres.connections"
    assert ok.severity == "info"


def test_show_max_connections_with_activity_rows_counts_rows() -> None:
    """SHOW max_connections plus a pg_stat_activity table compares the row count with the limit."""
    text = fixture("pg15-show-max-connections.txt") + fixture("pg15-pg_stat_activity-long.txt")
    found = {f.kind: f for f in read(text, [PgStatActivity])}
    assert found["postgres.connections"].data == {"connections": 3, "max_connections": 5, "ratio": 0.6}


def test_parse_interval_forms() -> None:
    """psql interval text and plain seconds parse to seconds; other text does not."""
    assert parse_interval("00:00:38.009535") == pytest.approx(38.009535)
    assert parse_interval("1 day 02:00:00") == 93600
    assert parse_interval("12.5") == 12.5
    assert parse_interval("active") is None


@pytest.mark.parametrize(
    ("name", "status", "cause"),
    [
        ("pg15-psycopg2-too-many-clients.txt", 500, "db_connections_exhausted"),
        ("pg15-sqlalchemy-refused.txt", 500, "db_down"),
        ("pg15-psql-pg_isready-recovery.txt", 500, "db_down"),
        ("pg15-psycopg2-dns.txt", 500, "dns_failure"),
        ("pg15-sqlalchemy-pool-timeout.txt", 500, "db_connections_exhausted"),
        ("pg15-pg_stat_activity-long.txt", 504, "db_slow_query"),
    ],
)
def test_explain_ranks_the_database_cause_first(name: str, status: int, cause: str) -> None:
    """Through the whole explain pipeline the captured failure names its catalog cause first."""
    assert explain(fixture(name), status).causes[0].id == cause
