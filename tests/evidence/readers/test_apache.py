"""Apache httpd error-log reader: real 2.4.71 lines captured on this machine, 2.2 lines from public threads.

Fixture origins: tests/fixtures/apache/SOURCES.md. Each fixture name says the fault that was injected;
the status in the parametrisation is the one curl received for that request.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.evidence.readers.apache import ApacheErrorLog
from bot.testing import explain, kinds, read

FIXTURES = Path(__file__).parents[2] / "fixtures" / "apache"


def _fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize(
    ("fixture", "kind", "status", "cause"),
    [
        ("24_refused.log", "apache.backend_refused", 503, "upstream_down"),
        ("24_fpmtcp.log", "apache.backend_refused", 503, "upstream_down"),
        ("24_fpmdown.log", "apache.backend_refused", 503, "upstream_down"),
        ("24_fpmlocked.log", "apache.backend_permission_denied", 503, "permission_denied"),
        ("24_balancer.log", "apache.balancer_all_down", 503, "upstream_down"),
        ("24_balancer.log", "apache.worker_disabled", 503, "upstream_down"),
        ("24_pool_acquire.log", "apache.connection_pool_exhausted", 503, "worker_saturation"),
        ("24_sleep.log", "apache.backend_timeout", 502, "upstream_timeout"),
        ("24_reset.log", "apache.backend_reset", 502, "upstream_crashed"),
        ("24_eof.log", "apache.backend_reset", 502, "upstream_crashed"),
        ("24_garbage.log", "apache.backend_invalid_status_line", 502, "upstream_bad_response"),
        ("24_dns.log", "apache.dns_failure", 500, "dns_failure"),
        ("24_tls.log", "apache.backend_tls", 500, "upstream_tls_error"),
        ("24_fpmfatal.log", "apache.php_fatal", 500, "app_exception"),
        ("24_fpmsleep.log", "apache.backend_timeout", 504, "upstream_timeout"),
        ("24_htaccess.log", "apache.invalid_command", 500, "config_error"),
        ("24_loop.log", "apache.redirect_limit", 500, "config_error"),
        ("24_locked.log", "apache.search_permission_missing", 403, "permission_denied"),
        ("24_noperm.log", "apache.file_permission_denied", 403, "permission_denied"),
        ("24_cgiempty.log", "apache.script_no_headers", 500, "app_exception"),
        ("24_cgislow.log", "apache.script_timeout", 504, "upstream_timeout"),
        ("24_cgimalformed.log", "apache.malformed_header", 500, "upstream_bad_response"),
        ("24_fcgisleepy.log", "apache.fcgi_read_timeout", 500, "upstream_timeout"),
        ("24_fcgidies.log", "apache.fcgi_connection_closed", 500, "upstream_crashed"),
        ("24_mpm_event_maxrequestworkers.log", "apache.max_request_workers", 504, "worker_saturation"),
        ("24_mpm_prefork_maxrequestworkers.log", "apache.max_request_workers", 504, "worker_saturation"),
        ("24_configtest_invalid_command.txt", "apache.invalid_command", 500, "config_error"),
    ],
)
def test_real_apache_24_fault_is_recognised_and_ranks_its_cause_first(
    fixture: str, kind: str, status: int, cause: str
) -> None:
    """Each injected fault yields its kind, and explain ranks the fault's cause first at curl's status."""
    text = _fixture(fixture)
    assert kind in kinds(text, [ApacheErrorLog])
    top = explain(text, status).causes[0]
    assert top.id == cause
    assert top.evidence, "the cause must quote the log line"


def test_connect_failure_companion_line_is_weaker_than_the_reasoned_line() -> None:
    """AH01079 (no reason) must not outrank the (13) permission line that precedes it."""
    diagnosis = explain(_fixture("24_fpmlocked.log"), 503)
    confidence = {c.id: c.confidence for c in diagnosis.causes}
    assert confidence["permission_denied"] > confidence["upstream_down"]


def test_many_refusals_fold_into_one_finding_per_backend_with_a_count() -> None:
    """The whole lab log yields one backend_refused finding per backend, counting every line."""
    findings = [f for f in read(_fixture("24_lab_error.log"), [ApacheErrorLog]) if f.kind == "apache.backend_refused"]
    targets = {f.data["target"]: f.data["count"] for f in findings}
    assert targets["127.0.0.1:18089"] == 7
    assert targets["127.0.0.1:18081"] == 2
    assert all(len(f.evidence) <= 4 for f in findings)


def test_backend_address_and_apr_status_are_parsed() -> None:
    """The finding data carries the backend address and the APR status number of the line."""
    (finding,) = [f for f in read(_fixture("24_sleep.log"), [ApacheErrorLog]) if f.kind == "apache.backend_timeout"]
    assert finding.data["target"] == "127.0.0.1:18082"
    assert finding.data["apr_status"] == "70007"


@pytest.mark.parametrize(
    ("fixture", "kind", "cause"),
    [
        ("22_maddash_proxy_refused.log", "apache.backend_refused", "upstream_down"),
        ("22_maddash_proxy_refused.log", "apache.worker_disabled", "upstream_down"),
        ("22_deis_maxclients_journald.log", "apache.max_request_workers", "worker_saturation"),
        ("22_n01se_htaccess_header.log", "apache.invalid_command", "config_error"),
    ],
)
def test_public_apache_22_lines_are_recognised(fixture: str, kind: str, cause: str) -> None:
    """2.2 layout (no AH numbers, ``proxy:`` prefix, client before the APR status), journald-prefixed too."""
    text = _fixture(fixture)
    assert kind in kinds(text, [ApacheErrorLog])
    assert explain(text).causes[0].id == cause


def test_apache_22_timeout_line_wrapped_after_its_status_is_joined_and_read_as_a_timeout() -> None:
    """A ``(70007)...expired:`` line wrapped by the poster is joined with the message on the next line."""
    found = kinds(_fixture("22_serverdevworker_proxy_timeout.log"), [ApacheErrorLog])
    assert found == {"apache.backend_timeout"}


def test_normal_operation_lines_are_not_findings() -> None:
    """Start-up notices, the SSL session-cache warning and shutdown lines of a healthy server yield nothing."""
    lines = [
        line
        for line in _fixture("24_lab_error.log").splitlines()
        if any(code in line for code in ("AH00489", "AH00094", "AH01873"))
    ]
    lines += [line for line in _fixture("24_mpm_event_maxrequestworkers.log").splitlines() if "AH00491" in line]
    assert len(lines) >= 4
    assert read("\n".join(lines), [ApacheErrorLog]) == []


def test_client_side_request_body_failure_alone_is_not_a_backend_fault() -> None:
    """AH01097 ``pass request body failed ... from <client>`` alone names no backend failure."""
    line = next(line for line in _fixture("24_tls.log").splitlines() if "AH01097" in line)
    assert read(line, [ApacheErrorLog]) == []


def test_access_log_with_5xx_statuses_is_not_read_as_error_log() -> None:
    """An access log full of 503/502 lines is not evidence for this reader (it carries no reason)."""
    assert read(_fixture("24_lab_access.log"), [ApacheErrorLog]) == []
