"""The command line as a user runs it: exit codes, one-line errors, JSON shape, stdin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REFUSED = (
    "2026/11/30 03:25:13 [error] 4942#4942: *1 connect() failed (111: Connection refused) while connecting to"
    ' upstream, client: 127.0.0.1, server: _, request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:8000/",'
    ' host: "localhost"\n'
)


def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args], check=False, input=stdin, capture_output=True, text=True, timeout=60
    )


def test_explain_json_reads_stdin_and_has_the_fixed_shape() -> None:
    out = cli("explain", "--json", "--status", "502", stdin=REFUSED)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["status"] == 502 and "target" not in body
    assert body["causes"][0]["id"] == "upstream_down"
    assert body["causes"][0]["evidence"] == [REFUSED.rstrip("\n")]
    assert body["findings"][0]["kind"] == "nginx.upstream_refused"


def test_explain_reads_files_and_dash_for_stdin(tmp_path: Path) -> None:
    log = tmp_path / "error.log"
    log.write_text(REFUSED)
    out = cli("explain", "--json", str(log), "-", stdin="")
    assert out.returncode == 0
    assert json.loads(out.stdout)["causes"][0]["id"] == "upstream_down"


def test_human_output_puts_the_top_cause_and_its_evidence_first() -> None:
    out = cli("explain", "--status", "502", stdin=REFUSED)
    assert out.returncode == 0
    lines = out.stdout.splitlines()
    assert lines[0].startswith("502 Bad Gateway")
    assert "Upstream is not running" in lines[1] and "upstream_down" in lines[1]
    assert "> " + REFUSED.rstrip("\n") in out.stdout


def test_empty_input_is_not_an_error_and_lists_the_usual_suspects() -> None:
    out = cli("explain", "--json", "--status", "504", stdin="")
    assert out.returncode == 0
    body = json.loads(out.stdout)
    assert body["evidence_found"] is False
    assert body["causes"][0]["id"] == "upstream_timeout" and body["causes"][0]["evidence"] == []


def test_unrecognisable_input_says_no_evidence() -> None:
    out = cli("explain", "--status", "500", stdin="hello world\nnothing to see\n")
    assert out.returncode == 0
    assert "No evidence" in out.stdout


def test_bad_status_is_one_line_and_exit_2() -> None:
    out = cli("explain", "--status", "5o2", stdin=REFUSED)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1 and "'5o2'" in out.stderr and "Traceback" not in out.stderr


def test_unreadable_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    out = cli("explain", str(tmp_path / "missing.log"))
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "missing.log" in out.stderr


def test_a_directory_is_refused_clearly(tmp_path: Path) -> None:
    out = cli("explain", str(tmp_path))
    assert out.returncode == 2 and "is a directory" in out.stderr


def test_unknown_option_is_one_line_and_exit_2() -> None:
    out = cli("explain", "--bogus")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "--bogus" in out.stderr


def test_list_causes_names_every_catalog_id_and_the_rules() -> None:
    from bot.diagnosis.catalog import CATALOG

    out = cli("explain", "--list-causes")
    assert out.returncode == 0
    for cause in CATALOG:
        assert cause in out.stdout
    assert "direct_evidence" in out.stdout and "load_versus_cores" in out.stdout


def test_help_explains_explain_with_an_example() -> None:
    out = cli("explain", "--help")
    assert out.returncode == 0 and "--status" in out.stdout and "incident-bot explain --status 502" in out.stdout


def test_healthy_findings_are_counted_not_listed_unless_verbose() -> None:
    from pathlib import Path

    sample = str(Path(__file__).resolve().parents[1] / "bot" / "samples" / "502-upstream-down.txt")
    quiet = cli("explain", "--status", "502", sample)
    loud = cli("explain", "--status", "502", "--verbose", sample)
    assert "--verbose lists them" in quiet.stdout
    assert "info " not in quiet.stdout.split("Findings")[1]
    assert "info " in loud.stdout.split("Findings")[1]


def test_a_runbook_that_changes_hosts_is_refused_by_diagnose_and_marked_in_the_list(tmp_path: Path) -> None:
    """Only a second person's approval in chat runs a mutating runbook: naming it to ``diagnose`` is a usage
    error (exit 2, one line, nothing contacted), and ``runbooks list`` says which ones change hosts."""
    config = tmp_path / "incident-bot.yaml"
    config.write_text("hosts: {app-1: {address: 192.0.2.1, facts: {units: gunicorn}}}\n")
    done = cli("diagnose", "app-1", "--runbook", "restart_unit", "--config", str(config))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "runbook 'restart_unit' changes the host: ask for it in the incident's chat thread" in done.stderr
    assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1
    listed = cli("runbooks", "list").stdout
    line = next(row for row in listed.splitlines() if row.startswith("clear_cache"))
    assert "changes the host: runs after a second person approves it in chat" in line
    assert "changes the host" not in next(row for row in listed.splitlines() if row.startswith("disk "))
