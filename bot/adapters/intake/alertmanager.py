"""Prometheus Alertmanager webhook (payload version 4) → Alerts.

One Alert per entry of ``alerts``: a notification lists every current alert of the group, firing and
resolved, so each is keyed by Alertmanager's own ``fingerprint`` and carries the group's ``groupKey``.
Firing alerts have ``endsAt: "0001-01-01T00:00:00Z"``, which is read as "no end". ``generatorURL``
links to the rule in Prometheus, not to the failing site, so it is never the alert's URL.

Grafana's unified alerting webhook has the same shape plus a few fields; :mod:`.grafana` reuses
:func:`parse_group` with its extras.
"""

from __future__ import annotations

from collections.abc import Callable

from bot.adapters.intake import _common as c
from bot.core.models import Alert

SOURCE = "alertmanager"

#: A source's own per-alert fallbacks, called as ``extras(payload, alert, alert's JSON path)`` and returning
#: (HTTP status, summary) for when labels and annotations name none.
Extras = Callable[[dict[str, object], dict[str, object], str], tuple[int | None, str | None]]


def parse(body: object) -> list[Alert]:
    """Every alert of an Alertmanager notification, normalised; PayloadError names a bad field."""
    return parse_group(body, SOURCE)


def parse_group(body: object, source: str, extras: Extras | None = None) -> list[Alert]:
    payload = c.expect_object(body, "")
    if "alerts" not in payload:
        raise c.PayloadError("alerts", "missing: expected the list of alerts")
    items = c.expect_list(payload["alerts"], "alerts")
    group_key = c.opt_str(payload, "groupKey", "")
    common_labels = c.str_map(payload, "commonLabels", "")
    common_annotations = c.str_map(payload, "commonAnnotations", "")
    alerts: list[Alert] = []
    for index, item in enumerate(items):
        where = c.path("alerts", index)
        entry = c.expect_object(item, where)
        if "status" not in entry:
            raise c.PayloadError(c.path(where, "status"), 'missing: expected "firing" or "resolved"')
        state = c.state(entry["status"], c.path(where, "status"))
        labels = {**common_labels, **c.str_map(entry, "labels", where)}
        annotations = {**common_annotations, **c.str_map(entry, "annotations", where)}
        starts_at = c.timestamp(entry, "startsAt", where)
        ends_at = c.timestamp(entry, "endsAt", where)
        own_fingerprint = c.opt_str(entry, "fingerprint", where)
        c.opt_str(entry, "generatorURL", where)
        extra_status, extra_summary = extras(payload, entry, where) if extras else (None, None)
        summary = c.first(annotations, ("summary", "description", "message")) or extra_summary
        summary = summary or labels.get("alertname", "")
        status = c.status_from(
            labels, annotations, annotations.get("summary"), annotations.get("description"), annotations.get("message")
        )
        if status is None:
            status = extra_status
        url = c.url_from(labels, annotations)
        alerts.append(
            Alert(
                source=source,
                fingerprint=(own_fingerprint or "").strip() or c.fingerprint(source, labels),
                state=state,
                status=status,
                url=url,
                service=c.first(labels, c.SERVICE_KEYS),
                host=c.host_from(labels, url),
                summary=summary,
                labels=labels,
                starts_at=starts_at,
                ends_at=ends_at,
                group_key=group_key or None,
            )
        )
    return alerts
