"""Everything a runbook module needs, in one import (DESIGN §6)."""

from __future__ import annotations

from bot.core.commands import Command, CommandResult
from bot.core.models import Finding, Severity, Signal
from bot.evidence.reader import LinePattern, PatternReader, Reader
from bot.runbook.base import NoParams, Reply, Runbook, Step, Steps
from bot.runbook.shapes import (
    ROOT,
    Alt,
    Either,
    Host,
    HostPort,
    Int,
    Name,
    Opt,
    PathArg,
    Port,
    Prefixed,
    Program,
    Repeat,
    Shape,
    Unit,
    Url,
)

__all__ = [
    "ROOT",
    "Alt",
    "Command",
    "CommandResult",
    "Either",
    "Finding",
    "Host",
    "HostPort",
    "Int",
    "LinePattern",
    "Name",
    "NoParams",
    "Opt",
    "PathArg",
    "PatternReader",
    "Port",
    "Prefixed",
    "Program",
    "Reader",
    "Repeat",
    "Reply",
    "Runbook",
    "Severity",
    "Shape",
    "Signal",
    "Step",
    "Steps",
    "Unit",
    "Url",
]
