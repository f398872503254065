"""The maintenance runbook on real lab outputs: a flag file and a 503 page mean deliberate maintenance."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bot.core.commands import Command, CommandResult
from bot.diagnosis.engine import diagnose
from bot.evidence.registry import load
from bot.testing import drive
from runbooks.maintenance import FLAG_SCRIPT, Maintenance

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runbooks" / "maintenance"


def capture(state: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / f"lab-{state}.json").read_text())
    return data


def replies(rec: dict[str, Any]) -> dict[str | tuple[str, ...], str | CommandResult]:
    out: dict[str | tuple[str, ...], str | CommandResult] = {}
    for key in ("flags", "page"):
        run = rec[key]
        out[tuple(run["argv"])] = CommandResult(
            command=Command.of("x"),
            host="lab",
            exit_status=run["exit_status"],
            stdout=run["stdout"],
            stderr=run["stderr"],
        )
    return out


def run(state: str) -> list[Any]:
    rec = capture(state)
    facts = {"maintenance_flag": rec["flag_path"], "site_url": rec["site_url"]}
    return drive(Maintenance, None, replies(rec), facts=facts, host="lab")


def test_a_flag_file_and_the_503_page_make_maintenance_the_top_cause() -> None:
    findings = run("maintenance")
    kinds = {f.kind for f in findings}
    assert {"maintenance.flag_present", "maintenance.page"} <= kinds
    diagnosis = diagnose(findings, 503, load().signals())
    assert diagnosis.top is not None and diagnosis.top.id == "maintenance_mode"
    assert any("maintenance.flag" in line for line in diagnosis.top.evidence)


def test_a_healthy_site_without_the_flag_says_nothing_about_maintenance() -> None:
    findings = run("healthy")
    assert not {f.kind for f in findings} & {"maintenance.flag_present", "maintenance.page", "maintenance.retry_after"}


def test_paths_and_urls_reach_the_host_only_as_arguments() -> None:
    """A flag path with shell characters goes in as one argv element; relative paths and a URL with
    spaces or shell syntax are refused before anything runs."""
    hostile = {"maintenance_flag": "/srv/x;rm -rf /,relative/path,/ok/maintenance.flag", "site_url": "http://a b/$(id)"}
    steps = Maintenance(None, hostile).steps()
    step = next(steps)
    commands = step if isinstance(step, tuple) else (step,)
    assert [c.argv for c in commands] == [("sh", "-c", FLAG_SCRIPT, "sh", "/srv/x;rm -rf /", "/ok/maintenance.flag")]
    try:
        steps.send(tuple(CommandResult(command=c, host="h", exit_status=0) for c in commands))
    except StopIteration as done:
        findings = done.value
    assert [f.kind for f in findings].count("runbook.bad_fact") == 2
