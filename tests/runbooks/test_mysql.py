"""The mysql runbook on real captured runs against MariaDB 10.11 (tests/fixtures/runbooks/mysql/SOURCES.md),
and the ``mysql.status`` reader it brings to ``explain``."""

from __future__ import annotations

import pytest

from bot.core.commands import Command, CommandResult
from bot.core.models import Finding
from bot.diagnosis.engine import diagnose
from bot.evidence.readers.mysql_status import MysqlStatus
from bot.evidence.registry import load
from bot.testing import drive, kinds, read
from runbooks.mysql import Mysql
from tests.runbooks._datastores import records, replay, replies

FACTS = {"mysql_host": "127.0.0.1", "mysql_port": "53316"}
SOCKET = {"mysql_host": "/tmp/dscap/my/s"}


def _kinds(found: list[Finding]) -> set[str]:
    return {f.kind for f in found}


def _stdout(name: str, program: str) -> str:
    return next(r["stdout"] for r in records("mysql", name) if r["argv"][0] == program)


def test_alive_server_reports_its_connection_use() -> None:
    """Alive: ``mysqld is alive``, then Threads_connected 1 of max_connections 40 (info)."""
    found = drive(Mysql, {}, replies("mysql", "alive"), facts=FACTS)
    assert _kinds(found) == {"mysql.alive", "mysql.connections"}
    status = next(f for f in found if f.kind == "mysql.connections")
    assert status.data["connections"] == 1
    assert status.data["max_connections"] == 40
    assert "| Threads_connected                 | 1     |" in status.evidence


def test_near_limit_is_db_connections_exhausted() -> None:
    """39 of 40 in use: mysql.connections_near_limit, and the top cause is db_connections_exhausted."""
    found = drive(Mysql, {}, replies("mysql", "near-limit"), facts=FACTS)
    assert "mysql.connections_near_limit" in _kinds(found)
    assert diagnose(found, 500, load().signals()).causes[0].id == "db_connections_exhausted"


def test_too_many_connections_stops_at_the_ping() -> None:
    """40 of 40: the ping itself is refused with ``Too many connections``; no status query follows."""
    found, asked = replay(Mysql, "mysql", "too-many", facts=FACTS)
    assert len(asked) == 1
    assert _kinds(found) == {"mysql.ping_too_many"}
    assert diagnose(found, 500, load().signals()).causes[0].id == "db_connections_exhausted"


@pytest.mark.parametrize(("name", "facts"), [("down", FACTS), ("down-socket", SOCKET)])
def test_server_down_is_db_down(name: str, facts: dict[str, str]) -> None:
    """Stopped server, over TCP or the socket: ping failed, top cause db_down."""
    found = drive(Mysql, {}, replies("mysql", name), facts=facts)
    assert _kinds(found) == {"mysql.ping_failed"}
    assert diagnose(found, 500, load().signals()).causes[0].id == "db_down"


def test_a_refused_login_still_proves_the_server_answers() -> None:
    """Over the socket the bot's account does not exist: the server answered (info), not db_down."""
    found, asked = replay(Mysql, "mysql", "denied-socket", facts=SOCKET)
    assert asked[0].argv == ("mysqladmin", "--connect-timeout=3", "--socket=/tmp/dscap/my/s", "ping")
    assert _kinds(found) == {"mysql.ping_answered"}
    assert diagnose(found, 500, load().signals()).causes[0].id != "db_down"


def test_mariadb_11_program_names_are_tried_when_mysql_names_are_missing() -> None:
    """mysqladmin/mysql exit 127 → mariadb-admin/mariadb, same arguments."""
    found, asked = replay(Mysql, "mysql", "mariadb11-names", facts=FACTS)
    assert [c.argv[0] for c in asked] == ["mysqladmin", "mariadb-admin", "mysql", "mariadb"]
    assert _kinds(found) == {"mysql.alive", "mysql.connections"}


def test_status_refused_after_a_good_ping_is_read_as_the_server_state() -> None:
    """If the server fills between ping and query, the client's 1040 refusal is the evidence."""
    refusal = "ERROR 1040 (08004): Too many connections\n"  # the mysql client, captured with max_connections=10
    status = next(r for r in records("mysql", "alive") if r["argv"][0] == "mysql")
    canned = {
        **replies("mysql", "alive"),
        tuple(status["argv"]): CommandResult(command=Command.of("x"), host="h", exit_status=1, stderr=refusal),
    }
    found = drive(Mysql, {}, canned, facts=FACTS)
    assert "mysql.too_many_connections" in _kinds(found)


def test_no_facts_means_nothing_to_run() -> None:
    assert drive(Mysql, {}, {}, facts={}) == []


BAD = [("mysql_host", v) for v in ("$(id)", "h;id", "`id`", "a\nb", "--init-command=x", "a b", "relative/s")] + [
    ("mysql_port", v) for v in ("00000", "99999", "abc", "-1", "$(id)", "3306 --x")
]


@pytest.mark.parametrize(("fact", "value"), BAD)
def test_unsafe_facts_are_refused_and_never_reach_a_command(fact: str, value: str) -> None:
    facts = {"mysql_host": "127.0.0.1", "mysql_port": "3306", fact: value}
    asked: list[Command] = []

    def refuse(command: Command) -> CommandResult:
        asked.append(command)
        return CommandResult(command=command, host="h", exit_status=1)

    steps = Mysql(None, facts).steps()
    try:
        step = next(steps)
        while True:
            assert not isinstance(step, tuple)
            step = steps.send(refuse(step))
    except StopIteration as done:
        found: list[Finding] = done.value
    assert any(f.kind == "runbook.bad_fact" and f.data["fact"] == fact for f in found)
    assert all(value not in arg for c in asked for arg in c.argv)


def test_status_reader_reads_table_and_batch_forms() -> None:
    """``explain`` reads the same tables from a paste; ``--batch`` (tab) output too."""
    table = _stdout("near-limit", "mysql")
    assert kinds(table, [MysqlStatus]) == {"mysql.connections_near_limit"}
    batch = "Variable_name\tValue\nThreads_connected\t150\nmax_connections\t151\n"
    assert kinds(batch, [MysqlStatus]) == {"mysql.connections_near_limit"}
    assert "mysql.connections_near_limit" in kinds(table)  # registered for explain


def test_status_reader_near_misses() -> None:
    """A healthy table is info only; a PostgreSQL count table or a lone max_connections is nothing."""
    assert kinds(_stdout("alive", "mysql"), [MysqlStatus]) == {"mysql.connections"}
    assert read(" connections | max_connections\n-------------+----------------\n 5 | 5\n", [MysqlStatus]) == []
    assert read("| max_connections      | 10    |\n", [MysqlStatus]) == []
