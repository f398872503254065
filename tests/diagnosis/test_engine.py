"""The ranking engine: combination, status fit, root causes over symptoms, priors without evidence."""

from __future__ import annotations

from bot.core.models import Finding, Severity, Signal
from bot.diagnosis.catalog import CATALOG, STATUS_PRIORS
from bot.diagnosis.engine import MAX_CONFIDENCE, diagnose

SIGNALS = {
    "t.refused": Signal(cause="upstream_down", weight=0.85),
    "t.unit_failed": Signal(cause="upstream_down", weight=0.6),
    "t.premature": Signal(cause="upstream_crashed", weight=0.8),
    "t.oom": Signal(cause="oom_kill", weight=0.9),
    "t.timeout": Signal(cause="upstream_timeout", weight=0.85),
    "t.ok": Signal(cause="upstream_down", weight=0.0),
}


def finding(kind: str, line: str = "", count: int = 1) -> Finding:
    return Finding(
        kind=kind,
        severity=Severity.CRITICAL,
        summary=kind,
        evidence=(line or f"line of {kind}",),
        data={"count": count},
    )


def test_a_direct_line_makes_its_cause_the_top_one_with_that_line_quoted() -> None:
    d = diagnose([finding("t.refused", "connect() failed (111: Connection refused)")], 502, SIGNALS)
    assert d.top is not None and d.top.id == "upstream_down"
    assert d.top.evidence == ("connect() failed (111: Connection refused)",)
    assert d.evidence_found


def test_two_kinds_of_support_rank_above_one() -> None:
    one = diagnose([finding("t.refused")], 502, SIGNALS).top
    two = diagnose([finding("t.refused"), finding("t.unit_failed")], 502, SIGNALS).top
    assert one is not None and two is not None
    assert two.confidence > one.confidence
    assert two.confidence <= MAX_CONFIDENCE


def test_confidence_is_always_within_0_and_1() -> None:
    many = [finding(k, count=100) for k in SIGNALS]
    d = diagnose(many, 502, SIGNALS)
    assert all(0.0 <= c.confidence <= 1.0 for c in d.causes)


def test_causes_are_sorted_by_confidence() -> None:
    d = diagnose([finding("t.refused"), finding("t.premature"), finding("t.timeout")], 502, SIGNALS)
    values = [c.confidence for c in d.causes]
    assert values == sorted(values, reverse=True)


def test_a_root_cause_outranks_the_symptom_it_explains() -> None:
    """An OOM kill explains a premature close: the kill is the cause, the close its symptom."""
    d = diagnose([finding("t.premature", count=20), finding("t.oom")], 502, SIGNALS)
    ids = [c.id for c in d.causes]
    assert ids.index("oom_kill") < ids.index("upstream_crashed")


def test_status_disagreement_is_said_not_hidden() -> None:
    """A 504 with only connection-refused lines: the refusal still leads, with a note saying it does not fit."""
    d = diagnose([finding("t.refused")], 504, SIGNALS)
    assert d.top is not None and d.top.id == "upstream_down"
    assert any("504" in note and "upstream_down" in note for note in d.notes)


def test_status_that_fits_adds_no_note() -> None:
    d = diagnose([finding("t.timeout")], 504, SIGNALS)
    assert not d.notes


def test_no_evidence_lists_the_usual_suspects_of_the_status_at_low_confidence() -> None:
    d = diagnose([], 503, SIGNALS)
    assert not d.evidence_found
    assert [c.id for c in d.causes] == [cause for cause, _ in STATUS_PRIORS[503]]
    assert all(c.confidence <= 0.4 and not c.evidence for c in d.causes)
    assert any("No evidence" in note for note in d.notes)


def test_findings_without_a_signal_are_kept_but_suggest_nothing() -> None:
    ok = Finding(kind="t.ok", severity=Severity.OK, summary="healthy")
    d = diagnose([ok], None, SIGNALS)
    assert d.findings == (ok,)
    assert not d.evidence_found
    assert all(not c.evidence and c.confidence <= 0.15 for c in d.causes)  # only the generic 5xx suspects


def test_with_evidence_the_status_suspects_follow_below_the_evidence() -> None:
    d = diagnose([finding("t.timeout")], 504, SIGNALS)
    assert d.causes[0].id == "upstream_timeout"
    rest = d.causes[1:]
    assert rest and all(not c.evidence and c.confidence < d.causes[0].confidence for c in rest)


def test_every_cause_carries_next_steps_from_the_catalog() -> None:
    d = diagnose([finding("t.refused")], 502, SIGNALS)
    for cause in d.causes:
        assert cause.next_steps == CATALOG[cause.id].next_steps


def test_many_findings_of_one_kind_count_as_one_piece_of_evidence() -> None:
    """Refusals from ten upstreams are not ten independent proofs."""
    one = diagnose([finding("t.refused")], 502, SIGNALS).top
    ten = diagnose([finding("t.refused", f"line {i}") for i in range(10)], 502, SIGNALS).top
    assert one is not None and ten is not None
    assert ten.confidence == one.confidence


def test_behind_a_cdn_origin_evidence_becomes_the_cdn_cause() -> None:
    """An expired origin certificate with a 526: the CDN cause leads; with a 502 the upstream one does."""
    from bot.diagnosis.rules import RULES

    signals = {"t.cert_expired": Signal(cause="upstream_tls_error", weight=0.7)}
    behind = diagnose([finding("t.cert_expired")], 526, signals, rules=RULES)
    direct = diagnose([finding("t.cert_expired")], 502, signals, rules=RULES)
    assert behind.top is not None and behind.top.id == "cdn_origin_tls"
    assert direct.top is not None and direct.top.id == "upstream_tls_error"
