"""systemd readers: systemctl status blocks, is-active output and unit journal lines from public threads."""

from __future__ import annotations

from bot.evidence.readers.systemd import SystemctlIsActiveReader, SystemctlStatusReader, SystemdJournalReader
from bot.testing import explain, read
from tests.evidence.readers._host_fixtures import fixture

ALL = [SystemctlStatusReader, SystemctlIsActiveReader, SystemdJournalReader]


def _kinds(name: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for finding in read(fixture("systemd", name), ALL):
        out.setdefault(finding.kind, set()).add(str(finding.data["unit"]))
    return out


def test_failed_unit_status_with_journal_tail_gives_failed_and_crashloop() -> None:
    found = _kinds("jasmin-web-failed.txt")
    assert "jasmin-web.service" in found["systemd.unit_failed"]
    assert found["systemd.unit_crashloop"] == {"jasmin-web.service"}


def test_restart_counter_is_kept() -> None:
    findings = read(fixture("systemd", "jasmin-web-failed.txt"), [SystemdJournalReader])
    loop = next(f for f in findings if f.kind == "systemd.unit_crashloop")
    assert loop.data["restarts"] == 5


def test_auto_restart_status_is_a_crashloop_of_that_unit() -> None:
    assert _kinds("magenx-php-fpm-auto-restart.txt") == {"systemd.unit_crashloop": {"php-fpm.service"}}


def test_refused_proxy_with_a_crashing_fpm_unit_ranks_upstream_down_first() -> None:
    assert explain(fixture("systemd", "magenx-php-fpm-auto-restart.txt"), 502).causes[0].id == "upstream_down"


def test_start_limit_hit_with_the_newer_cross_glyph_is_a_crashloop() -> None:
    assert _kinds("nextcloud-php81-start-limit-hit.txt") == {"systemd.unit_crashloop": {"php8.1-fpm.service"}}


def test_journal_failures_and_job_failed_line_name_the_unit() -> None:
    found = _kinds("mailcow-php70-journal.txt")
    assert "php7.0-fpm.service" in found["systemd.unit_failed"]


def test_truncated_status_lines_from_a_pager_still_give_the_failed_unit() -> None:
    assert "php7.2-fpm.service" in _kinds("virtubox-php72-truncated.txt")["systemd.unit_failed"]


def test_sigkill_of_the_main_process_is_only_an_oom_candidate() -> None:
    found = _kinds("oomd-testbloat-sigkill.txt")
    assert found["systemd.unit_killed"] == {"testsuite-55-testbloat.service", "testsuite-55-testchill.service"}
    assert SystemdJournalReader.signals["systemd.unit_killed"].weight < 0.5


def test_oom_killer_lines_of_systemd_are_unit_oom() -> None:
    findings = read(fixture("memory", "bitnami-unit-oom.txt"), ALL)
    assert [(f.kind, f.data["unit"]) for f in findings] == [("systemd.unit_oom", "bitnami.service")]


def test_is_active_output_is_read_under_its_header_in_unit_order() -> None:
    text = "### $ systemctl is-active nginx php8.2-fpm\nactive\nfailed\n"
    found = {f.kind: f.data["unit"] for f in read(text, ALL)}
    assert found == {"systemd.unit_active": "nginx.service", "systemd.unit_failed": "php8.2-fpm.service"}


def test_bare_state_words_without_the_header_are_ignored() -> None:
    """Near miss: 'failed' or 'inactive' on a line of their own mean nothing without the command."""
    assert read("failed\ninactive\n", ALL) == []


def test_active_running_unit_is_ok_and_points_at_no_cause() -> None:
    text = (
        "● php8.1-fpm.service - The PHP 8.1 FastCGI Process Manager\n"
        + fixture("systemd", "nextcloud-php81-start-limit-hit.txt").splitlines()[2]
        + "\n     Active: active (running) since Wed 2022-05-18 00:16:21 UTC; 22s ago\n"
    )
    findings = read(text, ALL)
    assert [f.kind for f in findings] == ["systemd.unit_active"]
    assert not explain(text, 502).causes[0].evidence
