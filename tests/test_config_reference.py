"""The configuration reference in the README is the one generated from the settings model, so it cannot
drift; `incident-bot config reference` prints it; every setting of the model has a row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bot.config import Settings
from bot.config_reference import in_readme, reference

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_carries_exactly_the_generated_reference() -> None:
    shown = in_readme(README.read_text())
    assert shown is not None, "README.md lacks the config-reference markers"
    assert shown == reference(), "README's configuration reference is stale: paste `incident-bot config reference`"


def test_every_setting_has_a_row_and_the_secrets_are_named() -> None:
    text = reference()
    for name, info in Settings.model_fields.items():
        if not info.exclude:
            assert f"| `{name}` |" in text
    for row in ("`ssh.deadline`", "`services.*.chat.slack_channel`", "`telegram.allow.operate.users`"):
        assert row in text
    assert "`SLACK_SIGNING_SECRET`" in text and "`TELEGRAM_WEBHOOK_SECRET`" in text and "`SLACK_CHANNEL`" in text


def test_the_command_prints_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot", "config", "reference"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and done.stdout == reference()
