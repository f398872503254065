"""Node.js runtime and PM2 readers, on output captured from Node 20.20.2 and PM2 5.4.3."""

from __future__ import annotations

from bot.evidence.readers.node import NodeRuntime, Pm2Log
from bot.testing import explain, kinds, read

from ._apps import fixture


def test_javascript_heap_out_of_memory_is_an_oom() -> None:
    text = fixture("node-heap-oom.txt")
    assert kinds(text, [NodeRuntime]) == {"node.heap_oom"}
    assert explain(text, 502).causes[0].id == "oom_kill"


def test_older_process_out_of_memory_wording() -> None:
    assert kinds(fixture("public-pm2-semi-space.txt"), [NodeRuntime]) == {"node.heap_oom"}


def test_eaddrinuse_is_a_config_error_not_an_app_exception() -> None:
    text = fixture("node-eaddrinuse.txt")
    found = kinds(text, [NodeRuntime])
    assert "node.eaddrinuse" in found
    assert "node.uncaught_exception" not in found
    assert explain(text, 502).causes[0].id == "config_error"


def test_uncaught_exception_block_quotes_the_error_line() -> None:
    found = {f.kind: f for f in read(fixture("node-uncaught-typeerror.txt"), [NodeRuntime])}
    exc = found["node.uncaught_exception"]
    assert exc.data["error"] == "TypeError"
    assert exc.evidence[0].startswith("TypeError: Cannot read properties of undefined")


def test_unhandled_rejection_crash_is_an_app_exception() -> None:
    text = fixture("node-unhandled-rejection.txt")
    assert "node.uncaught_exception" in kinds(text, [NodeRuntime])
    assert explain(text, 500).causes[0].id == "app_exception"


def test_refused_postgres_port_ranks_the_database_not_the_crash() -> None:
    text = fixture("node-econnrefused-5432.txt")
    assert explain(text, 500).causes[0].id == "db_down"


def test_pm2_unstable_restarts_is_upstream_down() -> None:
    text = fixture("pm2-unstable-restarts.log")
    found = {f.kind: f.data for f in read(text, [Pm2Log])}
    assert found["pm2.app_crashed"]["count"] == 3
    assert found["pm2.app_crashed"]["app"] == "api:0"
    assert "pm2.errored" in found
    assert explain(text, 502).causes[0].id == "upstream_down"


def test_pm2_memory_restart_is_oom_and_its_clean_exit_is_not_a_crash() -> None:
    text = fixture("pm2-max-memory-restart.log")
    assert kinds(text, [Pm2Log]) == {"pm2.memory_restart", "pm2.app_exited"}
    assert explain(text, 502).causes[0].id == "oom_kill"


def test_pm2_daemon_banner_is_not_a_finding() -> None:
    """Near miss: the daemon start banner and 'App [x] online' lines."""
    lines = [x for x in fixture("pm2-unstable-restarts.log").splitlines() if "exited" not in x and "unstable" not in x]
    assert kinds("\n".join(lines), [Pm2Log, NodeRuntime]) == set()


def test_plain_js_file_references_are_not_crash_reports() -> None:
    """Near miss: stack frames and file:line mentions outside a crash report name no exception."""
    text = fixture("pm2-api-error.log")
    assert kinds(text, [NodeRuntime]) == set()
