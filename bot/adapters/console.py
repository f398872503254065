"""Terminal rendering with rich: diagnoses for ``explain``/``diagnose`` and the catalog listing.

Every piece of input text goes through ``Text`` (never markup), so log lines such as ``[error]`` print
as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from rich.console import Console
from rich.text import Text

from bot.core.models import Diagnosis, Severity, Signal
from bot.core.ports import ProgressEvent
from bot.diagnosis.catalog import CATALOG, CatalogEntry

_REASONS = {
    400: "Bad Request", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
    500: "Internal Server Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 520: "Web Server Returned an Unknown Error",
    521: "Web Server Is Down", 522: "Connection Timed Out", 523: "Origin Is Unreachable",
    524: "A Timeout Occurred", 525: "SSL Handshake Failed", 526: "Invalid SSL Certificate",
}  # fmt: skip
_SEVERITY_STYLE = {
    Severity.CRITICAL: "bold red",
    Severity.WARNING: "yellow",
    Severity.INFO: "cyan",
    Severity.OK: "green",
}


class ProgressPrinter:
    """Live progress of a diagnosis on stderr: one line per host connection and per runbook."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.hosts = 0
        self.failed_hosts = 0

    def __call__(self, event: ProgressEvent) -> None:
        if event.runbook is None and event.state == "connecting":
            self.hosts += 1
            return
        if event.state == "started":
            return
        if event.runbook is None and event.state == "failed":
            self.failed_hosts += 1
        mark = {"done": "✔", "failed": "✖"}.get(event.state, "…")
        style = "red" if event.state == "failed" else "green"
        line = Text(f"  {mark} ", style=style)
        line.append(f"{event.host:<16} {event.runbook or 'connect':<18} {event.elapsed:6.1f}s  {event.detail}")
        self.console.print(line)


def status_line(status: int | None) -> str:
    if status is None:
        return "HTTP status not given"
    return f"{status} {_REASONS.get(status, '')}".strip()


def render_diagnosis(diagnosis: Diagnosis, console: Console, *, verbose: bool = False) -> None:
    """Top cause first with its evidence and next steps, then the other candidates and the findings.

    Healthy and informational findings are counted, not listed, unless ``verbose``: at 3 a.m. the
    problems are what matters.
    """
    top = diagnosis.top
    head = Text(status_line(diagnosis.status), style="bold")
    if diagnosis.target:
        head.append(f" on {diagnosis.target}")
    console.print(head)
    if top is not None and diagnosis.evidence_found:
        line = Text("Most likely: ", style="bold")
        line.append(top.title, style="bold red")
        line.append(f"  ({top.id}, confidence {top.confidence:.0%})")
        console.print(line)
        console.print(Text("  " + top.summary))
        if top.evidence:
            console.print(Text("Evidence:", style="bold"))
            for quoted in top.evidence:
                console.print(Text("  > " + quoted, style="dim"), soft_wrap=True)
        if top.next_steps:
            console.print(Text("Next steps:", style="bold"))
            for number, step in enumerate(top.next_steps, 1):
                console.print(Text(f"  {number}. {step}"))
        others = diagnosis.causes[1:]
    else:
        console.print(Text("No evidence of a cause was found.", style="bold yellow"))
        others = diagnosis.causes
    if others:
        console.print(
            Text("Other candidates:" if top and diagnosis.evidence_found else "Usual suspects:", style="bold")
        )
        for cause in others:
            row = Text(f"  {cause.confidence:>4.0%}  {cause.id:<26}  {cause.title}")
            if not cause.evidence:
                row.append("  (no evidence seen)", style="dim")
            console.print(row)
    shown = [
        f for f in diagnosis.findings if verbose or f.severity in (Severity.CRITICAL, Severity.WARNING)
    ]
    hidden = len(diagnosis.findings) - len(shown)
    if diagnosis.findings:
        more = f"; {hidden} healthy or informational not shown, --verbose lists them" if hidden else ""
        console.print(Text(f"Findings ({len(shown)}{more}):", style="bold"))
        for finding in shown:
            row = Text("  ")
            row.append(f"{finding.severity.value:<8}", style=_SEVERITY_STYLE[finding.severity])
            where = f"{finding.host}: " if finding.host else ""
            row.append(f" {where}{finding.kind:<34} {finding.summary}")
            console.print(row)
    for note in diagnosis.notes:
        console.print(Text("Note: " + note, style="italic"))


def render_catalog(signals: Mapping[str, Signal], rules: Iterable[Callable[..., object]], console: Console) -> None:
    """The cause catalog with the finding kinds that support each cause, then the rules."""
    by_cause: dict[str, list[tuple[str, float]]] = {}
    for kind, signal in sorted(signals.items()):
        by_cause.setdefault(signal.cause, []).append((kind, signal.weight))
    for entry in CATALOG.values():
        _render_entry(entry, by_cause.get(entry.id, []), console)
    console.print(Text("Rules", style="bold underline"))
    for rule in rules:
        doc = (rule.__doc__ or "").strip().split("\n\n")[0].replace("\n    ", " ")
        console.print(Text(f"  {getattr(rule, '__name__', rule)}: ", style="bold").append(doc, style=""))


def _render_entry(entry: CatalogEntry, kinds: list[tuple[str, float]], console: Console) -> None:
    head = Text(entry.id, style="bold")
    head.append(f"  {entry.title}  (usually {'/'.join(str(s) for s in entry.statuses)})")
    console.print(head)
    console.print(Text("  " + entry.meaning))
    if kinds:
        listed = ", ".join(f"{kind} ({weight:.2f})" for kind, weight in sorted(kinds, key=lambda k: -k[1]))
        console.print(Text("  evidence: " + listed, style="dim"))
    if entry.explains:
        console.print(Text("  outranks: " + ", ".join(entry.explains), style="dim"))
