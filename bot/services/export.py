"""A postmortem skeleton of one incident: what the store knows, laid out for people to complete.

Pure rendering: the incident, its timeline and its latest diagnosis (the JSON shape of DESIGN §4.2, as
``Store.get_diagnosis`` returns it) in, Markdown or a JSON-ready mapping out. The Markdown has the
title, service, status, the timeline with UTC timestamps, the time to acknowledge and to resolve, the
findings and the top cause with its quoted evidence, then "Impact", "Root cause" and "Action items"
sections left to fill in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from bot.core.incidents import Incident, TimelineEvent

TODO = "_To be completed._"


def duration(delta: timedelta | None) -> str | None:
    """``1h02m03s``, ``4m05s``, ``12s``; None stays None (not acknowledged, not resolved)."""
    if delta is None:
        return None
    seconds = max(int(delta.total_seconds()), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{seconds:02d}s"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"


def time_to_acknowledge(incident: Incident) -> timedelta | None:
    return incident.acknowledged_at - incident.opened_at if incident.acknowledged_at else None


def time_to_resolve(incident: Incident) -> timedelta | None:
    return incident.resolved_at - incident.opened_at if incident.resolved_at else None


def _stamp(at: datetime) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S}Z"


def _cell(text: object) -> str:
    """Text that stays inside one Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _quote(line: str) -> str:
    """A verbatim evidence line as inline code, whatever backticks it holds."""
    longest = 0
    current = 0
    for char in line:
        current = current + 1 if char == "`" else 0
        longest = max(longest, current)
    fence = "`" * (longest + 1)
    pad = " " if line.startswith("`") or line.endswith("`") else ""
    return f"{fence}{pad}{line}{pad}{fence}"


def to_json(
    incident: Incident, timeline: Sequence[TimelineEvent], diagnosis: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The export as data: the incident, its timeline, the durations in seconds and the diagnosis."""
    tta = time_to_acknowledge(incident)
    ttr = time_to_resolve(incident)
    return {
        "incident": incident.model_dump(mode="json"),
        "timeline": [e.model_dump(mode="json") for e in timeline],
        "time_to_acknowledge_seconds": tta.total_seconds() if tta is not None else None,
        "time_to_resolve_seconds": ttr.total_seconds() if ttr is not None else None,
        "diagnosis": dict(diagnosis) if diagnosis is not None else None,
    }


def to_markdown(
    incident: Incident, timeline: Sequence[TimelineEvent], diagnosis: Mapping[str, Any] | None
) -> str:
    out: list[str] = [f"# Postmortem: incident #{incident.id}: {_cell(incident.title) or '(untitled)'}", ""]
    out += _summary(incident)
    out += ["", "## Timeline", ""]
    if timeline:
        out += ["| time (UTC) | event | what | who |", "|---|---|---|---|"]
        out += [
            f"| {_stamp(e.at)} | {e.kind} | {_cell(e.text)} | {_cell(e.actor) if e.actor else ''} |" for e in timeline
        ]
    else:
        out.append("No events recorded.")
    out += ["", *_diagnosis(diagnosis)]
    out += ["", "## Impact", "", TODO, "", "## Root cause", ""]
    causes = (diagnosis or {}).get("causes") or []
    if causes:
        out.append(f"Diagnosed as **{_cell(causes[0].get('title', causes[0].get('id')))}**; confirm or correct.")
        out.append("")
    out += [TODO, "", "## Action items", "", "- [ ] _To be completed._", ""]
    return "\n".join(out)


def _summary(incident: Incident) -> list[str]:
    tta = duration(time_to_acknowledge(incident))
    ttr = duration(time_to_resolve(incident))
    ack = f"{tta} (by {_cell(incident.acknowledged_by)})" if tta and incident.acknowledged_by else tta
    rows = [
        ("Service", incident.service or "(unrouted)"),
        ("Status", f"HTTP {incident.status}" if incident.status else "-"),
        ("State", incident.state.value),
        ("URL", incident.url or "-"),
        ("Opened", _stamp(incident.opened_at)),
        ("Acknowledged", _stamp(incident.acknowledged_at) if incident.acknowledged_at else "not acknowledged"),
        ("Resolved", _stamp(incident.resolved_at) if incident.resolved_at else "not resolved"),
        ("Time to acknowledge", ack or "-"),
        ("Time to resolve", ttr or "-"),
        ("Alerts", str(incident.alert_count)),
    ]
    return ["| | |", "|---|---|", *(f"| {name} | {_cell(value)} |" for name, value in rows)]


def _diagnosis(diagnosis: Mapping[str, Any] | None) -> list[str]:
    out = ["## Diagnosis", ""]
    if diagnosis is None:
        return [*out, "No diagnosis was stored for this incident."]
    causes = diagnosis.get("causes") or []
    if causes:
        top = causes[0]
        confidence = float(top.get("confidence", 0.0))
        out += [f"### Cause: {_cell(top.get('title', top.get('id')))} (`{top.get('id')}`, {confidence:.0%})", ""]
        if top.get("summary"):
            out += [str(top["summary"]), ""]
        evidence = top.get("evidence") or []
        if evidence:
            quoted = "\n>\n".join(f"> {_quote(str(line))}" for line in evidence)  # one paragraph per line
            out += ["Evidence:", "", quoted, ""]
        steps = top.get("next_steps") or []
        if steps:
            out += ["Next steps suggested:", "", *(f"- {_cell(step)}" for step in steps), ""]
        others = [f"`{c.get('id')}` ({float(c.get('confidence', 0.0)):.0%})" for c in causes[1:]]
        if others:
            out += [f"Other candidates: {', '.join(others)}", ""]
    else:
        out += ["No cause was found.", ""]
    findings = [f for f in diagnosis.get("findings") or [] if f.get("severity") != "ok"]
    out += ["### Findings", ""]
    if not findings:
        return [*out, "No findings."]
    for finding in findings:
        where = f" on {finding['host']}" if finding.get("host") else ""
        summary = _cell(finding.get("summary", ""))
        out.append(f"- **{finding.get('severity', '?')}** `{finding.get('kind')}`{where}: {summary}")
        out += [f"  > {_quote(str(line))}" for line in (finding.get("evidence") or [])[:3]]
    return out
