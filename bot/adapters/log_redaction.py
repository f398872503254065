"""No secrets in the log: every log record is redacted before any handler sees it.

:func:`install_log_redaction` is called once at start-up (``incident-bot`` ``main()``, and ``serve``
with its settings). It wraps the logging record factory, so every record created from then on, by any
logger (ours, httpx, slack_sdk, asyncssh, uvicorn) and for any handler (including those added later,
such as uvicorn's), is cleaned when it is made; and it puts :class:`RedactingFilter` on the root
logger's handlers for records made some other way (``logging.makeLogRecord``).

Cleaning a record: the message is formatted with its arguments, then the configured secret values
(exact strings: the tokens and signing secrets of ``Settings.secrets``, the password in
``database_url``, any extra value such as a key passphrase) are replaced by ``***``, then
:func:`bot.core.redact.redact` masks every secret shape it knows (so httpx's
``POST https://api.telegram.org/bot<TOKEN>/sendMessage`` comes out as ``bot***``). The traceback of
``exc_info`` and ``stack_info`` get the same treatment, and ``exc_info`` is dropped once its text is
kept, so no handler can render the raw exception again. A message that cannot be formatted, or
redacted, is replaced by a line that says so without the text.

Known gap: attributes given through ``extra=`` are set on the record after it is made and are not
cleaned; the bot's formatters do not print them.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from bot.core.redact import MASK, WITHHELD, redact, redact_or_withhold

if TYPE_CHECKING:
    from bot.config import Settings

#: Configured values shorter than this are not masked as exact strings: a one-letter test secret
#: would turn every such letter of the log into ``***``. (Real tokens are far longer.)
MIN_SECRET_LENGTH = 6

_MARK = "_incident_bot_redacted"


class SecretValues:
    """The exact secret strings to mask, longest first; safe to add to while other threads log."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()

    def add(self, value: str | None) -> None:
        """Remember ``value`` (and its URL-encoded form); ``None``, ``***`` and short values are ignored."""
        if not value or len(value) < MIN_SECRET_LENGTH or value == MASK:
            return
        forms = {value, quote(value, safe=""), quote(value, safe="/:")}
        with self._lock:
            self._values = tuple(sorted(set(self._values) | forms, key=len, reverse=True))

    def mask(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, MASK)
        return text

    def __len__(self) -> int:
        return len(self._values)


def _format_exception(exc_info: Any) -> str:
    return "".join(traceback.format_exception(*exc_info)).rstrip("\n")


class RedactingFilter(logging.Filter):
    """Cleans each record it sees (once: a record is marked when done) and lets it through."""

    def __init__(self, secrets: SecretValues | None = None) -> None:
        super().__init__()
        self.secrets = secrets if secrets is not None else SecretValues()

    def clean(self, text: str) -> str:
        """``text`` without the configured values and secret shapes, or :data:`WITHHELD` if that fails."""
        return redact_or_withhold(text, self._redact)

    def _redact(self, text: str) -> str:
        return redact(self.secrets.mask(text))

    def scrub(self, record: logging.LogRecord) -> None:
        """Rewrite ``record`` in place: message, arguments, traceback and stack all cleaned.

        A record with nothing to mask keeps its ``msg`` and ``args`` (formatters that read ``args``,
        such as uvicorn's access log, keep working); one with a secret keeps them only when the masked
        arguments still fill the format to the masked message, else it gets that message and no
        arguments.
        """
        if getattr(record, _MARK, False):
            return
        setattr(record, _MARK, True)
        try:
            self._scrub(record)
        except Exception:  # a log call must never raise, nor let the unredacted record through
            record.msg, record.args, record.exc_info, record.exc_text = WITHHELD, None, None, None
            record.stack_info = None

    def _scrub(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging would print the raw arguments, we do not
            record.msg, record.args = f"[log message from {record.name} withheld: it does not fit its arguments]", None
        else:
            cleaned = self.clean(message)
            if cleaned != message:
                record.msg, record.args = self._masked_form(record, cleaned)
        if record.exc_info and not record.exc_text:
            try:
                record.exc_text = _format_exception(record.exc_info)
            except Exception:
                record.exc_text = WITHHELD
        if record.exc_text:
            cleaned = self.clean(record.exc_text)
            if cleaned != record.exc_text:
                record.exc_text, record.exc_info = cleaned, None  # no handler may render the raw one again
        if record.stack_info:
            record.stack_info = self.clean(record.stack_info)

    def _masked_form(self, record: logging.LogRecord, cleaned: str) -> tuple[object, Any]:
        if isinstance(record.msg, str) and isinstance(record.args, tuple) and record.args:
            fmt = self.clean(record.msg)
            args = tuple(a if isinstance(a, int | float) else self.clean(str(a)) for a in record.args)
            try:
                if fmt % args == cleaned:
                    return fmt, args
            except (TypeError, ValueError):
                pass
        return cleaned, None

    def filter(self, record: logging.LogRecord) -> bool:
        self.scrub(record)
        return True


#: The one filter of this process, once installed (under the lock).
_INSTALLED: dict[str, RedactingFilter] = {}
_INSTALL_LOCK = threading.Lock()


def configured_secrets(settings: Settings) -> list[str]:
    """The secret values ``settings`` holds: every ``Settings.secrets`` field and the password of
    ``database_url`` (as written and URL-decoded)."""
    secrets = settings.secrets
    values = [
        secret.get_secret_value()
        for name in type(secrets).model_fields
        if (secret := getattr(secrets, name)) is not None
    ]
    password = urlsplit(settings.database_url).password if "://" in settings.database_url else None
    if password:
        values.extend({password, unquote(password)})
    return values


def install_log_redaction(settings: Settings | None = None, *, extra: Iterable[str] = ()) -> RedactingFilter:
    """Make every log record redacted from now on; idempotent, each call adds secrets to mask.

    The first call wraps the log record factory; every call puts the filter on root handlers that do
    not have it yet and remembers the secret values of ``settings`` and ``extra`` (a key passphrase,
    say) as exact strings to mask. Returns the one filter.
    """
    with _INSTALL_LOCK:
        active = _INSTALLED.get("filter")
        if active is None:
            active = _INSTALLED["filter"] = RedactingFilter()
            _wrap_record_factory(active)
    for value in (*(configured_secrets(settings) if settings is not None else ()), *extra):
        active.secrets.add(value)
    for handler in logging.getLogger().handlers:
        if active not in handler.filters:
            handler.addFilter(active)
    return active


def _wrap_record_factory(active: RedactingFilter) -> None:
    made: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = made(*args, **kwargs)
        active.scrub(record)
        return record

    logging.setLogRecordFactory(factory)
