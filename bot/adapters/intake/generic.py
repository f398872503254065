"""The generic alert (DESIGN §4.4) → Alerts.

``{"id", "state": "firing"|"resolved", "status": 502, "url", "service", "host", "summary"}``, plus the
optional ``labels`` (``{name: text}``), ``starts_at`` and ``ends_at`` (RFC 3339). The body is one such
object, a list of them, or ``{"alerts": [...]}``. ``state`` is required; ``status`` is an HTTP status
(100..599, a number or a numeric string) or null; ``url`` must be an http(s) URL. Without an ``id`` the
alert is keyed by a hash of its labels, service, URL and host.
"""

from __future__ import annotations

from bot.adapters.intake import _common as c
from bot.core.models import Alert

SOURCE = "generic"


def parse(body: object) -> list[Alert]:
    """The alert(s) of a generic webhook body; PayloadError names a bad field."""
    if isinstance(body, list):
        return [_alert(item, c.path("", index)) for index, item in enumerate(body)]
    payload = c.expect_object(body, "")
    if "alerts" in payload and "state" not in payload:
        items = c.expect_list(payload["alerts"], "alerts")
        return [_alert(item, c.path("alerts", index)) for index, item in enumerate(items)]
    return [_alert(payload, "")]


def _alert(item: object, where: str) -> Alert:
    entry = c.expect_object(item, where)
    if "state" not in entry:
        raise c.PayloadError(c.path(where, "state"), 'missing: expected "firing" or "resolved"')
    state = c.state(entry["state"], c.path(where, "state"))
    status = _status(entry.get("status"), c.path(where, "status"))
    raw_url = c.opt_str(entry, "url", where)
    url = c.site_url(raw_url)
    if raw_url is not None and raw_url.strip() and url is None:
        raise c.PayloadError(c.path(where, "url"), f"expected an http(s) URL with a host, got {c.shown(raw_url)}")
    labels = c.str_map(entry, "labels", where)
    service = (c.opt_str(entry, "service", where) or "").strip() or c.first(labels, c.SERVICE_KEYS)
    host = (c.opt_str(entry, "host", where) or "").strip() or c.host_from(labels, url)
    summary = (c.opt_str(entry, "summary", where) or "").strip()
    ident = c.opt_id(entry, "id", where)
    return Alert(
        source=SOURCE,
        fingerprint=ident or c.fingerprint(SOURCE, labels, service, url, host),
        state=state,
        status=status if status is not None else c.status_from(labels, {}, summary),
        url=url,
        service=service,
        host=host,
        summary=summary,
        labels=labels,
        starts_at=c.timestamp(entry, "starts_at", where),
        ends_at=c.timestamp(entry, "ends_at", where),
    )


def _status(value: object, where: str) -> int | None:
    if value is None:
        return None
    code = c.coerce_status(value)
    if code is None:
        raise c.PayloadError(where, f"expected an HTTP status between 100 and 599, got {c.shown(value)}")
    return code
