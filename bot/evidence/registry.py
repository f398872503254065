"""Finds the evidence readers: the built-in modules of ``bot.evidence.readers`` and plugins.

Each built-in module exposes ``READERS``, a tuple of :class:`~bot.evidence.reader.Reader` classes.
Third-party packages add readers through the ``incident_bot.readers`` entry point group (an entry point
names a Reader class). A reader that fails to load or breaks the contract is reported in
:attr:`Registry.broken` and left out; it never stops the others.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points

import re2

from bot.core.models import Signal
from bot.evidence import readers as builtin_package
from bot.evidence.reader import Reader

ENTRY_POINT_GROUP = "incident_bot.readers"


@dataclass
class Registry:
    readers: list[type[Reader]] = field(default_factory=list)
    broken: dict[str, str] = field(default_factory=dict)

    def instances(self) -> list[Reader]:
        return [cls() for cls in self.readers]

    def signals(self) -> dict[str, Signal]:
        """Finding kind → the cause it suggests, across every reader."""
        out: dict[str, Signal] = {}
        for cls in self.readers:
            out.update(cls.signals)
        return out


def validate(cls: object) -> str | None:
    """Why ``cls`` is not a usable reader, or None when it is."""
    if not (isinstance(cls, type) and issubclass(cls, Reader)):
        return "not a Reader subclass"
    if not getattr(cls, "name", None) or not getattr(cls, "title", None):
        return "missing name or title"
    if not cls.triggers and not cls.header:
        return "declares neither triggers nor a header"
    for trigger in cls.triggers:
        try:
            re.compile(trigger)
            re2.compile(trigger.encode())
        except Exception as exc:  # both libraries raise their own error types
            return f"trigger {trigger!r} does not compile: {exc}"
    signals: Mapping[str, object] = cls.signals
    for kind, signal in signals.items():
        if not isinstance(signal, Signal):
            return f"signal for {kind!r} is not a Signal"
    return None


def load() -> Registry:
    """Every built-in and plugin reader, with the broken ones set aside."""
    registry = Registry()
    candidates: list[tuple[str, object]] = []
    for info in sorted(pkgutil.iter_modules(builtin_package.__path__), key=lambda m: m.name):
        module_name = f"{builtin_package.__name__}.{info.name}"
        try:
            module = importlib.import_module(module_name)
        except Exception as exc:  # a broken module must not take the others down
            registry.broken[module_name] = f"import failed: {type(exc).__name__}: {exc}"
            continue
        for cls in getattr(module, "READERS", ()):
            candidates.append((f"{module_name}:{getattr(cls, '__name__', cls)}", cls))
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            candidates.append((f"{ep.name} ({ep.value})", ep.load()))
        except Exception as exc:
            registry.broken[f"{ep.name} ({ep.value})"] = f"import failed: {type(exc).__name__}: {exc}"
    seen: set[str] = set()
    for label, cls in candidates:
        problem = validate(cls)
        if problem is None and isinstance(cls, type) and issubclass(cls, Reader):
            if cls.name in seen:
                registry.broken[label] = f"duplicate reader name {cls.name!r}"
                continue
            seen.add(cls.name)
            registry.readers.append(cls)
        else:
            registry.broken[label] = problem or "invalid"
    return registry
