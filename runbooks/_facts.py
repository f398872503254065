"""Checking a runbook's facts, and the ``runbook.bad_fact`` warnings that say one was not used."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from bot.runbook.api import Finding, Severity


def valid_path(value: str) -> bool:
    """An absolute path without NUL or line breaks, at most 4096 characters."""
    return value.startswith("/") and not any(c in value for c in "\x00\n\r") and len(value) <= 4096


def check_facts(facts: Mapping[str, str], rules: Mapping[str, re.Pattern[str]]) -> tuple[dict[str, str], list[Finding]]:
    """The facts that match their rule, and a finding for each one that does not (it is then unused).

    The whole value must match (a trailing line break, which ``$`` would let through, does not);
    a fact whose name ends in ``_port`` must also be 1 to 65535.
    """
    good: dict[str, str] = {}
    bad: list[Finding] = []
    for name, rule in rules.items():
        value = facts.get(name)
        if value is None or value == "":
            continue
        if rule.fullmatch(value) and not (name.endswith("_port") and not 1 <= int(value) <= 65535):
            good[name] = value
        else:
            bad.append(
                Finding(
                    kind="runbook.bad_fact",
                    severity=Severity.WARNING,
                    summary=f"fact {name}={value[:80]!r} is not valid here; not used",
                    data={"fact": name},
                )
            )
    return good, bad


def invalid_fact(runbook: str, fact: str, value: str, *, what: str = "value", unused: str = "used") -> Finding:
    """The fact ``fact`` had an invalid ``value``, which ``runbook`` did not use."""
    return Finding(
        kind="runbook.bad_fact",
        severity=Severity.WARNING,
        summary=f"fact {fact} has an invalid {what} {value[:60]!r}; it was not {unused}",
        data={"fact": fact},
        runbook=runbook,
    )


def ignored(runbook: str, entries: Iterable[str], why: str) -> list[Finding]:
    """One warning per fact entry that ``runbook`` ignored, and ``why``."""
    return [
        Finding(
            kind="runbook.bad_fact",
            severity=Severity.WARNING,
            summary=f"{runbook}: {text!r} ignored: {why}",
            runbook=runbook,
        )
        for text in entries
    ]
