"""What the bot says in an incident's thread, as chat-neutral blocks: the status card and the posts.

Every chat target shows the same content; its sender turns these blocks into Block Kit, Telegram HTML
or terminal text within its platform's limits. An outbox message says which: ``opened``, ``updated``
and ``resolved`` show the status card (the root of the thread, edited in place); a ``post`` is a reply
whose payload names what it carries:

- ``{"diagnosis": <Diagnosis JSON>}``: the cause card (quoted evidence, next steps, other candidates);
- ``{"findings": [...], "host": "web-1"}``: one host's findings as its runbooks finish;
- ``{"findings": [...], "probe": true}``: the confirmation probe from the bot;
- ``{"findings": [...], "host": ..., "rerun": true}``: what changed on a host since the previous run
  (``gone`` lists the kinds no longer seen);
- ``{"text": "..."}``: a line (acknowledged by…, escalated to…, resolved after…);
- ``{"page": {...}, "mentions": [...]}``: a page (``services/paging``): who is paged at which level, the
  likely cause so far with its evidence, and what happens next (direct messages carry the same page).

Evidence is shown verbatim but capped (lines, characters) and redacted once more; the full output stays
in the store (``incident-bot incidents show ID``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from bot.core.approvals import APPROVE, DENY, approval_blocks
from bot.core.blocks import Actions, Block, Button, Code, Context, Fields, Header, Section, diagnosis_blocks
from bot.core.delivery import TargetDelivery, degraded_line
from bot.core.incidents import Incident, IncidentState, OutboxMessage
from bot.core.models import Diagnosis, Finding, Severity
from bot.core.oncall import format_duration
from bot.core.redact import redact_or_withhold

log = logging.getLogger(__name__)

#: Button actions on the card (chat adapters map clicks back to these names).
ACKNOWLEDGE, RERUN, ESCALATE, RESOLVE = "acknowledge", "rerun", "escalate", "resolve"
ACTIONS = (ACKNOWLEDGE, RERUN, ESCALATE, RESOLVE, APPROVE, DENY)

#: Evidence caps of one thread post: findings quoted, lines per finding, characters per line.
MAX_QUOTED_FINDINGS = 4
MAX_LINES_PER_FINDING = 2
MAX_LINE_CHARS = 300
#: Findings listed by summary in one post (the worst first).
MAX_LISTED = 10

_STATE_MARK = {IncidentState.TRIGGERED: "🔴", IncidentState.ACKNOWLEDGED: "🟠", IncidentState.RESOLVED: "✅"}
_MARK = {Severity.CRITICAL: "✖", Severity.WARNING: "▲", Severity.INFO: "•", Severity.OK: "✔"}


def when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def lasted(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def card_buttons(incident: Incident) -> Actions | None:
    """Acknowledge, Re-run diagnosis, Escalate, Resolve, as far as the state allows."""
    if incident.state is IncidentState.RESOLVED:
        return None
    buttons: list[Button] = []
    if incident.state is IncidentState.TRIGGERED:
        buttons.append(Button("Acknowledge", ACKNOWLEDGE, incident.id, "primary"))
    if incident.routed:
        buttons.append(Button("Re-run diagnosis", RERUN, incident.id))
    buttons.append(Button("Escalate", ESCALATE, incident.id))
    buttons.append(Button("Resolve", RESOLVE, incident.id, "danger"))
    return Actions(tuple(buttons))


def status_card(
    incident: Incident, diagnosis: Diagnosis | None, delivery: Sequence[TargetDelivery] = ()
) -> list[Block]:
    """The incident's status card: state, service, status, URL, times, who acknowledged, the top cause
    once diagnosed, a warning line per chat target whose delivery is degraded (``delivery``), and the
    buttons."""
    title = incident.title or incident.key
    blocks: list[Block] = [Header(f"{_STATE_MARK[incident.state]} Incident #{incident.id}: {title}")]
    pairs: list[tuple[str, str]] = [
        ("State", incident.state.value),
        ("Service", incident.service or "unrouted"),
        ("HTTP status", str(incident.status) if incident.status is not None else "not given"),
        ("Alerts", str(incident.alert_count)),
        ("Started", when(incident.opened_at)),
    ]
    if incident.url:
        pairs.append(("URL", incident.url))
    if incident.oncall:
        pairs.append(("On call", incident.oncall))
    if incident.acknowledged_at is not None:
        by = f" by {incident.acknowledged_by}" if incident.acknowledged_by else ""
        pairs.append(("Acknowledged", f"{when(incident.acknowledged_at)}{by}"))
    if incident.resolved_at is not None:
        pairs.append(("Resolved", when(incident.resolved_at)))
        pairs.append(("Duration", lasted(incident.resolved_at - incident.opened_at)))
    blocks.append(Fields(tuple(pairs)))
    top = diagnosis.top if diagnosis is not None else None
    if diagnosis is not None and top is not None and diagnosis.evidence_found:
        blocks.append(Section(f"Suspected cause: {top.title} ({top.id}, {top.confidence:.0%})"))
    elif diagnosis is not None:
        blocks.append(Context("Diagnosis found no evidence of a cause"))
    elif not incident.routed:
        blocks.append(Context("Unrouted: no service matched, so it is not diagnosed on any host"))
    elif incident.open:
        blocks.append(Context("Diagnosis running…"))
    buttons = card_buttons(incident)
    if buttons is not None:
        blocks.append(buttons)
    return with_delivery_notice(blocks, delivery)


def with_delivery_notice(card: list[Block], delivery: Sequence[TargetDelivery]) -> list[Block]:
    """The card with a ``⚠ Slack delivery delayed since 10:02 UTC`` line for each degraded target of
    ``delivery`` (others are ignored), above the buttons; the card itself when none is degraded. The
    outbox worker applies it to every card it sends, with the other targets' states."""
    lines = [Section(degraded_line(d)) for d in delivery if d.state == "degraded"]
    if not lines:
        return card
    at = next((n for n, block in enumerate(card) if isinstance(block, Actions)), len(card))
    return [*card[:at], *lines, *card[at:]]


