"""Python and Java traceback reader, on tracebacks captured from gunicorn/Flask/uWSGI runs and public reports."""

from __future__ import annotations

import json

from bot.evidence.readers.traceback import AppTraceback
from bot.testing import explain, kinds, read

from ._apps import fixture


def _by_kind(text: str) -> dict[str, object]:
    return {f.kind: f for f in read(text, [AppTraceback])}


def test_traceback_final_line_is_the_evidence() -> None:
    found = _by_kind(fixture("gunicorn-timeout-sigkill-errors.log"))
    exc = found["app.python_exception"]
    assert exc.data["exceptions"] == {"KeyError": 1, "ZeroDivisionError": 1}  # type: ignore[attr-defined]
    assert exc.evidence[0] == "KeyError: '7'"  # type: ignore[attr-defined]


def test_system_exit_of_an_aborted_worker_is_not_an_app_exception() -> None:
    """Near miss: gunicorn's handle_abort raises SystemExit in a timed-out worker."""
    found = _by_kind(fixture("gunicorn-timeout-sigkill-errors.log"))
    assert "SystemExit" not in found["app.python_exception"].data["exceptions"]  # type: ignore[attr-defined]


def test_missing_environment_variable_is_a_config_error() -> None:
    text = fixture("gunicorn-boot-missing-env.log")
    found = _by_kind(text)
    assert set(found) == {"app.config_exception"}
    assert found["app.config_exception"].data["message"] == "'DATABASE_URL'"  # type: ignore[attr-defined]


def test_keyerror_on_a_request_dict_is_not_a_config_error() -> None:
    """Near miss: KeyError: '7' is a lookup in the app's own data, not os.environ."""
    assert "app.config_exception" not in kinds(fixture("gunicorn-timeout-sigkill-errors.log"), [AppTraceback])


def test_chained_tracebacks_are_one_finding_not_independent_evidence() -> None:
    found = _by_kind(fixture("gunicorn-flask-outbound-local.log"))
    exc = found["app.python_exception"]
    assert exc.data["count"] == 7  # type: ignore[attr-defined]
    assert (
        len(
            [
                f
                for f in read(fixture("gunicorn-flask-outbound-local.log"), [AppTraceback])
                if f.kind == "app.python_exception"
            ]
        )
        == 1
    )


def test_improperly_configured_behind_heroku_prefixes() -> None:
    text = fixture("public-heroku-django-traceback.txt")
    assert kinds(text, [AppTraceback]) == {"app.config_exception"}
    assert explain(text, 503).causes[0].id == "config_error"


def test_uwsgi_import_traceback_without_prefix() -> None:
    found = _by_kind(fixture("uwsgi-no-python-application.log"))
    assert found["app.python_exception"].data["exception"] == "ModuleNotFoundError"  # type: ignore[attr-defined]


def test_docker_json_wrapped_traceback_is_unwrapped() -> None:
    """Docker's json-file driver writes one JSON object per line; the traceback inside is read."""
    lines = fixture("gunicorn-boot-missing-env.log").splitlines()
    start = next(i for i, x in enumerate(lines) if x.startswith("Traceback"))
    wrapped = "\n".join(json.dumps({"log": x + "\n", "stream": "stderr"}) for x in lines[start : start + 40])
    assert kinds(wrapped, [AppTraceback]) == {"app.config_exception"}


def test_docker_compose_prefixed_traceback() -> None:
    lines = fixture("gunicorn-timeout-sigkill-errors.log").splitlines()
    prefixed = "\n".join("web_1  | " + x for x in lines)
    found = _by_kind(prefixed)
    assert found["app.python_exception"].data["exceptions"] == {"KeyError": 1, "ZeroDivisionError": 1}  # type: ignore[attr-defined]


def test_a_truncated_traceback_yields_no_exception() -> None:
    """Near miss: a traceback cut before its final line names no exception."""
    text = fixture("public-requests-connection-aborted.txt")
    assert kinds(text, [AppTraceback]) == set()


def test_django_internal_server_error_line_and_traceback() -> None:
    text = fixture("public-django-500-keyerror.txt")
    assert kinds(text, [AppTraceback]) == {"app.django_500", "app.python_exception"}
    assert explain(text, 500).causes[0].id == "app_exception"


def test_java_exception_and_its_cause_are_one_app_exception_finding() -> None:
    found = _by_kind(fixture("java-exception-caused-by.txt"))
    assert set(found) == {"app.java_exception"}
    exc = found["app.java_exception"]
    assert exc.data["exceptions"] == {  # type: ignore[attr-defined]
        "java.lang.IllegalStateException": 1,
        "java.lang.NumberFormatException": 1,
    }


def test_java_heap_space_is_the_jvm_running_out_of_memory() -> None:
    text = fixture("java-heap-oom.txt")
    assert kinds(text, [AppTraceback]) == {"app.java_out_of_memory"}
    assert explain(text, 502).causes[0].id == "oom_kill"
