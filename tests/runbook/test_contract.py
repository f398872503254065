"""The runbook contract: generators of Commands, validated Params, drive() with no SSH and no loop."""

from __future__ import annotations

from typing import ClassVar

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from bot.core.commands import Command, CommandResult
from bot.evidence.readers.nginx import NginxErrorLog
from bot.runbook.base import Runbook, Steps
from bot.runbook.registry import validate
from bot.testing import UnexpectedCommand, drive

REFUSED = (
    "2026/11/30 03:25:13 [error] 4942#4942: *1 connect() failed (111: Connection refused) while connecting to"
    ' upstream, client: 127.0.0.1, server: _, request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:8000/",'
    ' host: "localhost"'
)


class TailParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    path: str = "/var/log/nginx/error.log"
    lines: int = 100


class Tail(Runbook):
    name = "tail_test"
    title = "tail a log"
    statuses = frozenset({502, 504})
    roles = frozenset({"proxy"})
    Params = TailParams
    readers: ClassVar[tuple[type[NginxErrorLog], ...]] = (NginxErrorLog,)

    def steps(self) -> Steps:
        assert isinstance(self.params, TailParams)
        first = yield Command.of("tail", "-n", str(self.params.lines), self.params.path)
        both = yield (Command.of("true"), Command.of("uname", "-n"))
        assert isinstance(first, CommandResult) and isinstance(both, tuple)
        return self.read(first)


def test_drive_runs_a_runbook_on_captured_output_and_tags_findings_with_runbook_and_host() -> None:
    findings = drive(
        Tail,
        {"lines": 50},
        {("tail", "-n", "50", "/var/log/nginx/error.log"): REFUSED + "\n", "true": "", "uname -n": "web-1\n"},
        host="web-1",
    )
    assert [f.kind for f in findings] == ["nginx.upstream_refused"]
    assert findings[0].host == "web-1" and findings[0].runbook == "tail_test"
    assert findings[0].evidence == (REFUSED,)


def test_params_are_validated_before_anything_runs() -> None:
    with pytest.raises(ValidationError):
        drive(Tail, {"lines": "many"}, {})
    with pytest.raises(ValidationError):
        drive(Tail, {"path": "/x", "shell": "rm -rf /"}, {})


def test_an_unexpected_command_fails_with_the_command_named() -> None:
    with pytest.raises(UnexpectedCommand, match="tail"):
        drive(Tail, None, {})


def test_a_failed_command_becomes_a_finding_not_an_exception() -> None:
    timeout = CommandResult(
        command=Command.of("x"), host="h", exit_status=None, error="command_timeout", stderr="partial"
    )
    findings = drive(
        Tail, None, {("tail", "-n", "100", "/var/log/nginx/error.log"): timeout, "true": "", "uname -n": "h"}
    )
    assert [f.kind for f in findings] == ["runbook.command_failed"]
    assert "timed out" in findings[0].summary


def test_applies_to_filters_by_status_and_role() -> None:
    assert Tail.applies_to(502, ("proxy",))
    assert not Tail.applies_to(500, ("proxy",))
    assert not Tail.applies_to(502, ("db",))
    assert Tail.applies_to(None, ())


def test_a_valid_runbook_passes_validation_and_broken_ones_say_why() -> None:
    assert validate(Tail) is None
    assert validate(int) == "not a Runbook subclass"

    class NoSteps(Runbook):
        name = "no_steps"
        title = "x"

    assert validate(NoSteps) == "does not implement steps()"

    class BadName(Tail):
        name = "Bad-Name"

    assert validate(BadName) == "name must be lower_snake_case"


def test_commands_refuse_nul_bytes_and_pipelines_pass_values_as_positional_parameters() -> None:
    with pytest.raises(ValidationError):
        Command.of("cat", "a\x00b")
    command = Command.pipeline('ss -ltnp | grep -F -- "$1"', ":8000")
    assert command.argv == ("sh", "-c", 'ss -ltnp | grep -F -- "$1"', "sh", ":8000")