def _clip(line: str) -> str:
    line = redact_or_withhold(line)
    return line if len(line) <= MAX_LINE_CHARS else line[: MAX_LINE_CHARS - 1] + "…"


def quoted_evidence(findings: Sequence[Finding]) -> list[str]:
    """The evidence lines worth quoting in chat: the worst findings first, capped and redacted."""
    lines: list[str] = []
    worst = sorted((f for f in findings if f.evidence), key=lambda f: -f.severity.rank)
    for finding in worst[:MAX_QUOTED_FINDINGS]:
        lines.extend(_clip(line) for line in finding.evidence[:MAX_LINES_PER_FINDING])
    return lines


def findings_post(incident: Incident, title: str, findings: Sequence[Finding], gone: Sequence[str] = ()) -> list[Block]:
    """One thread post about a set of findings: a title, what is wrong (worst first), how many checks
    passed, the evidence quoted, and where the full output is."""
    bad = sorted((f for f in findings if f.severity.rank > Severity.INFO.rank), key=lambda f: -f.severity.rank)
    fine = [f for f in findings if f.severity.rank <= Severity.INFO.rank]
    blocks: list[Block] = [Section(title)]
    lines = [f"{_MARK[f.severity]} {f.summary}" for f in bad[:MAX_LISTED]]
    if len(bad) > MAX_LISTED:
        lines.append(f"… {len(bad) - MAX_LISTED} more")
    if fine:
        lines.append(f"{_MARK[Severity.OK]} {len(fine)} other check{'s' if len(fine) != 1 else ''} fine")
    lines.extend(f"✔ no longer seen: {kind}" for kind in gone)
    if lines:
        blocks.append(Section("\n".join(lines)))
    quoted = quoted_evidence(bad)
    if quoted:
        blocks.append(Code(tuple(quoted)))
    blocks.append(Context(f"Full output: incident-bot incidents show {incident.id}"))
    return blocks


def _findings(raw: object) -> list[Finding]:
    if not isinstance(raw, list):
        return []
    found: list[Finding] = []
    for item in raw:
        try:
            found.append(Finding.model_validate(item))
        except ValidationError:
            log.warning("a stored finding could not be read; left out of the post")
    return found


def read_diagnosis(body: object) -> Diagnosis | None:
    """A stored diagnosis (its JSON shape), or None when there is none or it cannot be read."""
    if not isinstance(body, dict):
        return None
    try:
        return Diagnosis.model_validate(body)
    except ValidationError:
        log.warning("a stored diagnosis could not be read; rendered without it")
        return None


