"""Alert intake: each source's webhook body (decoded JSON) → normalised :class:`~bot.core.models.Alert` s.

Pure functions, no web framework and no I/O: the HTTP adapter decodes the body, looks the source up in
:data:`SOURCES` and turns a :class:`~bot.errors.PayloadError` into a 400 naming ``error.field``.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.adapters.intake import alertmanager, generic, grafana, uptime_kuma
from bot.core.models import Alert
from bot.errors import PayloadError

Parser = Callable[[object], list[Alert]]

SOURCES: dict[str, Parser] = {
    "alertmanager": alertmanager.parse,
    "grafana": grafana.parse,
    "uptime-kuma": uptime_kuma.parse,
    "generic": generic.parse,
}

__all__ = ["SOURCES", "Parser", "PayloadError"]
