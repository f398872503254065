"""Helpers we ship for testing our own code and plugins: read evidence text without files or I/O.

``read`` runs the scanner over text with the registered readers (or only the ones given) and returns
the findings; ``explain`` runs the whole explain pipeline on text. Runbook fakes join this module
with the runbook contract.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.core.models import Diagnosis, Finding
from bot.diagnosis.engine import diagnose
from bot.evidence.reader import Reader
from bot.evidence.registry import load
from bot.evidence.scanner import Scanner


def read(text: str, readers: Sequence[type[Reader]] | None = None) -> list[Finding]:
    """Findings from ``text`` as explain would see them (every registered reader unless given)."""
    classes = list(readers) if readers is not None else load().readers
    scanner = Scanner([cls() for cls in classes])
    scanner.scan_text(text)
    return scanner.findings()


def kinds(text: str, readers: Sequence[type[Reader]] | None = None) -> set[str]:
    """The finding kinds recognised in ``text``."""
    return {finding.kind for finding in read(text, readers)}


def explain(text: str, status: int | None = None) -> Diagnosis:
    """The full explain pipeline over ``text``: every reader, every rule."""
    registry = load()
    scanner = Scanner(registry.instances())
    scanner.scan_text(text)
    return diagnose(scanner.findings(), status, registry.signals())
