"""uWSGI log reader, on logs captured from uWSGI 2.0.21 and public reports."""

from __future__ import annotations

from bot.evidence.readers.uwsgi import UwsgiLog
from bot.testing import explain, kinds, read

from ._apps import fixture


def _by_kind(text: str) -> dict[str, dict[str, object]]:
    return {f.kind: f.data for f in read(text, [UwsgiLog])}


def test_listen_queue_full_is_worker_saturation() -> None:
    found = _by_kind(fixture("uwsgi-queue-harakiri-signals.log"))
    assert found["uwsgi.listen_queue_full"]["socket"] == "127.0.0.1:39401"
    assert found["uwsgi.listen_queue_full"]["backlog"] == 2
    assert explain(fixture("uwsgi-queue-harakiri-signals.log"), 502).causes[0].id == "worker_saturation"


def test_harakiri_is_upstream_timeout_and_its_sigkill_is_not_oom() -> None:
    found = _by_kind(fixture("uwsgi-queue-harakiri-signals.log"))
    assert found["uwsgi.harakiri"]["count"] == 5
    # Five harakiri kills and one manual kill -9: only the manual one is an OOM candidate.
    assert found["uwsgi.worker_killed"]["count"] == 1


def test_harakiri_behind_a_docker_prefix() -> None:
    text = fixture("public-uwsgi-harakiri-docker.txt")
    assert kinds(text, [UwsgiLog]) == {"uwsgi.harakiri"}
    assert explain(text, 502).causes[0].id == "upstream_timeout"


def test_segfault_is_a_crash() -> None:
    found = _by_kind(fixture("uwsgi-queue-harakiri-signals.log"))
    assert found["uwsgi.worker_crashed"]["signal"] == 11


def test_no_python_application_found_is_a_config_error() -> None:
    for name in ("uwsgi-no-python-application.log", "uwsgi-need-app-game-over.log"):
        text = fixture(name)
        assert "uwsgi.no_app" in kinds(text, [UwsgiLog])
        assert explain(text, 500).causes[0].id == "config_error"


def test_request_log_lines_with_500_are_not_findings() -> None:
    """Near miss: uWSGI's per-request log line is not a server failure."""
    lines = [x for x in fixture("uwsgi-queue-harakiri-signals.log").splitlines() if x.startswith("[pid:")]
    assert lines
    assert kinds("\n".join(lines), [UwsgiLog]) == set()
