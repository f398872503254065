"""Finds runbooks: built-ins and third-party ones come through the same entry point group.

``incident_bot.runbooks`` entry points name Runbook classes; the built-ins are declared in our own
pyproject.toml. Each is validated at load time; a broken one is reported in ``Catalog.broken``
(``incident-bot runbooks list``) and never stops the others.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from pydantic import BaseModel

from bot.evidence.registry import validate as validate_reader
from bot.runbook.base import Runbook
from bot.runbook.shapes import Shape

ENTRY_POINT_GROUP = "incident_bot.runbooks"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass
class Catalog:
    runbooks: dict[str, type[Runbook]] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)

    def select(self, status: int | None, roles: tuple[str, ...], names: tuple[str, ...] = ()) -> list[type[Runbook]]:
        """The runbooks to run on a host: those named, else every read-only one that applies."""
        if names:
            return [self.runbooks[n] for n in names if n in self.runbooks]
        return [rb for rb in self.runbooks.values() if not rb.mutating and rb.applies_to(status, roles)]


def validate(cls: object) -> str | None:
    """Why ``cls`` is not a usable runbook, or None."""
    if not (isinstance(cls, type) and issubclass(cls, Runbook)):
        return "not a Runbook subclass"
    if not isinstance(getattr(cls, "name", None), str) or not _NAME.match(cls.name):
        return "name must be lower_snake_case"
    if not getattr(cls, "title", None):
        return "missing title"
    if getattr(cls.steps, "__isabstractmethod__", False):
        return "does not implement steps()"
    params: object = cls.Params
    if not (isinstance(params, type) and issubclass(params, BaseModel)):
        return "Params must be a pydantic model"
    bad = [s for s in cls.statuses if not (isinstance(s, int) and 100 <= s <= 599)]
    if bad:
        return f"invalid statuses {bad!r}"
    if not isinstance(cls.shapes, tuple) or not all(isinstance(s, Shape) for s in cls.shapes):
        return "shapes must be a tuple of Shape"
    for reader in cls.readers:
        problem = validate_reader(reader)
        if problem:
            return f"reader {getattr(reader, '__name__', reader)}: {problem}"
    return None


def load() -> Catalog:
    catalog = Catalog()
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        label = f"{ep.name} ({ep.value})"
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not take the others down
            catalog.broken[label] = f"import failed: {type(exc).__name__}: {exc}"
            continue
        problem = validate(cls)
        if problem is not None:
            catalog.broken[label] = problem
        elif cls.name in catalog.runbooks:
            catalog.broken[label] = f"duplicate runbook name {cls.name!r}"
        else:
            catalog.runbooks[cls.name] = cls
    return catalog
