"""The postgres runbook on real captured runs against the fault lab's PostgreSQL 15 (see
tests/fixtures/runbooks/postgres/SOURCES.md): what it asks for, in what order, and what it finds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from bot.core.commands import Command, CommandResult
from bot.core.models import Finding
from bot.diagnosis.engine import diagnose
from bot.evidence.readers.postgres import PostgresLog
from bot.evidence.registry import load
from bot.testing import Canned, drive, kinds
from runbooks.postgres import TAIL_SCRIPT, Postgres, PostgresParams, within_window
from tests.runbooks._datastores import records, replay, replies, result_of, run_steps

LOG = "/tmp/dscap/lab2/logs/postgresql.log"
FACTS = {"pg_host": "127.0.0.1", "pg_port": "33571", "postgresql_log": LOG}
NO_LOG = {"pg_host": "127.0.0.1", "pg_port": "33571"}


def _kinds(found: list[Finding]) -> set[str]:
    return {f.kind for f in found}


def _one(found: list[Finding], kind: str) -> Finding:
    matching = [f for f in found if f.kind == kind]
    assert matching, f"no {kind} in {[(f.kind, f.summary) for f in found]}"
    return matching[0]


def _top_cause(found: list[Finding], status: int) -> str:
    return diagnose(found, status, load().signals()).causes[0].id


def test_healthy_server_is_ready_with_its_connection_count() -> None:
    """A healthy server: pg_isready accepting, 1 of max_connections=12 in use, nothing critical."""
    found = drive(Postgres, {}, replies("postgres", "healthy"), facts=FACTS)
    assert _kinds(found) == {"postgres.ready", "postgres.connections"}
    assert _one(found, "postgres.connections").data == {"connections": 1, "max_connections": 12, "ratio": 0.083}
    assert all(f.runbook == "postgres" for f in found)


def test_without_sudo_psql_falls_back_to_the_ssh_user_with_role_postgres() -> None:
    """No pg_user: psql is tried as the postgres OS user (sudo); refused by the config, it runs as the
    SSH user with ``-U postgres -d postgres`` and still reads the server."""
    found, asked = replay(Postgres, "postgres", "healthy", facts=FACTS)
    psql = [c for c in asked if "psql" in c.argv]
    assert [c.sudo for c in psql] == [True, False]
    assert psql[0].argv[:5] == ("sudo", "-n", "-u", "postgres", "psql")
    assert psql[1].argv[0] == "psql"
    assert psql[0].argv[4:] == psql[1].argv  # the same psql, as the postgres OS user or as the SSH user
    assert "dbname=postgres connect_timeout=3" in psql[1].argv  # the timeout rides in the conninfo
    assert psql[1].argv[psql[1].argv.index("-U") : psql[1].argv.index("-U") + 2] == ("-U", "postgres")
    assert "runbook.command_failed" not in _kinds(found)


def test_with_sudo_psql_runs_as_the_postgres_os_user() -> None:
    """Sudo allowed: one psql, as ``sudo -n -u postgres``, and no fallback."""
    found, asked = replay(Postgres, "postgres", "healthy-sudo", facts=FACTS)
    assert [c.sudo for c in asked if "psql" in c.argv] == [True]
    assert _kinds(found) == {"postgres.ready", "postgres.connections"}


def test_pg_user_fact_runs_psql_as_that_role_without_sudo() -> None:
    """With pg_user/pg_database set there is no sudo attempt and the role and database are passed."""
    facts = {**NO_LOG, "pg_user": "app", "pg_database": "shop"}
    recs = records("postgres", "healthy")
    plain = next(r for r in recs if r["argv"][0] == "psql")
    argv = tuple(plain["argv"])
    argv = tuple("app" if a == "postgres" and argv[i - 1] == "-U" else a for i, a in enumerate(argv))
    argv = tuple("dbname=shop connect_timeout=3" if argv[i - 1] == "-d" else a for i, a in enumerate(argv))
    isready = ("pg_isready", "-h", "127.0.0.1", "-p", "33571", "-U", "app", "-d", "shop", "-t", "3")
    ready = next(r for r in recs if r["argv"][0] == "pg_isready")["stdout"]
    found = drive(Postgres, {}, {isready: ready, argv: plain["stdout"]}, facts=facts)
    assert _kinds(found) == {"postgres.ready", "postgres.connections"}


def test_connections_exhausted_psql_refusal_and_log_name_the_cause() -> None:
    """Every slot taken: pg_isready still says accepting, but psql is refused with ``too many
    clients`` and the log says so too; the top cause is db_connections_exhausted."""
    found = drive(Postgres, {}, replies("postgres", "connections-exhausted"), facts=FACTS)
    assert {"postgres.ready", "postgres.too_many_clients"} <= _kinds(found)
    evidence = [line for f in found if f.kind == "postgres.too_many_clients" for line in f.evidence]
    assert any("failed: FATAL:  sorry, too many clients already" in line for line in evidence)
    assert any("postgres@postgres FATAL:  sorry, too many clients already" in line for line in evidence)
    assert _top_cause(found, 500) == "db_connections_exhausted"


def test_db_down_no_response_skips_psql_and_the_log_shows_the_shutdown() -> None:
    """Server stopped: pg_isready ``no response``, no psql attempted, the log's ``database system is
    shut down`` is quoted; the top cause is db_down."""
    found, asked = replay(Postgres, "postgres", "db-down", facts=FACTS)
    assert not any("psql" in c.argv for c in asked)
    assert {"postgres.no_response", "postgres.server_stopped"} <= _kinds(found)
    assert any("LOG:  database system is shut down" in line for line in _one(found, "postgres.server_stopped").evidence)
    # The too-many-clients lines of the earlier scenario precede the shutdown: no longer evidence.
    assert "postgres.too_many_clients" not in _kinds(found)
    assert _top_cause(found, 500) == "db_down"


def test_the_startup_line_is_not_a_shutdown() -> None:
    """``database system was shut down at …`` (logged at every start) is not postgres.server_stopped."""
    stdout = next(r for r in records("postgres", "healthy") if r["argv"][0] == "sh")["stdout"]
    assert "database system was shut down at" in stdout
    assert "postgres.server_stopped" not in kinds(stdout, [PostgresLog])


def test_long_query_and_lock_wait_past_the_default_timeout() -> None:
    """33 s into a row lock: the pg_sleep holder is a long query, the blocked UPDATE a lock wait
    (with its blocker in ``blocked_by``); top cause db_slow_query."""
    found = drive(Postgres, {}, replies("postgres", "lock-wait-33s"), facts=NO_LOG)
    assert {"postgres.long_query", "postgres.lock_wait"} <= _kinds(found)
    assert "SELECT pg_sleep(40)" in _one(found, "postgres.long_query").evidence[0]
    assert "|Lock|transactionid|{" in _one(found, "postgres.lock_wait").evidence[0]
    assert _top_cause(found, 504) == "db_slow_query"


def test_slow_after_seconds_sets_the_long_query_threshold() -> None:
    """12 s in: with slow_after_seconds=10 the holder is a long query; with the default 30 it is not
    (the 11 s lock wait counts either way: lock waits are reported from 10 s)."""
    lowered = drive(Postgres, {"slow_after_seconds": 10}, replies("postgres", "lock-wait-12s"), facts=NO_LOG)
    assert {"postgres.long_query", "postgres.lock_wait"} <= _kinds(lowered)
    default = drive(Postgres, {}, replies("postgres", "lock-wait-12s"), facts=NO_LOG)
    assert "postgres.long_query" not in _kinds(default)
    assert "postgres.lock_wait" in _kinds(default)


def test_after_a_restart_the_log_shows_the_restart_but_not_the_old_refusals() -> None:
    """Repaired: ready again; the shutdown in the window is a warning, the refusals before it are gone."""
    found = drive(Postgres, {}, replies("postgres", "after-repair"), facts=FACTS)
    assert {"postgres.ready", "postgres.server_stopped", "postgres.connections"} == _kinds(found)


def test_missing_log_is_a_failed_command_not_an_exception() -> None:
    """A postgresql_log that does not exist is reported with tail's own message; the rest still runs."""
    facts = {**NO_LOG, "postgresql_log": "/tmp/dscap/lab2/logs/no-such.log"}
    found = drive(Postgres, {}, replies("postgres", "log-missing"), facts=facts)
    failed = _one(found, "runbook.command_failed")
    assert "No such file or directory" in failed.evidence[0]
    assert "postgres.ready" in _kinds(found)


