"""Fail safe: chat-bound text that cannot be redacted is withheld, never posted raw."""

from __future__ import annotations

import logging

import pytest

from bot.core.blocks import Code, Context, Fields, Header, Section, cause_blocks, diagnosis_blocks, redacted
from bot.core.cards import quoted_evidence
from bot.core.models import Cause, Diagnosis, Finding, Severity
from bot.core.redact import WITHHELD, leaks, redact_or_withhold

TOKEN = "xoxb-1234567890123-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
#: A private key whose armour has two spaces: the PEM rule does not recognise it, the post-check does.
ODD_KEY = "-----BEGIN  PRIVATE KEY----- MC4CAQAwBQYDK2VwBCIEIJdvv11vnmxzg6GMhF52ryrnRmo6rihJ+9MrdAafxgVp"


def _broken(text: str) -> str:
    raise RuntimeError(f"boom on {text}")


def test_text_is_withheld_when_redaction_raises_and_the_log_does_not_quote_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="bot.core.redact"):
        assert redact_or_withhold(f"token={TOKEN}", _broken) == WITHHELD
    assert "RuntimeError" in caplog.text and "withheld" in caplog.text
    assert TOKEN not in caplog.text and "boom" not in caplog.text


def test_text_is_withheld_when_a_secret_shape_survives_the_redactor(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="bot.core.redact"):
        assert redact_or_withhold(f"posting with {TOKEN}", lambda text: text) == WITHHELD
    assert "slack-token" in caplog.text
    assert TOKEN not in caplog.text


def test_a_key_armour_the_rules_miss_is_caught_by_the_post_check() -> None:
    assert leaks(ODD_KEY) == ["private key"]
    assert redact_or_withhold(ODD_KEY) == WITHHELD


def test_text_with_nothing_secret_passes_unchanged() -> None:
    line = "2026/11/30 03:25:13 [error] 4942#4942: *1 connect() failed (111: Connection refused) while connecting"
    assert redact_or_withhold(line) == line


def test_text_with_a_secret_is_redacted_not_withheld() -> None:
    assert redact_or_withhold(f"Authorization: Bearer {TOKEN}") == "Authorization: Bearer ***"


def _finding(*evidence: str) -> Finding:
    return Finding(kind="app.exception", severity=Severity.CRITICAL, summary="app failed", evidence=evidence)


def test_quoted_evidence_in_thread_posts_is_redacted_and_withheld_line_by_line() -> None:
    quoted = quoted_evidence([_finding(f"GET /export?token={TOKEN}&page=2", ODD_KEY)])
    assert quoted == ["GET /export?token=***&page=2", WITHHELD]


def test_the_cause_card_redacts_its_summary_and_evidence() -> None:
    cause = Cause(
        id="app_exception",
        confidence=0.9,
        title="The application raised an error",
        summary=f"worker crashed with {TOKEN}",
        evidence=("psycopg.OperationalError: postgresql://shop:Sup3rS3cret@db:5432/shop refused", ODD_KEY),
    )
    blocks = cause_blocks(cause)
    assert blocks[1] == Section("worker crashed with ***\nConfidence 90% (app_exception)")
    assert Code(("psycopg.OperationalError: postgresql://shop:***@db:5432/shop refused", WITHHELD)) in blocks


def test_explain_replies_redact_findings_and_notes() -> None:
    diagnosis = Diagnosis(
        status=500,
        findings=(_finding("x"),),
        causes=(),
        notes=(f"could not read /srv/.env: PGPASSWORD=Sup3rS3cret {TOKEN}",),
    )
    blocks = diagnosis_blocks(diagnosis)
    assert Context("could not read /srv/.env: PGPASSWORD=*** ***") in blocks


def test_redacted_blocks_mask_every_text_and_keep_the_rest() -> None:
    blocks = redacted(
        [
            Header(f"deploy {TOKEN}"),
            Fields((("URL", "https://shop.example.com/healthz?token=abc123def456"), ("State", "triggered"))),
            Code((ODD_KEY, "plain line")),
        ]
    )
    assert blocks == [
        Header("deploy ***"),
        Fields((("URL", "https://shop.example.com/healthz?token=***"), ("State", "triggered"))),
        Code((WITHHELD, "plain line")),
    ]
