"""Domain models shared by every layer: findings, causes, diagnoses and alerts.

These are plain frozen pydantic models with no I/O. Their JSON form (``model_dump(mode="json")``) is the
fixed interface of DESIGN §4.2.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bot.errors import InvalidStatus

#: Evidence lines are quoted verbatim up to this many characters; longer lines are cut with a marker.
MAX_EVIDENCE_CHARS = 2000


class Severity(StrEnum):
    """How bad a finding is. Ordered: ok < info < warning < critical."""

    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.OK: 0, Severity.INFO: 1, Severity.WARNING: 2, Severity.CRITICAL: 3}


class Finding(BaseModel):
    """One fact established from evidence: what was seen, how bad it is, and the lines that show it.

    ``kind`` is a stable dotted name (``nginx.upstream_refused``); ``evidence`` holds input lines
    verbatim (after redaction); ``data`` holds the parsed values (counts, addresses, percentages).
    """

    model_config = ConfigDict(frozen=True)

    kind: str
    severity: Severity
    summary: str
    evidence: tuple[str, ...] = ()
    data: dict[str, Any] = Field(default_factory=dict)
    host: str | None = None
    runbook: str | None = None
    reader: str | None = None


class Signal(BaseModel):
    """What a finding kind suggests: a cause of the catalog and how strongly (0..1).

    Readers declare their signals next to the kinds they emit, so a plugin's parser brings its own
    meaning along. ``weight`` is the probability that the cause is real when this is the only
    evidence: a direct log line naming the failure is ~0.8, a confirming host check ~0.5, a
    circumstantial hint ~0.2.
    """

    model_config = ConfigDict(frozen=True)

    cause: str
    weight: float = Field(ge=0.0, le=1.0)


class Cause(BaseModel):
    """A ranked suspect: a catalog id with a calibrated confidence and the evidence that supports it."""

    model_config = ConfigDict(frozen=True)

    id: str
    confidence: float = Field(ge=0.0, le=1.0)
    title: str
    summary: str
    evidence: tuple[str, ...] = ()
    next_steps: tuple[str, ...] = ()
    supported_by: tuple[str, ...] = ()


class Diagnosis(BaseModel):
    """The outcome of explain or diagnose: findings, ranked causes and notes for the reader."""

    model_config = ConfigDict(frozen=True)

    status: int | None
    target: str | None = None
    findings: tuple[Finding, ...] = ()
    causes: tuple[Cause, ...] = ()
    notes: tuple[str, ...] = ()
    evidence_found: bool = True

    @property
    def top(self) -> Cause | None:
        return self.causes[0] if self.causes else None

    def to_json(self) -> dict[str, Any]:
        """The JSON shape of DESIGN §4.2 (``target`` only when there is one)."""
        body = self.model_dump(mode="json", exclude={"target"} if self.target is None else set())
        return body


class Alert(BaseModel):
    """One alert from a monitoring system, normalised.

    ``fingerprint`` identifies the alert within its ``source`` (the source's own key where it has one);
    ``status`` is the HTTP status the alert reports (100..599) when one could be read; ``group_key`` is the
    source's own grouping key (Alertmanager and Grafana ``groupKey``) when it sends one.
    """

    model_config = ConfigDict(frozen=True)

    source: str
    fingerprint: str
    state: Literal["firing", "resolved"]
    status: int | None = None
    url: str | None = None
    service: str | None = None
    host: str | None = None
    summary: str = ""
    labels: dict[str, str] = Field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    group_key: str | None = None


def parse_status(value: str | int | None) -> int | None:
    """Validate an HTTP error status given by a person (``--status 502``); raise InvalidStatus."""
    if value is None:
        return None
    text = str(value).strip()
    if not text.isdigit():
        raise InvalidStatus(text)
    code = int(text)
    if not 400 <= code <= 599:
        raise InvalidStatus(text)
    return code


def quote_line(line: str) -> str:
    """A line as evidence: verbatim without its line ending, cut (with a marker) when huge."""
    line = line.rstrip("\r\n")
    if len(line) > MAX_EVIDENCE_CHARS:
        return line[:MAX_EVIDENCE_CHARS] + f" …[{len(line) - MAX_EVIDENCE_CHARS} more characters]"
    return line
