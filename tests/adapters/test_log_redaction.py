"""No secrets in logs: records are redacted when made, for every logger and handler."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.adapters.log_redaction import (
    RedactingFilter,
    SecretValues,
    configured_secrets,
    install_log_redaction,
)
from bot.config import load_settings
from bot.core.redact import WITHHELD
from bot.testing.http_fake import FakeHttpServer
from bot.testing.secrets import found_in, register, registered
from bot.testing.telegram_api import FakeTelegram
from tests.conftest import leaks_in, well_known_test_secrets

BOT_TOKEN = "7204583149:AAHtGnkEL-JKR3v_qM8XbFpYzW2dLsNcUo0"
#: Configured values with no recognisable shape: only the exact-value mask can find them.
WEBHOOK_TOKEN = "plain-webhook-value-71c3e9"
DB_PASSWORD = "p@ss/w0rd-for-the-store"


def _record(msg: object, *args: object, exc_info: object = None) -> logging.LogRecord:
    """A record made directly (not through the record factory), as ``logging.makeLogRecord`` would."""
    return logging.LogRecord("test", logging.INFO, __file__, 1, msg, args or None, exc_info)  # type: ignore[arg-type]


def _formatted(record: logging.LogRecord) -> str:
    return logging.Formatter("%(levelname)s %(name)s: %(message)s").format(record)


def test_the_message_is_formatted_with_its_arguments_then_masked() -> None:
    record = _record("HTTP Request: %s %s", "POST", f"https://api.telegram.org/bot{BOT_TOKEN}/sendMessage")
    assert RedactingFilter().filter(record)
    assert record.getMessage() == "HTTP Request: POST https://api.telegram.org/bot***/sendMessage"


def test_a_record_with_nothing_to_mask_keeps_its_format_and_arguments() -> None:
    args = ("127.0.0.1:50522", "GET", "/healthz", "1.1", 200)
    record = _record('%s - "%s %s HTTP/%s" %d', *args)  # uvicorn's access log reads record.args
    RedactingFilter().filter(record)
    assert record.msg == '%s - "%s %s HTTP/%s" %d' and record.args == args


def test_masked_arguments_keep_the_format_when_they_still_fill_it() -> None:
    record = _record('%s - "%s %s HTTP/%s" %d', "127.0.0.1:50522", "GET", "/export?token=8c1f0f1e5c9a", "1.1", 500)
    RedactingFilter().filter(record)
    assert record.msg == '%s - "%s %s HTTP/%s" %d'
    assert record.args == ("127.0.0.1:50522", "GET", "/export?token=***", "1.1", 500)


def test_a_secret_split_between_format_and_argument_is_masked_in_the_whole_message() -> None:
    record = _record("sending Authorization: Bearer %s", "0b79bab50daca910b000d4f1a2b675d604257e42")
    RedactingFilter().filter(record)
    assert (record.msg, record.args) == ("sending Authorization: Bearer ***", None)


def test_a_message_that_does_not_fit_its_arguments_is_withheld_without_them() -> None:
    record = _record("%d pages for %s", "password=hunter2")
    RedactingFilter().filter(record)
    assert "hunter2" not in _formatted(record) and "withheld" in record.getMessage()


def test_the_traceback_is_masked_and_the_raw_exception_dropped() -> None:
    try:
        raise ConnectionError("cannot reach postgresql://shop:p%40ss%2Fw0rd-for-the-store@db:5432/shop")
    except ConnectionError:
        record = _record("store failed", exc_info=sys.exc_info())
    RedactingFilter().filter(record)
    text = _formatted(record)
    assert "ConnectionError: cannot reach postgresql://shop:***@db:5432/shop" in text
    assert "w0rd" not in text and record.exc_info is None


def test_configured_values_are_masked_exactly_and_url_encoded() -> None:
    secrets = SecretValues()
    secrets.add(WEBHOOK_TOKEN)
    secrets.add(DB_PASSWORD)
    secrets.add("x")  # too short to mask without wrecking the log: ignored
    record = _record("hook %s; store pw %s quoted %s", WEBHOOK_TOKEN, DB_PASSWORD, "p%40ss%2Fw0rd-for-the-store")
    RedactingFilter(secrets).filter(record)
    assert record.getMessage() == "hook ***; store pw *** quoted ***"
    assert len(secrets) == 4  # the token, the password and its two URL-encoded forms


def test_a_record_that_cannot_be_redacted_is_withheld() -> None:
    class Exploding(SecretValues):
        def mask(self, text: str) -> str:
            raise RuntimeError(text)

    record = _record("token %s", WEBHOOK_TOKEN)
    RedactingFilter(Exploding()).filter(record)
    assert record.getMessage() == WITHHELD


def test_the_settings_give_every_secret_and_the_database_password() -> None:
    env = {
        "INCIDENT_BOT_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
        "TELEGRAM_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": "8f742231b10e8888abcd99yyyzzz85a5",
        "DATABASE_URL": "postgresql+asyncpg://shop:p%40ss%2Fw0rd-for-the-store@db:5432/shop",
    }
    values = configured_secrets(load_settings(None, env=env))
    assert {WEBHOOK_TOKEN, BOT_TOKEN, "8f742231b10e8888abcd99yyyzzz85a5", DB_PASSWORD} <= set(values)
    assert "p%40ss%2Fw0rd-for-the-store" in values


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """Everything logged at DEBUG and above while the test runs, through a handler added after the
    redaction was installed (so only the record factory can have cleaned what it gets)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_after_install_every_logger_and_handler_gets_redacted_records(captured: io.StringIO) -> None:
    settings = load_settings(None, env={"INCIDENT_BOT_WEBHOOK_TOKEN": WEBHOOK_TOKEN})
    active = install_log_redaction(settings)
    assert install_log_redaction() is active  # idempotent: one filter, one wrapped factory
    isolated = logging.getLogger("test.log_redaction.isolated")  # its own handler, like uvicorn's loggers
    own = io.StringIO()
    isolated.addHandler(logging.StreamHandler(own))
    isolated.propagate = False
    try:
        logging.getLogger("test.log_redaction").warning("webhook refused token %s", WEBHOOK_TOKEN)
        isolated.error("GET /bot%s/getMe", BOT_TOKEN)
    finally:
        isolated.propagate = True
        isolated.handlers.clear()
    assert "webhook refused token ***" in captured.getvalue()
    assert own.getvalue() == "GET /bot***/getMe\n"
    assert WEBHOOK_TOKEN not in captured.getvalue() + own.getvalue()


