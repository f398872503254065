"""config-test reader: pass/fail framing of nginx -t, apache2 -t/apachectl configtest, php-fpm -t, haproxy -c.

All fixtures are real runs on this machine (nginx 1.22.1, Apache 2.4, PHP-FPM 8.2, HAProxy 2.6) on
configurations broken on purpose; see tests/fixtures/probes/SOURCES.md.
"""

from __future__ import annotations

import pytest

from bot.evidence.readers.nginx_test import ConfigTest
from bot.testing import explain, kinds, read
from tests.evidence.readers._host_fixtures import fixture

READERS = [ConfigTest]


def _body(name: str) -> str:
    """The fixture without its ``### $ command`` header line."""
    return "\n".join(fixture("probes", name).splitlines()[1:]) + "\n"


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("nginx_t_syntax_error.txt", "config_test.nginx_failed"),
        ("nginx_t_unknown_directive.txt", "config_test.nginx_failed"),
        ("apache2_t_invalid_command.txt", "config_test.apache_failed"),
        ("apache2_t_missing_section_end.txt", "config_test.apache_failed"),
        ("apachectl_configtest.txt", "config_test.apache_failed"),
        ("php_fpm_t_bad.txt", "config_test.php_fpm_failed"),
        ("php_fpm_t_unknown_entry.txt", "config_test.php_fpm_failed"),
        ("haproxy_c_missing_backend.txt", "config_test.haproxy_failed"),
        ("haproxy_c_unknown_keyword.txt", "config_test.haproxy_failed"),
    ],
)
def test_a_failed_configuration_test_is_one_failure_finding(name: str, kind: str) -> None:
    for text in (fixture("probes", name), _body(name)):
        assert kinds(text, READERS) == {kind}


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("nginx_t_ok.txt", "config_test.nginx_ok"),
        ("nginx_t_warn_ok.txt", "config_test.nginx_ok"),
        ("apache2_t_ok.txt", "config_test.apache_ok"),
        ("apachectl_configtest_ok.txt", "config_test.apache_ok"),
        ("php_fpm_t_ok.txt", "config_test.php_fpm_ok"),
        ("haproxy_c_ok.txt", "config_test.haproxy_ok"),
    ],
)
def test_near_miss_a_passing_test_is_ok_and_suggests_no_cause(name: str, kind: str) -> None:
    text = fixture("probes", name)
    (finding,) = read(text, READERS)
    assert (finding.kind, finding.severity.value) == (kind, "ok")
    assert not any(c.id == "config_error" and c.evidence for c in explain(text, 500).causes)


def test_the_reason_is_kept_with_the_failure_under_a_command_header() -> None:
    (finding,) = read(fixture("probes", "nginx_t_unknown_directive.txt"), READERS)
    assert 'unknown directive "proxy_passs"' in finding.summary
    (apache,) = read(fixture("probes", "apache2_t_invalid_command.txt"), READERS)
    assert apache.data["details"] == [
        "Invalid command 'ProxyPass', perhaps misspelled or defined by a module not included in the "
        "server configuration"
    ]


def test_a_failed_test_points_at_config_error() -> None:
    assert explain(fixture("probes", "haproxy_c_unknown_keyword.txt"), 503).causes[0].id == "config_error"


def test_near_miss_a_warning_in_a_passing_nginx_test_is_not_a_failure() -> None:
    assert "config_test.nginx_failed" not in kinds(fixture("probes", "nginx_t_warn_ok.txt"), READERS)


def test_near_miss_php_fpm_start_failure_is_left_to_the_php_fpm_reader() -> None:
    line = "[30-Nov-2026 05:03:28] ERROR: FPM initialization failed"
    assert kinds(line, READERS) == set()
