"""Chat-neutral output: what the bot says, as a list of typed blocks each adapter renders its own way.

Slack turns them into Block Kit, Telegram into HTML, the console into rich text; each adapter enforces
its platform's limits. Text in blocks is plain (no markup): adapters escape it. ``Code`` holds
verbatim lines (evidence, command output) that adapters show monospaced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from bot.core.models import Cause, Diagnosis, Finding, Severity
from bot.core.redact import redact_or_withhold


@dataclass(frozen=True)
class Header:
    text: str


@dataclass(frozen=True)
class Section:
    text: str


@dataclass(frozen=True)
class Fields:
    pairs: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Code:
    lines: tuple[str, ...]


@dataclass(frozen=True)
class Context:
    text: str


@dataclass(frozen=True)
class Divider:
    pass


@dataclass(frozen=True)
class Button:
    label: str
    action: str
    value: str
    style: Literal["default", "primary", "danger"] = "default"


@dataclass(frozen=True)
class Actions:
    buttons: tuple[Button, ...] = field(default_factory=tuple)


Block = Header | Section | Fields | Code | Context | Divider | Actions

_MARK = {Severity.CRITICAL: "✖", Severity.WARNING: "▲", Severity.INFO: "•", Severity.OK: "✔"}


def cause_blocks(cause: Cause) -> list[Block]:
    """The cause card: title with confidence, summary, quoted evidence, next steps."""
    blocks: list[Block] = [
        Header(f"Suspected cause: {cause.title}"),
        Section(f"{redact_or_withhold(cause.summary)}\nConfidence {cause.confidence:.0%} ({cause.id})"),
    ]
    if cause.evidence:
        blocks.append(Code(tuple(redact_or_withhold(line) for line in cause.evidence)))
    if cause.next_steps:
        blocks.append(Section("Next steps:\n" + "\n".join(f"{i}. {s}" for i, s in enumerate(cause.next_steps, 1))))
    return blocks


def finding_blocks(findings: tuple[Finding, ...] | list[Finding]) -> list[Block]:
    """A compact list of findings, worst first."""
    ordered = sorted(findings, key=lambda f: -f.severity.rank)
    lines = [f"{_MARK[f.severity]} {f.host + ': ' if f.host else ''}{redact_or_withhold(f.summary)}" for f in ordered]
    return [Section("\n".join(lines))] if lines else []


def diagnosis_blocks(diagnosis: Diagnosis, *, with_findings: bool = True) -> list[Block]:
    """What ``/explain`` answers in chat: the top cause card, other candidates, findings (unless an
    incident's thread already showed them host by host) and notes."""
    blocks: list[Block] = []
    top = diagnosis.top
    if top is not None and diagnosis.evidence_found:
        blocks.extend(cause_blocks(top))
        others = diagnosis.causes[1:4]
        if others:
            blocks.append(Context("Also possible: " + ", ".join(f"{c.id} {c.confidence:.0%}" for c in others)))
    else:
        blocks.append(Header("No evidence of a cause was found"))
        if diagnosis.causes:
            suspects = ", ".join(f"{c.id} {c.confidence:.0%}" for c in diagnosis.causes)
            blocks.append(Section(f"Usual suspects for {diagnosis.status}: {suspects}"))
    if with_findings and diagnosis.findings:
        blocks.append(Divider())
        blocks.extend(finding_blocks(diagnosis.findings))
    for note in diagnosis.notes:
        blocks.append(Context(redact_or_withhold(note)))
    return blocks


def plain_text(blocks: list[Block]) -> str:
    """A plain-text rendering (chat fallbacks, logs, tests)."""
    out: list[str] = []
    for block in blocks:
        match block:
            case Header(text=text) | Section(text=text) | Context(text=text):
                out.append(text)
            case Fields(pairs=pairs):
                out.extend(f"{k}: {v}" for k, v in pairs)
            case Code(lines=lines):
                out.extend("> " + line for line in lines)
            case Divider():
                out.append("---")
            case Actions(buttons=buttons):
                out.append(" ".join(f"[{b.label}]" for b in buttons))
    return "\n".join(out)


def redacted(blocks: list[Block]) -> list[Block]:
    """``blocks`` with every text passed through :func:`~bot.core.redact.redact_or_withhold` (headers,
    sections, field values, code lines, context); buttons and dividers as they are. A text that cannot
    be redacted is withheld, never sent raw. Chat senders may apply it to whatever they post."""
    out: list[Block] = []
    for block in blocks:
        match block:
            case Header(text=text):
                out.append(Header(redact_or_withhold(text)))
            case Section(text=text):
                out.append(Section(redact_or_withhold(text)))
            case Context(text=text):
                out.append(Context(redact_or_withhold(text)))
            case Fields(pairs=pairs):
                out.append(Fields(tuple((k, redact_or_withhold(v)) for k, v in pairs)))
            case Code(lines=lines):
                out.append(Code(tuple(redact_or_withhold(line) for line in lines)))
            case _:
                out.append(block)
    return out
