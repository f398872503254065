"""MySQL/MariaDB readers on real MariaDB 10.11 captures (tests/fixtures/db/SOURCES.md) and near misses."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.evidence.readers.mysql import MysqladminPing, MysqlLog
from bot.testing import explain, kinds, read

FIXTURES = Path(__file__).parents[2] / "fixtures" / "db"
READERS = [MysqlLog, MysqladminPing]


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("mariadb10.11-client-too-many.txt", "mysql.too_many_connections"),
        ("mariadb10.11-php-too-many.txt", "mysql.too_many_connections"),
        ("mariadb10.11-client-errors.txt", "mysql.user_connections"),
        ("mariadb10.11-client-errors.txt", "mysql.lock_wait_timeout"),
        ("mariadb10.11-client-errors.txt", "mysql.deadlock"),
        ("mariadb10.11-client-errors.txt", "mysql.access_denied"),
        ("mariadb10.11-php-errors.txt", "mysql.access_denied"),
        ("mariadb10.11-error.log", "mysql.access_denied"),
        ("mariadb10.11-disk-full-error.log", "mysql.disk_full"),
        ("mariadb10.11-disk-full-error.log", "mysql.server_crash"),
        ("mariadb10.11-client-down.txt", "mysql.unknown_host"),
        ("mariadb10.11-php-down.txt", "mysql.unknown_host"),
        ("mariadb10.11-client-down.txt", "mysql.cannot_connect"),
        ("mariadb10.11-php-down.txt", "mysql.cannot_connect"),
        ("mariadb10.11-php-errors.txt", "mysql.gone_away"),
        ("mariadb10.11-client-errors.txt", "mysql.lost_connection"),
        ("mariadb10.11-mysqladmin-alive.txt", "mysql.alive"),
        ("mariadb10.11-mysqladmin-down.txt", "mysql.ping_failed"),
        ("mariadb10.11-client-too-many.txt", "mysql.ping_too_many"),
        ("mariadb10.11-mysqladmin-denied.txt", "mysql.ping_answered"),
    ],
)
def test_kind_recognised_in_real_capture(name: str, kind: str) -> None:
    """Each MySQL/MariaDB message kind is found in the capture that produced it."""
    assert kind in kinds(fixture(name), READERS)


def test_cannot_connect_keeps_errno_and_target() -> None:
    """The socket path / host and the errno in parentheses are kept (MariaDB reports 115 for a refusal)."""
    found = read(fixture("mariadb10.11-client-down.txt"), [MysqlLog])
    data = {f.data.get("target"): f.data.get("errno") for f in found if f.kind == "mysql.cannot_connect"}
    assert data == {"/tmp/mycap/s": 2, "127.0.0.1": 115}


def test_php_getaddrinfo_under_2002_is_dns_not_down() -> None:
    """PHP reports an unknown host as [2002] php_network_getaddresses: that is DNS, not a down server."""
    line = fixture("mariadb10.11-php-down.txt").splitlines()[4]
    assert "getaddrinfo" in line
    assert kinds(line, READERS) == {"mysql.unknown_host"}


def test_mysqladmin_alive_is_ok_with_no_cause() -> None:
    """``mysqld is alive`` is a healthy finding and suggests nothing."""
    text = fixture("mariadb10.11-mysqladmin-alive.txt")
    (finding,) = read(text, READERS)
    assert finding.severity == "ok"
    assert not explain(text, 500).evidence_found


def test_mysqladmin_access_denied_is_not_down_or_config_error() -> None:
    """mysqladmin's own failed login (exit 0, the server answered) is neither db_down nor config_error."""
    text = fixture("mariadb10.11-mysqladmin-denied.txt")
    assert kinds(text, READERS) == {"mysql.ping_answered"}
    assert not explain(text, 500).evidence_found


def test_processlist_alone_is_not_evidence() -> None:
    """A SHOW PROCESSLIST of sleeping queries is not recognised as a failure."""
    assert kinds(fixture("mariadb10.11-processlist.txt"), READERS) == set()


def test_clean_server_log_lines_are_ignored() -> None:
    """Startup and shutdown notes of the MariaDB error log give no finding."""
    lines = [x for x in fixture("mariadb10.11-error.log").splitlines() if "[Note]" in x]
    assert kinds("\n".join(lines), READERS) == set()


@pytest.mark.parametrize(
    ("name", "status", "cause"),
    [
        ("mariadb10.11-php-too-many.txt", 500, "db_connections_exhausted"),
        ("mariadb10.11-php-down.txt", 500, "db_down"),
        ("mariadb10.11-disk-full-error.log", 500, "disk_full"),
        ("mariadb10.11-mysqladmin-down.txt", 500, "db_down"),
    ],
)
def test_explain_ranks_the_database_cause_first(name: str, status: int, cause: str) -> None:
    """Through the whole explain pipeline the captured failure names its catalog cause first."""
    assert explain(fixture(name), status).causes[0].id == cause