def test_unreadable_log_is_retried_with_sudo() -> None:
    """tail denied as the SSH user → a plain ``tail`` of the same log with sudo (no shell: NOEXEC-safe),
    whose lines are cut to the window by the clock the first attempt printed."""
    found, asked = replay(Postgres, "postgres", "log-needs-sudo", facts={"postgresql_log": "/tmp/dscap/pg-0640.log"})
    assert [c.sudo for c in asked] == [False, True]
    assert asked[1].argv == ("tail", "-n", "300", "--", "/tmp/dscap/pg-0640.log")
    assert _kinds(found) == {"postgres.server_stopped"}


def test_the_sudo_tail_is_cut_to_the_window_by_the_first_attempts_clock() -> None:
    """Two hours after the capture, the log read through sudo holds nothing recent: the clock applies."""
    recs = records("postgres", "log-needs-sudo")
    denied, through_sudo = recs
    epoch, zone, offset = denied["stdout"].split()
    later = {**denied, "stdout": f"{int(epoch) + 7200} {zone} {offset}\n"}
    canned: dict[str | tuple[str, ...], Canned] = {
        tuple(later["argv"]): result_of(later),
        tuple(through_sudo["argv"]): result_of(through_sudo),
    }
    found = drive(Postgres, {}, canned, facts={"postgresql_log": "/tmp/dscap/pg-0640.log"})
    assert found == []


