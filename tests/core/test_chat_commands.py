"""The ``/incident`` grammar: every subcommand and alias, the argument checks (incident ids, status
codes, names) that keep typed text away from anything that runs, and that arbitrary text never raises
anything but a usage error."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.core.chat_commands import ChatUsageError, ParsedCommand, parse
from bot.errors import InvalidStatus, UsageError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ParsedCommand("help")),
        ("help", ParsedCommand("help")),
        ("list", ParsedCommand("list")),
        ("incidents", ParsedCommand("list")),
        ("show 12", ParsedCommand("show", ("12",))),
        ("show #12", ParsedCommand("show", ("12",))),
        ("ack 007", ParsedCommand("ack", ("7",))),
        ("acknowledge 3", ParsedCommand("ack", ("3",))),
        ("  RESOLVE   4 ", ParsedCommand("resolve", ("4",))),
        ("close 4", ParsedCommand("resolve", ("4",))),
        ("diagnose web-1", ParsedCommand("diagnose", ("web-1",))),
        ("diagnose shop 502", ParsedCommand("diagnose", ("shop", "502"))),
        ("runbook proxy_log web-1", ParsedCommand("runbook", ("proxy_log", "web-1"))),
        ("oncall", ParsedCommand("oncall")),
        ("oncall override @alice 2h", ParsedCommand("oncall", ("override", "@alice", "2h"))),
        ("oncall override <@U01ALICE|alice> 2h", ParsedCommand("oncall", ("override", "<@U01ALICE|alice>", "2h"))),
    ],
)
def test_each_subcommand_and_alias_parses_to_its_command(text: str, expected: ParsedCommand) -> None:
    assert parse(text) == expected


def test_explain_keeps_the_pasted_evidence_verbatim_lines_included() -> None:
    pasted = "2026/11/30 03:25:13 [error] 4942#4942: *1 connect() failed (111: Connection refused)\n### $ df -h\n/ 100%"
    command = parse("explain " + pasted)
    assert command == ParsedCommand("explain", text=pasted)
    assert command.slow


def test_only_ssh_and_heavy_reading_commands_are_slow() -> None:
    assert [
        name for name in ("list", "show 1", "ack 1", "diagnose web-1", "runbook disk web-1") if parse(name).slow
    ] == [
        "diagnose web-1",
        "runbook disk web-1",
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("frobnicate", "unknown command 'frobnicate'"),
        ("show", "usage: show ID"),
        ("show 1 2", "usage: show ID"),
        ("ack twelve", "is not an incident id"),
        ("resolve 1;reboot", "is not an incident id"),
        ("diagnose", "usage: diagnose TARGET [STATUS]"),
        ("diagnose web-1;id", "is not a host, service or runbook name"),
        ("diagnose $(id)", "is not a host, service or runbook name"),
        ("runbook disk", "usage: runbook NAME TARGET"),
        ("runbook ../../etc web-1", "is not a host, service or runbook name"),
        ("explain", "usage: explain TEXT"),
        ("list everything", "usage: list"),
        ("oncall override $(id) 2h", "is not a person, duration or time"),
    ],
)
def test_bad_arguments_are_a_usage_error_saying_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(ChatUsageError) as caught:
        parse(text)
    assert says in caught.value.user_message()


def test_a_status_that_is_not_an_error_status_is_refused() -> None:
    with pytest.raises(InvalidStatus):
        parse("diagnose web-1 200")


@given(
    st.one_of(
        st.text(max_size=400),
        st.builds(
            "{} {}".format,
            st.sampled_from(["show", "ack", "resolve", "diagnose", "runbook", "oncall", "explain", "list"]),
            st.text(max_size=200),
        ),
    )
)
def test_arbitrary_text_parses_or_is_a_usage_error_never_anything_else(text: str) -> None:
    try:
        command = parse(text)
    except UsageError as exc:
        assert exc.user_message()
    else:
        assert command.name in {"help", "list", "show", "ack", "resolve", "diagnose", "runbook", "explain", "oncall"}
        for arg in command.args:
            assert not any(c in arg for c in ";&$`\n") and (not any(c in arg for c in "<>|") or arg.startswith("<@"))
