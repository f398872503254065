"""Domain models: status validation, evidence quoting, the JSON shape of a diagnosis."""

from __future__ import annotations

import pytest

from bot.core.models import MAX_EVIDENCE_CHARS, Cause, Diagnosis, Finding, Severity, parse_status, quote_line
from bot.errors import InvalidStatus


@pytest.mark.parametrize("value", ["500", "502", " 504 ", 503, "599", "400", "521"])
def test_error_statuses_are_accepted(value: str | int) -> None:
    assert parse_status(value) == int(str(value).strip())


@pytest.mark.parametrize("value", ["abc", "200", "302", "600", "-502", "50x", "", "5022"])
def test_anything_but_an_error_status_is_refused_with_the_value_named(value: str) -> None:
    with pytest.raises(InvalidStatus) as info:
        parse_status(value)
    assert repr(value.strip()) in info.value.user_message()


def test_no_status_is_fine() -> None:
    assert parse_status(None) is None


def test_quote_line_keeps_text_verbatim_and_cuts_only_huge_lines() -> None:
    assert quote_line("  [error] x  \r\n") == "  [error] x  "
    long = "x" * (MAX_EVIDENCE_CHARS + 10)
    quoted = quote_line(long)
    assert quoted.startswith("x" * MAX_EVIDENCE_CHARS) and quoted.endswith("[10 more characters]")


def test_severity_orders_ok_info_warning_critical() -> None:
    ranks = [s.rank for s in (Severity.OK, Severity.INFO, Severity.WARNING, Severity.CRITICAL)]
    assert ranks == sorted(ranks) and len(set(ranks)) == 4


def test_diagnosis_json_has_the_fixed_fields_and_omits_target_for_explain() -> None:
    finding = Finding(kind="nginx.upstream_refused", severity=Severity.CRITICAL, summary="s", evidence=("l",))
    cause = Cause(id="upstream_down", confidence=0.9, title="t", summary="s", evidence=("l",))
    body = Diagnosis(status=502, findings=(finding,), causes=(cause,)).to_json()
    assert set(body) >= {"status", "findings", "causes"}
    assert "target" not in body
    assert body["findings"][0]["severity"] == "critical"
    assert body["causes"][0]["id"] == "upstream_down"
    assert Diagnosis(status=502, target="web-1").to_json()["target"] == "web-1"
