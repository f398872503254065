"""The confirmation probe's result: attempts against a service URL, a verdict, and the Findings they make.

Before paging, the bot re-probes the service URL a few times (``bot/adapters/probe.py`` does the I/O)
and records, per attempt, which layer failed: name resolution, the TCP connect (refused or timed
out), the TLS handshake, the wait for an answer, or the HTTP status itself. The report turns the
attempts into Findings with stable kinds, so the probe's outcome joins the evidence of a diagnosis
and the incident's timeline.

Timings follow curl's ``-w`` convention: each is the number of seconds from the start of the attempt
to the moment the phase *completed* (``dns`` ≤ ``connect`` ≤ ``tls`` ≤ ``first_byte`` ≤ ``total``),
so the cost of a phase is the difference from the previous one. With redirects, the phases are those
of the last request and ``redirect`` is when it started. A phase that did not happen is ``None``.

Verdicts:

* ``ok``: every attempt got an answer that is not a 5xx;
* ``recovered``: the last attempt was fine after at least one failure (a blip: recorded, not paged);
* ``failing``: the last attempt failed;
* ``refused``: the probe was not made because the URL (or a redirect) points where the bot may not
  go (link-local and cloud metadata addresses; loopback reached from a non-loopback URL).

What a failure seen from outside suggests is declared in :data:`PROBE_SIGNALS`, the same way evidence
readers declare the signals of their kinds.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, computed_field

from bot.core.models import Finding, Severity, Signal
from bot.core.redact import redact

Layer = Literal[
    "ok",
    "dns",
    "connect_refused",
    "connect_timeout",
    "connect_error",
    "tls",
    "read_timeout",
    "protocol",
    "http_status",
    "refused",
]
Verdict = Literal["ok", "recovered", "failing", "refused"]

#: The finding kind each failing layer becomes.
LAYER_KINDS: dict[str, str] = {
    "dns": "probe.dns_failure",
    "connect_refused": "probe.connect_refused",
    "connect_timeout": "probe.connect_timeout",
    "connect_error": "probe.connect_error",
    "tls": "probe.tls_error",
    "read_timeout": "probe.read_timeout",
    "protocol": "probe.connection_broken",
    "http_status": "probe.http_5xx",
    "refused": "probe.refused",
}

_LAYER_TEXT: dict[str, str] = {
    "dns": "the service's name does not resolve",
    "connect_refused": "the TCP connection is refused: nothing listens on the service's address and port",
    "connect_timeout": "the TCP connect times out (host down, firewall dropping, or a full accept backlog)",
    "connect_error": "the TCP connect fails (no route to the host)",
    "tls": "the TLS handshake with the service fails",
    "read_timeout": "the service accepts the connection but sends no answer in time",
    "protocol": "the service closes the connection without a valid HTTP answer",
    "http_status": "the service answers with a 5xx status",
    "refused": "the probe was refused by the bot's address policy",
}

#: What each probe finding kind suggests, seen from the bot (outside the service's proxy).
#:
#: The weights are lower than the same failure seen from the proxy host (``curl.*``): from outside,
#: the front of the service is what failed, and a firewall or the network between can look the same.
#: A refused connection to the public URL means the front proxy (or the origin itself, with no proxy)
#: is not listening: ``upstream_down`` is the closest cause of the catalog. A 5xx answer is the
#: symptom being confirmed, so ``probe.http_5xx`` points at no cause, nor do ``ok``/``recovered``.
PROBE_SIGNALS: dict[str, Signal] = {
    "probe.connect_refused": Signal(cause="upstream_down", weight=0.45),
    "probe.connect_error": Signal(cause="upstream_down", weight=0.25),
    "probe.connect_timeout": Signal(cause="upstream_connect_timeout", weight=0.35),
    "probe.read_timeout": Signal(cause="upstream_timeout", weight=0.3),
    "probe.dns_failure": Signal(cause="dns_failure", weight=0.5),
    "probe.tls_error": Signal(cause="upstream_tls_error", weight=0.4),
    "probe.connection_broken": Signal(cause="upstream_crashed", weight=0.3),
}


class Timings(BaseModel):
    """Seconds from the start of the attempt to the end of each phase (see the module docstring)."""

    model_config = ConfigDict(frozen=True)

    dns: float | None = None
    connect: float | None = None
    tls: float | None = None
    first_byte: float | None = None
    total: float = 0.0
    redirect: float | None = None

    def describe(self) -> str:
        parts = [
            f"{name} {value:.3f} s"
            for name, value in (
                ("dns", self.dns),
                ("connect", self.connect),
                ("tls", self.tls),
                ("first byte", self.first_byte),
                ("total", self.total),
            )
            if value is not None
        ]
        return ", ".join(parts)


class ProbeAttempt(BaseModel):
    """One request (with the redirects it followed) and the layer at which it failed, or ``ok``."""

    model_config = ConfigDict(frozen=True)

    url: str
    layer: Layer
    status: int | None = None
    reason: str = ""
    retry_after: str | None = None
    address: str | None = None
    port: int | None = None
    timings: Timings = Timings()
    error: str = ""
    redirects: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.layer == "ok"

    def line(self, number: int, of: int) -> str:
        """The attempt as one evidence line (secrets in the URL masked)."""
        where = f"{self.address}:{self.port}" if self.address else "?"
        if self.status is not None and self.layer in ("ok", "http_status"):
            outcome = f"HTTP {self.status}{' ' + self.reason if self.reason else ''} from {where}"
            if self.retry_after:
                outcome += f", Retry-After: {self.retry_after}"
        else:
            outcome = f"{self.layer}: {self.error or 'failed'}"
            if self.address:
                outcome += f" ({where})"
        via = f" via {len(self.redirects)} redirect(s)" if self.redirects else ""
        timing = self.timings.describe()
        return redact(f"probe {number}/{of} GET {self.url}{via} → {outcome} ({timing})")


class ProbeReport(BaseModel):
    """Every attempt against one URL, its verdict and the Findings it makes."""

    model_config = ConfigDict(frozen=True)

    url: str
    attempts: tuple[ProbeAttempt, ...]

    @computed_field  # type: ignore[prop-decorator]
    @property
    def verdict(self) -> Verdict:
        if any(a.layer == "refused" for a in self.attempts):
            return "refused"
        if not self.attempts:
            return "failing"
        if all(a.ok for a in self.attempts):
            return "ok"
        return "recovered" if self.attempts[-1].ok else "failing"

    @property
    def status(self) -> int | None:
        """The HTTP status of the last attempt that got one."""
        for attempt in reversed(self.attempts):
            if attempt.status is not None:
                return attempt.status
        return None

    def findings(self) -> list[Finding]:
        """``probe.ok``, ``probe.recovered``, ``probe.refused``, or one finding per failing layer."""
        total = len(self.attempts)
        lines = tuple(a.line(i, total) for i, a in enumerate(self.attempts, 1))
        url = redact(self.url)
        base: dict[str, Any] = {
            "url": url,
            "attempts": total,
            "verdict": self.verdict,
            "layers": [a.layer for a in self.attempts],
        }
        verdict = self.verdict
        if verdict == "ok":
            last = self.attempts[-1]
            return [
                Finding(
                    kind="probe.ok",
                    severity=Severity.OK,
                    summary=f"probe: {url} answered HTTP {last.status} on all {total} attempts",
                    evidence=lines,
                    data={**base, "status": last.status, **_timing_data(last)},
                    reader="probe",
                )
            ]
        if verdict == "recovered":
            failed = [a for a in self.attempts if not a.ok]
            what = ", ".join(sorted({_what(a) for a in failed}))
            return [
                Finding(
                    kind="probe.recovered",
                    severity=Severity.WARNING,
                    summary=(
                        f"probe: {url} failed {len(failed)} of {total} attempts ({what}) and then answered "
                        f"HTTP {self.attempts[-1].status}: a blip that recovered"
                    ),
                    evidence=lines,
                    data={**base, "failures": len(failed), "status": self.attempts[-1].status},
                    reader="probe",
                )
            ]
        if verdict == "refused":
            refused = next(a for a in self.attempts if a.layer == "refused")
            return [
                Finding(
                    kind="probe.refused",
                    severity=Severity.WARNING,
                    summary=f"probe of {url} not made: {refused.error}",
                    evidence=lines,
                    data={**base, "reason": refused.error, "address": refused.address},
                    reader="probe",
                )
            ]
        return self._failures(lines, base)

    def _failures(self, lines: tuple[str, ...], base: dict[str, Any]) -> list[Finding]:
        total = len(self.attempts)
        groups: dict[str, list[int]] = {}
        for index, attempt in enumerate(self.attempts):
            if not attempt.ok:
                groups.setdefault(LAYER_KINDS[attempt.layer], []).append(index)
        out: list[Finding] = []
        for kind, indexes in groups.items():
            first = self.attempts[indexes[0]]
            last = self.attempts[indexes[-1]]
            count = len(indexes)
            data: dict[str, Any] = {**base, "count": count, "layer": first.layer, **_timing_data(last)}
            if first.address:
                data["address"] = first.address
                data["port"] = first.port
            if first.layer == "http_status":
                statuses = sorted({s for i in indexes if (s := self.attempts[i].status) is not None})
                data["status"] = last.status
                data["statuses"] = statuses
                retry = next((self.attempts[i].retry_after for i in indexes if self.attempts[i].retry_after), None)
                if retry:
                    data["retry_after"] = retry
                codes = "/".join(str(s) for s in statuses)
                summary = f"probe: {redact(self.url)} answered HTTP {codes} on {count} of {total} attempts"
                if retry:
                    summary += f" (Retry-After: {retry})"
            else:
                data["error"] = last.error
                summary = f"probe: {_LAYER_TEXT[first.layer]} ({count} of {total} attempts): {last.error}"
            out.append(
                Finding(
                    kind=kind,
                    severity=Severity.CRITICAL,
                    summary=summary,
                    evidence=tuple(lines[i] for i in indexes),
                    data=data,
                    reader="probe",
                )
            )
        return out


def _what(attempt: ProbeAttempt) -> str:
    if attempt.layer == "http_status":
        return f"HTTP {attempt.status}"
    return attempt.layer


def _timing_data(attempt: ProbeAttempt) -> dict[str, Any]:
    timings = attempt.timings.model_dump(exclude_none=True)
    return {"timings": timings} if timings else {}