def _post(payload: dict[str, Any], incident: Incident, diagnosis: Diagnosis | None) -> list[Block]:
    if isinstance(payload.get("page"), dict):
        return page_blocks(payload["page"])
    if isinstance(payload.get("approval"), dict):
        return approval_blocks(payload)
    posted = read_diagnosis(payload.get("diagnosis"))
    if posted is not None:
        return diagnosis_blocks(posted, with_findings=False)  # the thread showed them host by host
    if "findings" in payload:
        findings = _findings(payload["findings"])
        gone = [str(kind) for kind in payload.get("gone") or []]
        if payload.get("probe"):
            return findings_post(incident, "Confirmation probe from the bot", findings)
        host = str(payload.get("host") or "?")
        if payload.get("rerun"):
            title = f"{host}: changed since the previous run" if findings or gone else f"{host}: nothing changed"
            return findings_post(incident, title, findings, gone)
        count = len(findings)
        return findings_post(incident, f"{host}: runbooks done, {count} finding{'s' if count != 1 else ''}", findings)
    text = payload.get("text")
    if isinstance(text, str) and text:
        return [Section(text)]
    if diagnosis is not None:
        return diagnosis_blocks(diagnosis)
    return [Context(f"(incident #{incident.id}: nothing to show)")]


# -- pages (issue #7) -------------------------------------------------------------------------------

_WHY = {
    "blip": "still open after the probe had found the site answering",
    "fallback": "the confirmation probe did not report in time",
    "reopened": "it fires again after resolving",
    "promoted": "the storm's paged incident resolved while this one is still open",
}


def cause_line(found: dict[str, Any]) -> str:
    """One line on the likely cause so far (``found`` as ``services/paging`` keeps it)."""
    cause = found.get("cause")
    source = found.get("source")
    if isinstance(cause, dict):
        origin = " from the confirmation probe" if source == "probe" else ""
        confidence = float(cause.get("confidence") or 0)
        return f"Likely cause so far: {cause.get('title')} ({cause.get('id')}, {confidence:.0%}{origin})"
    if source == "diagnosis":
        return "The diagnosis found no evidence of a cause"
    if source == "probe":
        return "Cause not known yet: the diagnosis is still running (the probe names none)"
    return "Cause not known yet: the diagnosis has not reported"


def page_blocks(page: dict[str, Any]) -> list[Block]:
    """A page, in the thread and in direct messages: who is paged at which level and why, the likely
    cause so far with its evidence, and what happens without an acknowledgement."""
    people = ", ".join(str(p) for p in page.get("people") or []) or "nobody"
    level = f"level {page.get('level')} of {page.get('levels')}"
    reason = page.get("reason")
    if reason == "timeout":
        header = f"⏫ Escalated to {people} ({level})"
    elif reason == "manual":
        header = f"⏫ Escalated by {page.get('by') or 'hand'} to {people} ({level})"
    else:
        header = f"📟 Paging {people}"
    status = page.get("status")
    facts = [
        f"#{page.get('incident')} {page.get('service') or 'unrouted'}",
        f"HTTP {status}" if status else "HTTP error",
        f"{level}: {page.get('level_label')}",
    ]
    via = [str(v) for v in page.get("via") or []]
    if via:
        facts.append("via " + ", ".join(via))
    lines = [" · ".join(facts)]
    if reason in _WHY:
        lines.append(f"Paged because {_WHY[str(reason)]}.")
    count = int(page.get("count") or 1)
    if count > 1:
        lines.append(f"🌩 {count} incidents on {page.get('service')} in this storm: one page for all.")
    found = page["found"] if isinstance(page.get("found"), dict) else {}
    blocks: list[Block] = [Header(header), Section("\n".join(lines)), Section(cause_line(found))]
    evidence = [_clip(str(line)) for line in found.get("evidence") or []]
    if evidence:
        blocks.append(Code(tuple(evidence)))
    notes = []
    skipped = [str(s) for s in page.get("skipped") or []]
    if skipped:
        notes.append(f"Skipped, nobody on call: {', '.join(skipped)}.")
    following = page.get("next")
    if isinstance(following, dict):
        wait = format_duration(timedelta(seconds=float(following.get("after") or 0)))
        notes.append(
            f"Acknowledge to stop the escalation: in {wait} level {following.get('level')} "
            f"({following.get('label')}) is paged."
        )
    else:
        notes.append("Last level of the escalation policy.")
    if page.get("thread"):
        notes.append(f"Thread: {page['thread']}")
    blocks.append(Context(" ".join(notes)))
    return blocks


def render_message(message: OutboxMessage, incident: Incident, diagnosis: Diagnosis | None) -> list[Block]:
    """The blocks of an outbox message: the status card (with the latest ``diagnosis``), or the post."""
    if message.kind != "post":
        return status_card(incident, diagnosis)
    return _post(message.payload, incident, diagnosis)
