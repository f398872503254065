"""Fixtures shared across the test tree (request them by name, or with ``pytest.mark.usefixtures``)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def audit_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit log (under ``$XDG_STATE_HOME``) goes to this test's own temporary directory."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
