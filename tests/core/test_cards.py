"""What an incident's thread shows: the status card and its buttons in each state, each host's findings
(worst first, capped, evidence quoted and redacted), the probe, re-run changes and the cause card."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.core.blocks import Actions, Code, plain_text
from bot.core.cards import MAX_LINE_CHARS, MAX_LISTED, render_message, status_card
from bot.core.incidents import Incident, IncidentState, OutboxMessage
from bot.core.models import Cause, Diagnosis, Finding, Severity

T0 = datetime(2026, 11, 30, 3, 25, tzinfo=UTC)
LINE = (
    "2026/11/30 03:25:13 [error] 4942#4942: *1 connect() failed (111: Connection refused) while connecting to upstream"
)
INCIDENT = Incident(id="7", key="shop:5xx", service="shop", routed=True, status=502, title="shop 502", opened_at=T0)
DIAGNOSIS = Diagnosis(
    status=502,
    findings=(Finding(kind="nginx.upstream_refused", severity=Severity.CRITICAL, summary="refused", evidence=(LINE,)),),
    causes=(
        Cause(id="upstream_down", confidence=0.93, title="Upstream is not running", summary="s", evidence=(LINE,)),
    ),
)


def post(payload: dict[str, object], incident: Incident = INCIDENT) -> str:
    message = OutboxMessage.model_validate(
        {"id": "m", "incident_id": incident.id, "kind": "post", "created_at": T0, "payload": payload}
    )
    return plain_text(render_message(message, incident, None))


def buttons(incident: Incident) -> list[str]:
    return [b.action for block in status_card(incident, None) if isinstance(block, Actions) for b in block.buttons]


def test_the_card_offers_what_the_state_allows() -> None:
    assert buttons(INCIDENT) == ["acknowledge", "rerun", "escalate", "resolve"]
    acked = INCIDENT.model_copy(update={"state": IncidentState.ACKNOWLEDGED, "acknowledged_at": T0})
    assert buttons(acked) == ["rerun", "escalate", "resolve"]
    assert buttons(INCIDENT.model_copy(update={"routed": False, "service": None})) == [
        "acknowledge",
        "escalate",
        "resolve",
    ]
    resolved = INCIDENT.model_copy(update={"state": IncidentState.RESOLVED, "resolved_at": T0 + timedelta(minutes=12)})
    assert buttons(resolved) == []
    assert "Duration: 12m00s" in plain_text(status_card(resolved, None))


def test_the_card_names_who_acknowledged_and_the_top_cause_once_diagnosed() -> None:
    acked = INCIDENT.model_copy(
        update={"state": IncidentState.ACKNOWLEDGED, "acknowledged_at": T0, "acknowledged_by": "@alice (slack)"}
    )
    text = plain_text(status_card(acked, DIAGNOSIS))
    assert "by @alice (slack)" in text and "Suspected cause: Upstream is not running (upstream_down, 93%)" in text


def test_a_host_post_lists_the_worst_first_counts_the_fine_ones_and_quotes_capped_redacted_evidence() -> None:
    secret_line = "GET /api?token=abcdef0123456789abcdef HTTP/1.1 " + "x" * 600
    findings = [
        Finding(kind="a.ok", severity=Severity.OK, summary="disk fine", host="web-1").model_dump(mode="json"),
        Finding(kind="b.warn", severity=Severity.WARNING, summary="load high", host="web-1").model_dump(mode="json"),
        Finding(
            kind="c.crit", severity=Severity.CRITICAL, summary="refused", evidence=(secret_line,), host="web-1"
        ).model_dump(mode="json"),
    ]
    text = post({"host": "web-1", "findings": findings})
    assert text.startswith("web-1: runbooks done, 3 findings")
    assert text.index("✖ refused") < text.index("▲ load high")
    assert "✔ 1 other check fine" in text
    quoted = [line for line in text.splitlines() if line.startswith("> ")]
    assert len(quoted) == 1 and "abcdef0123456789abcdef" not in quoted[0]
    assert len(quoted[0]) <= MAX_LINE_CHARS + 2 and quoted[0].endswith("…")
    assert "Full output: incident-bot incidents show 7" in text


def test_a_host_with_many_findings_lists_only_the_worst_few() -> None:
    many = [
        Finding(kind=f"k{n}", severity=Severity.WARNING, summary=f"warning {n}").model_dump(mode="json")
        for n in range(MAX_LISTED + 5)
    ]
    text = post({"host": "web-1", "findings": many})
    assert "warning 9" in text and "warning 10" not in text and "… 5 more" in text


def test_rerun_posts_say_what_changed() -> None:
    new = [Finding(kind="memory.oom_kill", severity=Severity.CRITICAL, summary="OOM kill").model_dump(mode="json")]
    text = post({"host": "app-1", "findings": new, "gone": ["disk.full"], "rerun": True})
    assert text.startswith("app-1: changed since the previous run")
    assert "✖ OOM kill" in text and "no longer seen: disk.full" in text


def test_the_probe_post_and_plain_lines() -> None:
    probe = [Finding(kind="probe.http_status", severity=Severity.CRITICAL, summary="502 ×3").model_dump(mode="json")]
    assert post({"probe": True, "findings": probe}).startswith("Confirmation probe from the bot\n✖ 502 ×3")
    assert post({"text": "Acknowledged by @alice (slack)"}) == "Acknowledged by @alice (slack)"


def test_the_cause_card_in_a_thread_quotes_evidence_but_leaves_the_findings_to_the_host_posts() -> None:
    message = OutboxMessage.model_validate(
        {"id": "m", "incident_id": "7", "kind": "post", "created_at": T0, "payload": {"diagnosis": DIAGNOSIS.to_json()}}
    )
    blocks = render_message(message, INCIDENT, None)
    assert any(isinstance(b, Code) and b.lines == (LINE,) for b in blocks)
    assert "refused" not in plain_text(blocks).replace(LINE, "")