def test_httpx_logs_of_a_real_telegram_request_at_debug_hold_no_token(captured: io.StringIO) -> None:
    install_log_redaction()
    fake = FakeTelegram(token=BOT_TOKEN)
    with FakeHttpServer(fake, name="fake-telegram") as server, httpx.Client() as client:
        answer = client.post(f"{server.url}/bot{BOT_TOKEN}/getMe")
    assert answer.status_code == 200 and answer.json()["ok"] is True
    log = captured.getvalue()
    assert f'HTTP Request: POST {server.url}/bot***/getMe "HTTP/1.1 200 OK"' in log
    assert "DEBUG httpcore" in log  # the run really was at DEBUG
    assert BOT_TOKEN not in log and BOT_TOKEN.split(":")[1] not in log


def test_registered_test_secrets_are_scanned_for_and_reported_without_their_value(tmp_path: Path) -> None:
    value = register("registry-probe-value-42", "the registry test")
    register("short", "too short to scan for")
    known = registered()
    assert known[value] == "the registry test" and "short" not in known
    log = tmp_path / "debug.log"
    log.write_text("x" * 20 + value + "\n", encoding="utf-8")  # the value straddles the 16-character chunks
    assert leaks_in(log, {value: "the registry test"}, chunk_size=16) == ["the registry test (regi…)"]
    assert found_in("nothing here", {value: "the registry test"}) == []


def test_the_fakes_default_tokens_and_the_tests_secret_constants_are_well_known() -> None:
    import bot.testing.slack_api  # noqa: F401 - FakeSlack(token="xoxb-fake-bot-token", ...)
    import tests.adapters.test_http  # noqa: F401 - a test module with TOKEN and API_TOKEN constants

    known = well_known_test_secrets()
    assert known["xoxb-fake-bot-token"] == "FakeSlack(token=...)"
    assert "123456789:AAFakeTelegramTokenForIncidentBotTests" in known  # named by the fake or a test using it
    assert known["s3cret-webhook-token"].startswith("tests.adapters.")  # whichever test module named it first
