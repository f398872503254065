"""Reader discovery: built-ins and entry-point plugins load; broken ones are reported, never fatal."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import ClassVar

import pytest

from bot.core.models import Finding, Signal
from bot.diagnosis.catalog import CATALOG
from bot.evidence.reader import Reader
from bot.evidence.registry import ENTRY_POINT_GROUP, load, validate


class NoTriggers(Reader):
    name = "t.none"
    title = "none"

    def feed(self, line: str) -> bool:
        return False

    def findings(self) -> list[Finding]:
        return []


class BadTrigger(NoTriggers):
    name = "t.bad"
    triggers: ClassVar[tuple[str, ...]] = (r"(?<=look)behind",)


def test_every_builtin_reader_loads_and_is_valid() -> None:
    registry = load()
    assert not registry.broken, registry.broken
    assert registry.readers
    names = [cls.name for cls in registry.readers]
    assert len(names) == len(set(names))


def test_every_builtin_signal_points_at_a_catalog_cause() -> None:
    for kind, signal in load().signals().items():
        assert signal.cause in CATALOG, kind


def test_a_reader_without_triggers_or_header_is_invalid() -> None:
    assert validate(NoTriggers) == "declares neither triggers nor a header"


def test_a_trigger_re2_cannot_compile_is_reported() -> None:
    problem = validate(BadTrigger)
    assert problem is not None and "does not compile" in problem


def test_not_a_reader_is_invalid() -> None:
    assert validate(object) == "not a Reader subclass"


@pytest.fixture
def plugin_dist(tmp_path: Path) -> Path:
    """A real installed distribution on sys.path declaring one good and two broken reader entry points."""
    (tmp_path / "goodplugin.py").write_text(
        "from typing import ClassVar\n"
        "from bot.core.models import Finding, Severity, Signal\n"
        "from bot.evidence.reader import Reader\n"
        "class Teapot(Reader):\n"
        "    name = 'plugin.teapot'\n"
        "    title = 'teapot log'\n"
        "    triggers: ClassVar[tuple[str, ...]] = (r'I am a teapot',)\n"
        "    signals: ClassVar[dict[str, Signal]] = {'plugin.teapot': Signal(cause='app_exception', weight=0.7)}\n"
        "    def __init__(self) -> None:\n"
        "        self.lines: list[str] = []\n"
        "    def feed(self, line: str) -> bool:\n"
        "        self.lines.append(line)\n"
        "        return False\n"
        "    def findings(self) -> list[Finding]:\n"
        "        return [Finding(kind='plugin.teapot', severity=Severity.CRITICAL, summary='teapot',\n"
        "                        evidence=tuple(self.lines))] if self.lines else []\n"
    )
    dist = tmp_path / "goodplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: goodplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nteapot = goodplugin:Teapot\nmissing = goodplugin:Nope\nbroken = nosuchmodule:X\n"
    )
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    sys.modules.pop("goodplugin", None)


def test_plugins_are_found_through_the_entry_point_group_and_broken_ones_reported(plugin_dist: Path) -> None:
    from bot.testing import explain

    registry = load()
    assert "plugin.teapot" in [cls.name for cls in registry.readers]
    broken = " ".join(registry.broken)
    assert "missing" in broken and "broken" in broken
    assert registry.signals()["plugin.teapot"] == Signal(cause="app_exception", weight=0.7)
    diagnosis = explain("x\nI am a teapot\n", 500)
    assert diagnosis.top is not None and diagnosis.top.id == "app_exception"
    assert diagnosis.top.evidence == ("I am a teapot",)
