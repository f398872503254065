"""gunicorn error-log reader, on logs captured from gunicorn 27.0.1 and public reports."""

from __future__ import annotations

from bot.core.models import Severity
from bot.evidence.readers.gunicorn import GunicornLog
from bot.testing import explain, kinds, read

from ._apps import fixture


def test_worker_timeout_explains_a_502_as_upstream_timeout() -> None:
    text = fixture("gunicorn-timeout-sigkill-errors.log")
    assert "gunicorn.worker_timeout" in kinds(text, [GunicornLog])
    until_timeout = "\n".join(text.splitlines()[:8])
    assert "WORKER TIMEOUT" in until_timeout
    assert explain(until_timeout, 502).causes[0].id == "upstream_timeout"


def test_sigkill_perhaps_out_of_memory_is_an_oom_kill() -> None:
    found = {f.kind: f.data for f in read(fixture("gunicorn-timeout-sigkill-errors.log"), [GunicornLog])}
    assert found["gunicorn.worker_oom"]["signal"] == "SIGKILL"


def test_gunicorn_20_signal_9_wording_is_an_oom_kill() -> None:
    text = fixture("public-gunicorn-20-signal-9.txt")
    assert kinds(text, [GunicornLog]) == {"gunicorn.worker_oom"}
    assert explain(text, 502).causes[0].id == "oom_kill"


def test_sigkill_that_follows_a_worker_timeout_is_not_an_oom_kill() -> None:
    """Near miss: the arbiter kills a timed-out worker and reports 'Perhaps out of memory?' for it."""
    text = fixture("public-gunicorn-timeout-then-sigkill.txt")
    assert kinds(text, [GunicornLog]) == {"gunicorn.worker_timeout"}
    assert explain(text, 502).causes[0].id == "upstream_timeout"


def test_worker_failed_to_boot_is_a_config_error() -> None:
    for name in ("gunicorn-boot-import-error.log", "gunicorn-boot-missing-env.log"):
        text = fixture(name)
        assert {"gunicorn.boot_failed", "gunicorn.worker_boot_exception"} <= kinds(text, [GunicornLog])
        assert explain(text, 502).causes[0].id == "config_error"


def test_app_failed_to_load_is_a_config_error() -> None:
    text = fixture("gunicorn-app-failed-to-load.log")
    assert {"gunicorn.boot_failed", "gunicorn.app_load_failed"} <= kinds(text, [GunicornLog])


def test_connection_in_use_is_counted_once_per_attempt() -> None:
    found = {f.kind: f for f in read(fixture("gunicorn-connection-in-use.log"), [GunicornLog])}
    assert found["gunicorn.bind_in_use"].data["count"] == 6
    assert "127.0.0.1" in found["gunicorn.bind_in_use"].summary


def test_error_handling_request_is_a_weak_app_exception() -> None:
    found = {f.kind: f.data for f in read(fixture("gunicorn-timeout-sigkill-errors.log"), [GunicornLog])}
    assert found["gunicorn.request_error"]["count"] == 3


def test_startup_lines_are_not_findings_and_a_master_shutdown_is_only_a_warning() -> None:
    """Near miss: Booting/Worker exiting are normal life-cycle lines. A master that shut down is worth
    saying during an outage (nothing serves its address any more), but only as a weak upstream_down hint."""
    text = fixture("gunicorn-flask-outbound-local.log")
    found = read(text, [GunicornLog])
    assert {f.kind for f in found} <= {"gunicorn.master_stopped"}
    assert all(f.severity is Severity.WARNING for f in found)
    assert GunicornLog.signals["gunicorn.master_stopped"].weight <= 0.5
