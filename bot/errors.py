"""The one exception tree of incident-bot.

Every error we raise on purpose is a :class:`BotError`. Each carries a stable ``code`` (used in logs,
JSON error bodies and chat reference ids), the fields that explain it, and :meth:`BotError.user_message`,
a one-line message that is safe to show a person: it never includes a traceback, a secret or the
text of a library exception.

::

    BotError
    ├── UsageError                 bad input from a person or a script (CLI exit 2, HTTP 4xx)
    │   ├── InvalidStatus          an HTTP status that is not an error status
    │   ├── EvidenceUnreadable     a file given to ``explain`` cannot be read
    │   └── PayloadError           an alert webhook body that cannot be read (HTTP 400 naming the field)
    ├── ConfigError                the configuration file or environment is invalid
    ├── PluginError                a runbook or reader plugin is broken (reported, never fatal to others)
    └── RemoteError                something went wrong on or on the way to a host
        ├── HostUnreachable
        ├── AuthenticationFailed
        ├── HostKeyMismatch
        └── CommandTimeout
    ChatError                      a chat platform did not take a message (the outbox decides what next)
    ├── RateLimited                429: try again after ``retry_after`` seconds
    ├── TransientChatError         5xx, network error, timeout: retry with backoff
    └── ChatRejected               the platform refuses the message for good (bad channel, too large)

Adapters translate library exceptions into these at the border (``raise ... from exc``).
"""

from __future__ import annotations

from typing import ClassVar


class BotError(Exception):
    """Base of every error incident-bot raises on purpose."""

    code: ClassVar[str] = "error"
    exit_code: ClassVar[int] = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def user_message(self) -> str:
        """One line that is safe to show to a person (terminal, chat, HTTP body)."""
        return self.message.splitlines()[0] if self.message else self.code


class UsageError(BotError):
    """The person or script asked for something invalid; nothing was done."""

    code = "usage"
    exit_code = 2


class InvalidStatus(UsageError):
    """An HTTP status code that is not a number between 400 and 599."""

    code = "invalid_status"

    def __init__(self, value: str) -> None:
        super().__init__(f"invalid HTTP status {value!r}: expected an error status between 400 and 599")
        self.value = value


class EvidenceUnreadable(UsageError):
    """A file handed to ``explain`` does not exist or cannot be read."""

    code = "evidence_unreadable"

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot read {path}: {reason}")
        self.path = path
        self.reason = reason


class PayloadError(UsageError):
    """An alert webhook body is invalid; ``field`` is the JSON path of the bad value (``alerts[2].status``)."""

    code = "invalid_payload"

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"invalid payload: {field}: {problem}")
        self.field = field
        self.problem = problem


class ConfigError(BotError):
    """The configuration is invalid; ``field`` names the setting."""

    code = "config"
    exit_code = 2

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"configuration: {field}: {problem}")
        self.field = field
        self.problem = problem


class PluginError(BotError):
    """A reader or runbook plugin could not be loaded or broke its contract."""

    code = "plugin"

    def __init__(self, plugin: str, problem: str) -> None:
        super().__init__(f"plugin {plugin}: {problem}")
        self.plugin = plugin
        self.problem = problem


class RemoteError(BotError):
    """Base of the errors met while reaching or running commands on a host."""

    code = "remote"

    def __init__(self, host: str, detail: str) -> None:
        super().__init__(f"{host}: {detail}")
        self.host = host
        self.detail = detail


class HostUnreachable(RemoteError):
    code = "host_unreachable"


class AuthenticationFailed(RemoteError):
    code = "auth_failed"


class HostKeyMismatch(RemoteError):
    code = "host_key_mismatch"


class CommandTimeout(RemoteError):
    code = "command_timeout"


class ChatError(BotError):
    """Base of the errors a chat sender raises; ``target`` names the chat (channel, chat id, console)."""

    code = "chat"

    def __init__(self, detail: str, *, target: str = "") -> None:
        super().__init__(f"chat {target}: {detail}" if target else f"chat: {detail}")
        self.target = target
        self.detail = detail


class RateLimited(ChatError):
    """The platform asked us to slow down (HTTP 429): nothing may go to ``target`` for ``retry_after`` s."""

    code = "chat_rate_limited"

    def __init__(self, retry_after: float, *, target: str = "", detail: str = "rate limited") -> None:
        super().__init__(f"{detail} (retry after {retry_after:g}s)", target=target)
        self.retry_after = max(0.0, float(retry_after))


class TransientChatError(ChatError):
    """A failure worth retrying later: a 5xx, a network error, a timeout."""

    code = "chat_transient"


class ChatRejected(ChatError):
    """The platform refuses the message for good (unknown channel, no permission, invalid payload)."""

    code = "chat_rejected"
