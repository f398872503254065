"""Everything a runbook module needs, in one import (DESIGN §6)."""

from __future__ import annotations

from bot.core.commands import Command, CommandResult
from bot.core.models import Finding, Severity, Signal
from bot.evidence.reader import LinePattern, PatternReader, Reader
from bot.runbook.base import NoParams, Reply, Runbook, Step, Steps

__all__ = [
    "Command",
    "CommandResult",
    "Finding",
    "LinePattern",
    "NoParams",
    "PatternReader",
    "Reader",
    "Reply",
    "Runbook",
    "Severity",
    "Signal",
    "Step",
    "Steps",
]
