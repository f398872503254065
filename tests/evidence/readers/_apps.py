"""Shared helper of the application-server reader tests: the captured fixtures."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "apps"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")
