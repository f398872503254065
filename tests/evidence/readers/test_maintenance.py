"""maintenance reader: WordPress/Laravel/Magento/Drupal maintenance, flag files, 503 + Retry-After.

Fixtures: real curl/ls runs on this machine and excerpts from public threads (SOURCES.md).
"""

from __future__ import annotations

import pytest

from bot.evidence.readers.maintenance import MaintenanceMode
from bot.testing import explain, kinds
from tests.evidence.readers._host_fixtures import fixture

READERS = [MaintenanceMode]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("maintenance_wpmgr_stuck.txt", "maintenance.wordpress"),
        ("maintenance_laravel_artisan_down.txt", "maintenance.laravel"),
        ("maintenance_magento_status.txt", "maintenance.cli_active"),
        ("maintenance_wpcli_status.txt", "maintenance.cli_active"),
        ("ls_wordpress_maintenance.txt", "maintenance.flag_present"),
        ("ls_laravel_down.txt", "maintenance.flag_present"),
        ("curl_i_503_maintenance_page.txt", "maintenance.page"),
        ("curl_i_503_maintenance_page.txt", "maintenance.retry_after"),
        ("curl_I_503_retry_after.txt", "maintenance.retry_after"),
    ],
)
def test_deliberate_maintenance_is_recognised(name: str, kind: str) -> None:
    assert kind in kinds(fixture("probes", name), READERS)


@pytest.mark.parametrize(
    "name", ["maintenance_wpmgr_stuck.txt", "ls_wordpress_maintenance.txt", "curl_i_503_maintenance_page.txt"]
)
def test_maintenance_ranks_first_for_a_503(name: str) -> None:
    assert explain(fixture("probes", name), 503).causes[0].id == "maintenance_mode"


def test_laravel_down_command_output_and_exception_are_recognised() -> None:
    """Texts from laravel/framework: DownCommand's comment and the 5.x MaintenanceModeException."""
    assert kinds("Application is now in maintenance mode.", READERS) == {"maintenance.laravel"}
    line = "[2019-03-20 10:00:00] production.ERROR: Illuminate\\Foundation\\Http\\Exceptions\\MaintenanceModeException"
    assert kinds(line, READERS) == {"maintenance.laravel"}


def test_a_listed_flag_file_is_found_without_a_header_too() -> None:
    line = "-rw-r--r--  1 www-data www-data   48 Nov 30 03:00 .maintenance"
    assert kinds(line, READERS) == {"maintenance.flag_present"}


def test_maintenance_wording_without_a_503_is_only_a_mention() -> None:
    assert kinds("The site is down for maintenance until 06:00.", READERS) == {"maintenance.mention"}


@pytest.mark.parametrize(
    "name",
    [
        "postgres_maintenance_work_mem.txt",
        "curl_i_apache_503_no_backend.txt",
        "ls_magento_flag_missing.txt",
    ],
)
def test_near_miss_unrelated_maintenance_words_apache_stock_503_and_missing_flags(name: str) -> None:
    assert kinds(fixture("probes", name), READERS) == set()


@pytest.mark.parametrize(
    "line",
    [
        "Nov 30 03:00:01 web1 CRON[4242]: (root) CMD (/usr/local/bin/db-maintenance.sh --vacuum)",
        "Active: maintenance",
        "-rwxr-xr-x 1 root root 812 Nov 30 03:00 maintenance_cron.sh",
        "HTTP/1.1 429 Too Many Requests",
    ],
)
def test_near_miss_cron_jobs_unit_states_scripts_and_other_statuses(line: str) -> None:
    assert kinds(line, READERS) == set()


def test_near_miss_retry_after_on_a_429_is_not_maintenance() -> None:
    assert kinds("HTTP/1.1 429 Too Many Requests\nRetry-After: 30\n", READERS) == set()


def test_near_miss_maintenance_mode_not_active_is_ok() -> None:
    text = fixture("probes", "maintenance_wpcli_inactive.txt")
    assert kinds(text, READERS) == {"maintenance.inactive"}
    assert not explain(text, 503).evidence_found
