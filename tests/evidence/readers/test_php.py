"""php-fpm master log, slowlog and PHP fatal errors, on logs captured from php-fpm 8.2 and the CLI."""

from __future__ import annotations

from bot.evidence.readers.php import PhpErrors, PhpFpmLog, PhpFpmSlowlog
from bot.testing import explain, kinds, read

from ._apps import fixture


def _by_kind(text: str, reader: type) -> dict[str, dict[str, object]]:
    return {f.kind: f.data for f in read(text, [reader])}


def test_max_children_on_dynamic_pool_is_worker_saturation() -> None:
    found = _by_kind(fixture("php-fpm-dynamic-saturation.log"), PhpFpmLog)
    assert found["php_fpm.max_children"]["pool"] == "www"
    assert found["php_fpm.max_children"]["limit"] == 3


def test_max_children_wording_of_ondemand_pools_is_recognised() -> None:
    """pm=ondemand logs 'max_children setting' without the 'pm.' prefix."""
    text = fixture("php-fpm-ondemand-max-children.log")
    assert "server reached max_children setting (2)" in text
    assert kinds(text, [PhpFpmLog]) == {"php_fpm.max_children"}
    assert explain(text, 504).causes[0].id == "worker_saturation"


def test_seems_busy_is_only_a_weak_saturation_hint() -> None:
    text = fixture("php-fpm-seems-busy.log")
    assert kinds(text, [PhpFpmLog]) == {"php_fpm.seems_busy"}
    top = explain(text).causes[0]
    assert top.id == "worker_saturation"
    assert top.confidence < 0.5


def test_execution_timed_out_counts_and_its_sigterm_is_not_a_crash() -> None:
    found = _by_kind(fixture("php-fpm-dynamic-saturation.log"), PhpFpmLog)
    assert found["php_fpm.execution_timed_out"]["count"] == 6
    assert "php_fpm.child_signalled" not in found  # the six SIGTERM exits belong to the timeouts
    assert "php_fpm.child_crashed" not in found


def test_sigkill_of_a_worker_is_an_oom_candidate() -> None:
    found = _by_kind(fixture("php-fpm-dynamic-saturation.log"), PhpFpmLog)
    assert found["php_fpm.child_killed"]["signal"] == 9


def test_sigsegv_of_a_worker_is_a_crash() -> None:
    found = _by_kind(fixture("php-fpm-ondemand-stderr-sigsegv.log"), PhpFpmLog)
    assert found["php_fpm.child_crashed"]["signal_name"] == "SIGSEGV"


def test_bind_failure_and_second_instance_are_config_errors() -> None:
    text = fixture("php-fpm-bind-failed.log")
    found = _by_kind(text, PhpFpmLog)
    assert found["php_fpm.bind_failed"]["address"] == "127.0.0.1:18080"
    assert "php_fpm.already_listening" in found
    assert explain(text, 502).causes[0].id == "config_error"


def test_pool_without_user_is_a_config_error() -> None:
    assert "php_fpm.config_invalid" in kinds(fixture("php-fpm-config-user-undefined.log"), [PhpFpmLog])


def test_slow_request_lines_alone_do_not_outrank_saturation() -> None:
    d = explain(fixture("php-fpm-dynamic-saturation.log"), 504)
    assert d.causes[0].id == "worker_saturation"


def test_slowlog_stack_in_curl_exec_is_an_outside_dependency() -> None:
    found = _by_kind(fixture("php-fpm-slowlog.log"), PhpFpmSlowlog)
    assert found["php_fpm.slowlog_external"]["function"] == "curl_exec"
    assert found["php_fpm.slowlog_external"]["count"] == 1


def test_slowlog_stack_in_a_statement_execute_is_the_database() -> None:
    found = _by_kind(fixture("php-fpm-slowlog.log"), PhpFpmSlowlog)
    assert found["php_fpm.slowlog_db"]["function"] == "execute"
    assert found["php_fpm.slowlog_db"]["script"].endswith("pdo.php")  # type: ignore[union-attr]


def test_slowlog_stacks_in_sleep_or_constructors_name_no_dependency() -> None:
    """Near miss: sleep() or __construct() frames do not say what the request waited on."""
    found = kinds(fixture("public-php-slowlog-formtools.txt"), [PhpFpmSlowlog])
    assert found == {"php_fpm.slowlog_stack"}


def test_fatal_errors_from_the_error_log_are_app_exceptions() -> None:
    found = _by_kind(fixture("php-errors.log"), PhpErrors)
    assert set(found) == {
        "php.fatal_error",
        "php.uncaught_exception",
        "php.memory_exhausted",
        "php.parse_error",
        "php.max_execution_time",
    }
    assert found["php.uncaught_exception"]["exception"] == "RuntimeException"


def test_cli_output_counts_each_error_once_per_stream() -> None:
    found = _by_kind(fixture("php-cli-fatal-errors.txt"), PhpErrors)
    assert found["php.parse_error"]["count"] == 2  # the log line and the displayed line
    assert explain(fixture("php-cli-fatal-errors.txt"), 500).causes[0].id == "app_exception"


def test_fatal_error_relayed_by_nginx_fastcgi_stderr() -> None:
    text = fixture("public-nginx-fastcgi-php-fatal.txt")
    assert kinds(text, [PhpErrors]) == {"php.fatal_error"}
    assert explain(text, 500).causes[0].id == "app_exception"


def test_fatal_error_relayed_as_child_said_into_stderr() -> None:
    assert {"php.fatal_error", "php.uncaught_exception"} <= kinds(
        fixture("php-fpm-ondemand-stderr-sigsegv.log"), [PhpErrors]
    )


def test_uncaught_pdo_connection_error_ranks_the_database_first() -> None:
    """The uncaught PDOException is weighted below the database reader's reading of the same line."""
    text = fixture("php-cli-pdo-refused.txt")
    assert "php.uncaught_exception" in kinds(text)
    assert explain(text, 500).causes[0].id == "db_down"


def test_php_warnings_are_not_errors() -> None:
    """Near miss: a relayed PHP Warning is not a fatal error."""
    lines = [x for x in fixture("php-fpm-ondemand-stderr-sigsegv.log").splitlines() if "PHP Warning" in x]
    assert lines
    assert kinds("\n".join(lines), [PhpErrors, PhpFpmLog]) == set()
