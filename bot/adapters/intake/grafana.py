"""Grafana unified alerting webhook → Alerts.

The body is Alertmanager's webhook shape plus Grafana's fields (``version: "1"``, ``orgId``,
``title``, ``state``, ``message``; per alert ``values``, ``valueString``, ``silenceURL``,
``dashboardURL``, ``panelURL``, ``imageURL``). One Alert per entry of ``alerts``, keyed by Grafana's
``fingerprint``. The HTTP status comes from labels and annotations first, then from the query
``values`` (when exactly one is a whole number in 100..599, e.g. ``probe_http_status_code``), then from
``valueString``, then from the text of a one-alert notification's ``title``/``message``.
"""

from __future__ import annotations

from bot.adapters.intake import _common as c
from bot.adapters.intake.alertmanager import parse_group
from bot.core.models import Alert

SOURCE = "grafana"


def parse(body: object) -> list[Alert]:
    """Every alert of a Grafana webhook notification, normalised; PayloadError names a bad field."""
    return parse_group(body, SOURCE, _extras)


def _extras(payload: dict[str, object], entry: dict[str, object], where: str) -> tuple[int | None, str | None]:
    values = c.opt_object(entry, "values", where)
    if values is not None:
        for key, value in values.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise c.PayloadError(c.path(c.path(where, "values"), key), f"expected a number, got {c.shown(value)}")
    value_string = c.opt_str(entry, "valueString", where)
    title = c.opt_str(payload, "title", "")
    message = c.opt_str(payload, "message", "")
    status = c.status_in_values(values.values()) if values else None
    if status is None:
        status = c.status_in_value_string(value_string)
    alerts = payload.get("alerts")
    single = isinstance(alerts, list) and len(alerts) == 1
    if status is None and single:
        status = c.status_in_text(title) or c.status_in_text(message)
    summary = (title or "").strip() if single else None
    return status, summary or None
