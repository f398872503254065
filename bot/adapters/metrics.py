"""Prometheus metrics of one process, in the text exposition format (version 0.0.4), written by hand.

- ``incident_bot_alerts_received_total{source,outcome}`` (counter): one per alert the intake decoded,
  labelled with what the incident service did with it (``opened``, ``joined``, ``duplicate``…); a
  request refused before any alert was read counts once with ``unauthorized``, ``bad_signature``,
  ``too_large``, ``invalid`` or ``unavailable``. Unknown sources are not counted (no unbounded labels).
- ``incident_bot_incidents_opened_total`` (counter): incidents this process opened.
- ``incident_bot_diagnosis_duration_seconds{outcome}`` (histogram): how long each diagnosis job took,
  ``ok`` or ``failed``; fed by :meth:`Metrics.timed`, a wrapper around the worker's diagnose function.
- ``incident_bot_jobs_queued`` (gauge): diagnosis jobs not finished (queued or running), read from the
  store at scrape time.
- ``incident_bot_outbox_lag_seconds`` (gauge): age of the oldest undelivered outbox message (0 when none);
  ``incident_bot_outbox_pending`` (gauge): how many there are.

Counters live in memory and start at zero with the process, as Prometheus expects of counters.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from bot.core.incidents import Incident
from bot.core.models import Diagnosis
from bot.core.ports import Reporter
from bot.core.store import Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Diagnosis duration buckets (seconds): SSH runs take seconds, the deadline is about a minute.
BUCKETS: tuple[float, ...] = (0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)

DiagnoseIncident = Callable[[Incident, Reporter], Awaitable[Diagnosis]]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in pairs) + "}"


def _number(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Histogram:
    def __init__(self, buckets: Sequence[float] = BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self.counts = [0] * len(self.buckets)
        self.count = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for n, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[n] += 1

    def lines(self, name: str, labels: Sequence[tuple[str, str]]) -> list[str]:
        out = [
            f"{name}_bucket{_labels([*labels, ('le', _number(bound))])} {count}"
            for bound, count in zip(self.buckets, self.counts, strict=True)
        ]
        out.append(f"{name}_bucket{_labels([*labels, ('le', '+Inf')])} {self.count}")
        out.append(f"{name}_sum{_labels(labels)} {_number(self.sum)}")
        out.append(f"{name}_count{_labels(labels)} {self.count}")
        return out


class Metrics:
    """What ``GET /metrics`` shows; the HTTP adapter and the diagnosis worker feed it."""

    def __init__(
        self,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.monotonic = monotonic
        self.alerts: dict[tuple[str, str], int] = {}
        self.incidents_opened = 0
        self.diagnosis: dict[str, Histogram] = {}

    def alert_received(self, source: str, outcome: str, count: int = 1) -> None:
        key = (source, outcome)
        self.alerts[key] = self.alerts.get(key, 0) + count

    def incident_opened(self, count: int = 1) -> None:
        self.incidents_opened += count

    def diagnosis_finished(self, seconds: float, ok: bool) -> None:
        self.diagnosis.setdefault("ok" if ok else "failed", Histogram()).observe(max(seconds, 0.0))

    def timed(self, diagnose: DiagnoseIncident) -> DiagnoseIncident:
        """``diagnose`` that also records its duration (the worker's function, wrapped in serve)."""

        async def run(incident: Incident, reporter: Reporter) -> Diagnosis:
            start = self.monotonic()
            ok = False
            try:
                result = await diagnose(incident, reporter)
                ok = True
                return result
            finally:
                self.diagnosis_finished(self.monotonic() - start, ok)

        return run

    async def render(self, store: Store) -> str:
        """The exposition text: the counters, then the gauges read from ``store`` now."""
        jobs = await store.pending_jobs()
        messages = await store.pending_messages()
        now = self.clock()
        lag = max((now - min(m.created_at for m in messages)).total_seconds(), 0.0) if messages else 0.0
        lines = [
            "# HELP incident_bot_alerts_received_total Alerts received, by source and outcome.",
            "# TYPE incident_bot_alerts_received_total counter",
        ]
        for (source, outcome), value in sorted(self.alerts.items()):
            labels = _labels([("source", source), ("outcome", outcome)])
            lines.append(f"incident_bot_alerts_received_total{labels} {value}")
        lines += [
            "# HELP incident_bot_incidents_opened_total Incidents opened.",
            "# TYPE incident_bot_incidents_opened_total counter",
            f"incident_bot_incidents_opened_total {self.incidents_opened}",
            "# HELP incident_bot_diagnosis_duration_seconds Time a diagnosis job took.",
            "# TYPE incident_bot_diagnosis_duration_seconds histogram",
        ]
        for outcome, histogram in sorted(self.diagnosis.items()):
            lines += histogram.lines("incident_bot_diagnosis_duration_seconds", [("outcome", outcome)])
        lines += [
            "# HELP incident_bot_jobs_queued Diagnosis jobs queued or running.",
            "# TYPE incident_bot_jobs_queued gauge",
            f"incident_bot_jobs_queued {len(jobs)}",
            "# HELP incident_bot_outbox_pending Outbox messages not delivered yet.",
            "# TYPE incident_bot_outbox_pending gauge",
            f"incident_bot_outbox_pending {len(messages)}",
            "# HELP incident_bot_outbox_lag_seconds Age of the oldest undelivered outbox message.",
            "# TYPE incident_bot_outbox_lag_seconds gauge",
            f"incident_bot_outbox_lag_seconds {_number(lag)}",
        ]
        return "\n".join(lines) + "\n"
