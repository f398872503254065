"""Uptime Kuma webhook → Alerts.

Body (preset ``json``): ``{"heartbeat": {...} | null, "monitor": {...} | null, "msg": "<text>"}``
(louislam/uptime-kuma ``server/notification-providers/webhook.js``). The ``form-data`` preset sends the
same JSON as a string in one field ``data``; a body ``{"data": "<json>"}`` is unwrapped.

- The Test button sends ``heartbeat: null, monitor: null, msg: "<name> Testing"``: a valid test → no alert.
- ``heartbeat.status``: 0 DOWN → firing, 1 UP → resolved; 2 PENDING (retrying, not down yet) and
  3 MAINTENANCE (deliberate) are neither an outage nor a recovery → no alert.
- The alert is keyed by the monitor id (one monitor, one alert). ``heartbeat.time`` is UTC without a
  zone suffix (``2022-01-21 14:06:38.123``); it is when the outage started (DOWN) or ended (UP).
- The HTTP status is usually only in text: ``"Request failed with status code 502"`` (axios error) or
  ``"502 - Bad Gateway"``.
- ``monitor.url`` is the site (non-HTTP monitors carry the placeholder ``"https://"``: ignored);
  monitor tags (``{name, value}``) become labels, and a ``service`` tag names the service.
"""

from __future__ import annotations

import json

from bot.adapters.intake import _common as c
from bot.core.models import Alert

SOURCE = "uptime-kuma"
DOWN, UP, PENDING, MAINTENANCE = 0, 1, 2, 3


def parse(body: object) -> list[Alert]:
    """The alert of an Uptime Kuma notification ([] for a test or a non-outage beat); PayloadError on bad input."""
    payload = _unwrap(c.expect_object(body, ""))
    msg = c.opt_str(payload, "msg", "")
    heartbeat = c.opt_object(payload, "heartbeat", "")
    monitor = c.opt_object(payload, "monitor", "")
    if heartbeat is None:
        return []
    if "status" not in heartbeat:
        raise c.PayloadError("heartbeat.status", "missing: expected 0 (down) or 1 (up)")
    beat = heartbeat["status"]
    if isinstance(beat, bool) or beat not in (DOWN, UP, PENDING, MAINTENANCE):
        raise c.PayloadError("heartbeat.status", f"expected 0, 1, 2 or 3, got {c.shown(beat)}")
    if beat in (PENDING, MAINTENANCE):
        return []
    state: c.State = "firing" if beat == DOWN else "resolved"
    beat_msg = c.opt_str(heartbeat, "msg", "heartbeat")
    at = c.timestamp(heartbeat, "time", "heartbeat")
    monitor_id = c.opt_id(heartbeat, "monitorID", "heartbeat")
    labels: dict[str, str] = {}
    url = host = service = None
    if monitor is not None:
        monitor_id = c.opt_id(monitor, "id", "monitor") or monitor_id
        name = c.opt_str(monitor, "name", "monitor")
        kind = c.opt_str(monitor, "type", "monitor")
        url = c.site_url(c.opt_str(monitor, "url", "monitor"))
        hostname = c.opt_str(monitor, "hostname", "monitor")
        labels.update(_tags(monitor))
        if name:
            labels.setdefault("monitor", name)
        if kind:
            labels.setdefault("monitor_type", kind)
        host = (hostname or "").strip() or c.host_of(url)
        service = c.first(labels, c.SERVICE_KEYS)
    status = c.status_in_text(beat_msg) or c.status_in_text(msg)
    summary = (msg or "").strip() or (beat_msg or "").strip()
    return [
        Alert(
            source=SOURCE,
            fingerprint=monitor_id or c.fingerprint(SOURCE, labels, url, host),
            state=state,
            status=status,
            url=url,
            service=service,
            host=host,
            summary=summary,
            labels=labels,
            starts_at=at if state == "firing" else None,
            ends_at=at if state == "resolved" else None,
        )
    ]


def _unwrap(payload: dict[str, object]) -> dict[str, object]:
    """The ``form-data`` preset's ``{"data": "<json>"}`` as the JSON it holds."""
    data = payload.get("data")
    if not isinstance(data, str) or any(key in payload for key in ("heartbeat", "monitor", "msg")):
        return payload
    try:
        inner = json.loads(data)
    except (ValueError, RecursionError):
        raise c.PayloadError("data", "expected the notification as a JSON string") from None
    return c.expect_object(inner, "data")


def _tags(monitor: dict[str, object]) -> dict[str, str]:
    """Monitor tags ``[{name, value}]`` as labels (a tag without a value is ``name: ""``)."""
    tags = monitor.get("tags")
    if tags is None:
        return {}
    labels: dict[str, str] = {}
    for index, tag in enumerate(c.expect_list(tags, "monitor.tags")):
        where = c.path("monitor.tags", index)
        item = c.expect_object(tag, where)
        name = c.opt_str(item, "name", where)
        value = item.get("value")
        if value is not None and not isinstance(value, str):
            raise c.PayloadError(c.path(where, "value"), f"expected a string, got {c.type_name(value)}")
        if name:
            labels[name] = value or ""
    return labels
