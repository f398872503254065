"""Redaction keeps the shape of a line and masks only the secret."""

from __future__ import annotations

import pytest

from bot.core.redact import redact

CASES = [
    ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc", "Authorization: Bearer ***"),
    ("Cookie: sessionid=abc123; csrftoken=x", "Cookie: ***"),
    ("postgresql://app:s3cret@db:5432/shop", "postgresql://app:***@db:5432/shop"),
    ("GET /api?token=abcdef&page=2 HTTP/1.1", "GET /api?token=***&page=2 HTTP/1.1"),
    ("DB_PASSWORD=hunter2", "DB_PASSWORD=***"),
    ("slack xoxb-1234567890-abcdefghij", "slack ***"),
    ("aws AKIAIOSFODNN7EXAMPLE here", "aws *** here"),
]


@pytest.mark.parametrize(("raw", "masked"), CASES)
def test_secret_is_masked(raw: str, masked: str) -> None:
    assert redact(raw) == masked


NEAR_MISSES = [
    'connect() failed (111: Connection refused) while connecting to upstream, upstream: "http://127.0.0.1:8000/"',
    "Main PID: 1234 (code=killed, signal=KILL)",
    "keyboard interrupt at 12:00:01",
    "tokens per second: 42",
]


@pytest.mark.parametrize("line", NEAR_MISSES)
def test_ordinary_log_text_is_left_alone(line: str) -> None:
    assert redact(line) == line


def test_private_key_block_is_masked() -> None:
    text = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----"
    assert "b3BlbnNzaC1rZXk" not in redact(text)