def test_unreadable_log_without_sudo_says_sudo_is_needed() -> None:
    found, _ = replay(
        Postgres, "postgres", "log-needs-sudo-refused", facts={"postgresql_log": "/tmp/dscap/pg-0640.log"}
    )
    assert _kinds(found) == {"runbook.command_failed"}
    assert "needs sudo" in found[0].summary


def test_log_window_drops_lines_older_than_the_window() -> None:
    """The host's clock line decides: two hours later, nothing of the captured log is recent."""
    stdout = next(r for r in records("postgres", "db-down") if r["argv"][0] == "sh")["stdout"]
    clock, _, rest = stdout.partition("\n")
    epoch, zone, offset = clock.split()
    assert within_window(stdout, 60).splitlines() == rest.splitlines()
    later = f"{int(epoch) + 7200} {zone} {offset}\n{rest}"
    assert within_window(later, 60) == ""
    assert within_window(later, 180).splitlines() == rest.splitlines()


def test_log_window_keeps_lines_it_cannot_place_in_time() -> None:
    """A zone that is neither UTC, numeric nor the host's own is kept; numeric offsets are honoured."""
    text = "1796016630 UTC +0000\n2026-11-30 06:30:29.126 CET [1] FATAL:  x\n2026-11-30 05:30:29 +01 [2] FATAL:  y\n"
    assert within_window(text, 30).splitlines() == ["2026-11-30 06:30:29.126 CET [1] FATAL:  x"]


def test_no_facts_means_nothing_to_run() -> None:
    assert drive(Postgres, {}, {}, facts={}) == []


def test_params_are_validated() -> None:
    for bad in ({"slow_after_seconds": 0}, {"log_lines": 0}, {"window_minutes": -1}, {"user": "x"}):
        with pytest.raises(ValidationError):
            PostgresParams.model_validate(bad)


INJECTIONS = ["$(id)", "127.0.0.1;id", "`id`", "a\nb", "-oProxyCommand=x", "db name", "host=evil dbname=x", "a|b", ""]


@pytest.mark.parametrize("fact", ["pg_host", "pg_port", "pg_user", "pg_database"])
@pytest.mark.parametrize("value", INJECTIONS[:-1])
def test_unsafe_facts_are_refused_and_never_reach_a_command(fact: str, value: str) -> None:
    """A fact with shell metacharacters, spaces, a newline or a leading dash is reported and unused."""
    found, asked = _run_recording({"pg_host": "127.0.0.1", "pg_port": "5432", fact: value})
    assert any(f.kind == "runbook.bad_fact" and f.data["fact"] == fact for f in found)
    assert all(value not in arg for c in asked for arg in c.argv)


def test_a_log_path_reaches_the_shell_only_as_a_positional_argument() -> None:
    """Any absolute path, even one with ``$(id)``, is ``$1`` of the fixed script, never its text."""
    path = "/var/log/postgresql/$(id) `id`;x.log"
    _, asked = _run_recording({"postgresql_log": path})
    tail = asked[0]
    assert tail.argv == ("sh", "-c", TAIL_SCRIPT, "sh", path, "300")
    found, _ = _run_recording({"postgresql_log": "relative.log"})
    assert found[0].kind == "runbook.bad_fact"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40), st.sampled_from(["pg_host", "pg_port", "pg_user", "pg_database", "postgresql_log"]))
def test_any_fact_value_is_refused_or_passed_as_one_whole_argument(value: str, fact: str) -> None:
    facts = {"pg_host": "127.0.0.1", "pg_port": "5432", fact: value}
    found, asked = _run_recording(facts)
    refused = any(f.kind == "runbook.bad_fact" for f in found)
    if value and not refused:
        assert any(value in c.argv for c in asked), (value, [c.argv for c in asked])
        assert "\n" not in value and "\x00" not in value
    for command in asked:
        if command.argv[0] == "sh":
            assert command.argv[2] == TAIL_SCRIPT


def _run_recording(facts: dict[str, str]) -> tuple[list[Finding], list[Command]]:
    """Run with every command answered by a failure (exit 2), recording what was asked."""
    asked: list[Command] = []

    def answer(command: Command) -> CommandResult:
        asked.append(command)
        return CommandResult(command=command, host="h", exit_status=2)

    return run_steps(Postgres(None, facts).steps(), answer), asked
