"""Diagnosis rules: pure functions from the findings and the status code to suspicions.

Each rule looks at the :class:`Context` and yields :class:`Suspicion` objects: a cause id, a weight in
[0, 1] (the probability the cause is real given only this support) and the lines that support it.
The engine combines the suspicions of every rule (see ``engine.py``). Every rule's docstring says
what it looks for and why; ``incident-bot explain --list-causes`` prints them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from bot.core.models import Finding, Signal

#: Cap for a single supporting signal; several independent ones may push a cause higher.
MAX_SINGLE_WEIGHT = 0.95


@dataclass(frozen=True)
class Suspicion:
    cause: str
    weight: float
    evidence: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    summary: str = ""


@dataclass
class Context:
    """What rules see: the findings, the reported HTTP status, and each finding kind's signal."""

    findings: list[Finding]
    status: int | None
    signals: Mapping[str, Signal]
    _by_kind: dict[str, list[Finding]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        for finding in self.findings:
            self._by_kind.setdefault(finding.kind, []).append(finding)

    def of(self, kind: str) -> list[Finding]:
        return self._by_kind.get(kind, [])

    def first(self, kind: str) -> Finding | None:
        found = self.of(kind)
        return found[0] if found else None


Rule = Callable[[Context], Iterable[Suspicion]]


def direct_evidence(ctx: Context) -> Iterable[Suspicion]:
    """Each finding whose kind declares a signal supports that signal's cause.

    Readers declare, next to the kinds they emit, which cause a kind points at and how strongly
    (a proxy line naming the failure is strong, a host metric is weaker). A message repeated many
    times is slightly stronger than a single occurrence (a one-off can be an unrelated blip), but
    repetition is not independent evidence, so the bonus is small.
    """
    for finding in ctx.findings:
        signal = ctx.signals.get(finding.kind)
        if signal is None or signal.weight <= 0:
            continue
        count = int(finding.data.get("count", 1) or 1)
        bonus = 0.03 if count >= 5 else 0.0
        yield Suspicion(
            signal.cause,
            min(MAX_SINGLE_WEIGHT, signal.weight + bonus),
            finding.evidence,
            (finding.kind,),
            finding.summary,
        )


def load_versus_cores(ctx: Context) -> Iterable[Suspicion]:
    """cpu_starvation when the load average is far above the number of CPUs.

    A load average counts runnable (and uninterruptible) tasks; above about twice the core count
    requests queue for CPU and response times grow with the queue. It is a one-minute average of a
    shared machine, so it stays circumstantial: twice the cores weighs 0.4, four times 0.6, eight
    times 0.85 — below a log line that names the failure. The core count comes from
    ``nproc``/``lscpu`` output, a ``top`` CPU line, or a header; without it, an absolute load over
    32 still counts as weak evidence. High CPU steal time (a starved virtual machine) also counts.
    """
    cores: int | None = None
    for finding in ctx.of("host.cpu_count"):
        cores = int(finding.data.get("cores", 0)) or cores
    for finding in ctx.of("host.load"):
        load1 = float(finding.data.get("load1", 0.0))
        load5 = float(finding.data.get("load5", load1))
        finding_cores = int(finding.data.get("cores", 0) or 0) or cores
        load = max(load1, load5)
        if finding_cores:
            ratio = load / finding_cores
            if ratio >= 2:
                weight = min(0.85, 0.2 + 0.1 * ratio)
                yield Suspicion(
                    "cpu_starvation",
                    weight,
                    finding.evidence,
                    (finding.kind,),
                    f"load {load:.2f} on {finding_cores} CPUs ({ratio:.1f}× the cores)",
                )
        elif load >= 32:
            yield Suspicion(
                "cpu_starvation", 0.35, finding.evidence, (finding.kind,), f"load {load:.2f} (cores unknown)"
            )
    for finding in ctx.of("host.cpu_steal"):
        steal = float(finding.data.get("steal", 0.0))
        if steal >= 20:
            yield Suspicion("cpu_starvation", 0.6, finding.evidence, (finding.kind,), f"{steal:.0f}% CPU steal time")


def timewait_pileup(ctx: Context) -> Iterable[Suspicion]:
    """port_exhaustion when ``ss -s`` shows tens of thousands of sockets in TIME-WAIT.

    Each closed outgoing connection holds its local port for 60 s in TIME-WAIT; at about 28,000
    (the default ephemeral range) toward one destination, connect() fails with EADDRNOTAVAIL. Alone
    this is a warning sign; with nginx's ``(99: Cannot assign requested address)`` it is decisive
    (that line is a direct signal of its own).
    """
    for finding in ctx.of("host.sockets"):
        timewait = int(finding.data.get("timewait", 0))
        if timewait >= 20000:
            yield Suspicion(
                "port_exhaustion",
                min(0.7, 0.4 + timewait / 200000),
                finding.evidence,
                (finding.kind,),
                f"{timewait} sockets in TIME-WAIT",
            )


#: Behind a CDN, what the origin-side evidence means for the CDN's own status code.
CDN_EQUIVALENTS: dict[int, dict[str, str]] = {
    520: {"upstream_crashed": "cdn_bad_origin_response", "upstream_bad_response": "cdn_bad_origin_response"},
    521: {"upstream_down": "cdn_origin_unreachable"},
    522: {"upstream_connect_timeout": "cdn_origin_unreachable", "upstream_down": "cdn_origin_unreachable"},
    523: {"dns_failure": "cdn_origin_unreachable", "upstream_down": "cdn_origin_unreachable"},
    525: {"upstream_tls_error": "cdn_origin_tls"},
    526: {"upstream_tls_error": "cdn_origin_tls"},
}


def cdn_origin_view(ctx: Context) -> Iterable[Suspicion]:
    """Behind Cloudflare (status 520–526), origin-side evidence also supports the CDN cause.

    Readers do not know the status: an expired certificate is ``upstream_tls_error`` to them. When the
    site answers 526, that certificate is the origin's and the cause is ``cdn_origin_tls``; a refused
    origin behind a 521 is ``cdn_origin_unreachable``. The evidence is the same, so the weight is too
    (slightly higher, since the status confirms where the failure sits).
    """
    mapping = CDN_EQUIVALENTS.get(ctx.status or 0)
    if not mapping:
        return
    for finding in ctx.findings:
        signal = ctx.signals.get(finding.kind)
        if signal is None or signal.cause not in mapping:
            continue
        yield Suspicion(
            mapping[signal.cause],
            min(MAX_SINGLE_WEIGHT, signal.weight + 0.05),
            finding.evidence,
            (finding.kind,),
            finding.summary,
        )


RULES: tuple[Rule, ...] = (direct_evidence, load_versus_cores, timewait_pileup, cdn_origin_view)
