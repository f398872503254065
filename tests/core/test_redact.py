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
    "401: Bearer token missing or expired; Basic authentication is disabled",
    "headers: {'Authorization': '(redacted)', 'Accept': 'application/json'}",
    "webhook_configs: [{url: http://bot:8080/alerts/alertmanager, http_config: {authorization: <secret>}}]",
    "password_reset=1 tokenizer=ws key_count=3 monkey=2 dedup_key=incident-42 public_key=ssh-ed25519",
]


@pytest.mark.parametrize("line", NEAR_MISSES)
def test_ordinary_log_text_is_left_alone(line: str) -> None:
    assert redact(line) == line


def test_private_key_block_is_masked() -> None:
    text = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----"
    assert "b3BlbnNzaC1rZXk" not in redact(text)


def test_a_secret_word_that_opens_a_yaml_mapping_is_not_a_value() -> None:
    text = "database:\n  password:\n    from_file: /run/secrets/db\nauthorization:\n  type: Bearer"
    assert redact(text) == text


def test_a_quoted_value_keeps_its_quotes_and_an_unclosed_one_is_masked_to_the_end_of_the_line() -> None:
    assert redact('{"password": "correct horse battery staple", "user": "bob"}') == '{"password": "***", "user": "bob"}'
    assert redact('"password": "correct horse battery\nnext') == '"password": "***\nnext'


def test_configured_secret_shapes_in_urls_and_headers_keep_the_rest_of_the_line() -> None:
    assert redact("GET https://api.telegram.org/bot123456789:AAFakeTelegramTokenForIncidentBotTests/getMe") == (
        "GET https://api.telegram.org/bot***/getMe"
    )
    assert (
        redact("curl -H 'Authorization: Bearer abc.def.ghi' https://x/")
        == "curl -H 'Authorization: Bearer ***' https://x/"
    )
