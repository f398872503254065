"""Ranking: combine the rules' suspicions into calibrated causes with quoted evidence.

1. Suspicions of one cause combine as independent evidence (noisy-OR): 1 - Π(1 - wᵢ), capped at 0.97,
   over distinct finding kinds (the strongest of each kind counts once). Two distinct kinds of support
   (a log line and a confirming host check) therefore rank above one.
2. A cause that does not usually produce the reported status is discounted (×0.8) and, when it is
   the best evidence-backed cause, the disagreement is said in a note instead of hidden.
3. A root cause outranks the symptoms it explains (the catalog's ``explains``): when the root is
   well supported, each symptom it explains is held below it.
4. With a status, the status's usual suspects are listed too, at low confidence and with no evidence,
   so the person sees what else to check. With no evidence at all they are all there is, and the
   diagnosis says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bot.core.models import Cause, Diagnosis, Finding, Severity, Signal
from bot.diagnosis.catalog import CATALOG, priors_for
from bot.diagnosis.rules import RULES, Context, Rule, Suspicion

MAX_CONFIDENCE = 0.97
STATUS_MISMATCH = 0.8
ROOT_THRESHOLD = 0.45
ROOT_MARGIN = 0.9
PRIOR_WITH_EVIDENCE = 0.5
MAX_EVIDENCE = 5
MAX_CAUSES = 8


@dataclass
class _Pool:
    support: list[Suspicion] = field(default_factory=list)

    def confidence(self) -> float:
        """Noisy-OR over distinct kinds of support: many findings of one kind (one per upstream, say)
        are one piece of evidence, not many."""
        best: dict[tuple[str, ...], float] = {}
        for suspicion in self.support:
            key = suspicion.kinds or (suspicion.summary,)
            best[key] = max(best.get(key, 0.0), suspicion.weight)
        miss = 1.0
        for weight in best.values():
            miss *= 1.0 - weight
        return min(MAX_CONFIDENCE, 1.0 - miss)


def _fits(cause: str, status: int | None) -> bool:
    if status is None:
        return True
    entry = CATALOG[cause]
    return status in entry.statuses


def diagnose(
    findings: Iterable[Finding],
    status: int | None,
    signals: Mapping[str, Signal],
    *,
    target: str | None = None,
    rules: Iterable[Rule] = RULES,
) -> Diagnosis:
    """Rank the causes of the catalog for these findings and this HTTP status."""
    found = sorted(findings, key=lambda f: (-f.severity.rank, f.kind))
    ctx = Context(found, status, signals)
    pools: dict[str, _Pool] = {}
    for rule in rules:
        for suspicion in rule(ctx):
            if suspicion.cause not in CATALOG:
                continue
            pool = pools.setdefault(suspicion.cause, _Pool())
            pool.support.append(suspicion)

    confidence = {cause: pool.confidence() for cause, pool in pools.items()}
    notes: list[str] = []
    for cause in confidence:
        if not _fits(cause, status):
            confidence[cause] *= STATUS_MISMATCH

    # Root causes hold the symptoms they explain below themselves.
    for root, root_conf in sorted(confidence.items(), key=lambda kv: -kv[1]):
        if root_conf < ROOT_THRESHOLD:
            continue
        for symptom in CATALOG[root].explains:
            if symptom in confidence and confidence[symptom] > root_conf * ROOT_MARGIN:
                confidence[symptom] = root_conf * ROOT_MARGIN

    causes = [_cause(cause, confidence[cause], pools[cause], status) for cause in confidence]
    causes.sort(key=lambda c: -c.confidence)

    if causes and status is not None and not _fits(causes[0].id, status):
        entry = CATALOG[causes[0].id]
        usual = "/".join(str(s) for s in entry.statuses)
        notes.append(
            f"The evidence points to {entry.id} ({entry.title.lower()}), which usually answers {usual}, "
            f"but the reported status is {status}: check that the evidence comes from the failing "
            f"requests' time window, or whether several faults overlap."
        )

    evidence_found = bool(causes)
    seen = {c.id for c in causes}
    scale = PRIOR_WITH_EVIDENCE if evidence_found else 1.0
    for cause, prior in priors_for(status):
        if cause not in seen:
            entry = CATALOG[cause]
            causes.append(
                Cause(
                    id=cause,
                    confidence=round(prior * scale, 2),
                    title=entry.title,
                    summary=f"A usual cause of {status}; no evidence for it was seen. {entry.meaning}",
                    evidence=(),
                    next_steps=entry.next_steps,
                )
            )
    if not evidence_found:
        if found:
            notes.append("The input was recognised, but nothing in it points at a cause of the catalog.")
        else:
            notes.append("No evidence was recognised in the input.")
        if status is not None:
            notes.append(f"Listing the usual suspects for {status} at low confidence.")
        else:
            notes.append("Give --status to list the usual suspects for the HTTP status.")

    causes.sort(key=lambda c: -c.confidence)
    return Diagnosis(
        status=status,
        target=target,
        findings=tuple(found),
        causes=tuple(causes[:MAX_CAUSES]),
        notes=tuple(notes),
        evidence_found=evidence_found,
    )


def _cause(cause: str, confidence: float, pool: _Pool, status: int | None) -> Cause:
    entry = CATALOG[cause]
    support = sorted(pool.support, key=lambda s: -s.weight)
    evidence: list[str] = []
    for suspicion in support:
        for line in suspicion.evidence:
            if line not in evidence and len(evidence) < MAX_EVIDENCE:
                evidence.append(line)
    said = []
    for suspicion in support:
        if suspicion.summary and suspicion.summary not in said:
            said.append(suspicion.summary)
    prefix = f"{status}: " if status is not None else ""
    summary = prefix + entry.title + (". " + "; ".join(said[:3]) if said else ".")
    kinds = tuple(dict.fromkeys(k for s in support for k in s.kinds))
    return Cause(
        id=cause,
        confidence=round(confidence, 2),
        title=entry.title,
        summary=summary,
        evidence=tuple(evidence),
        next_steps=entry.next_steps,
        supported_by=kinds,
    )


def worst(findings: Iterable[Finding]) -> Severity:
    """The highest severity among findings (ok when there are none)."""
    return max((f.severity for f in findings), key=lambda s: s.rank, default=Severity.OK)
