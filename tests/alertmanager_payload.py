"""An Alertmanager v4 webhook payload for the tests and soaks that post many groups (shaped like the
captured ``tests/fixtures/alerts/alertmanager/01-firing-group-of-two.json``)."""

from __future__ import annotations

import json
from collections.abc import Callable


def firing_group(service: str, n: int, instance: Callable[[str], str]) -> bytes:
    """The firing group of ``service``: two alerts (paths ``api`` and ``healthz``) with fingerprints of
    their own, made from ``n``; ``instance(path)`` is each alert's URL."""
    alerts = [
        {
            "status": "firing",
            "labels": {"alertname": "HTTP5xx", "service": service, "status": "502", "instance": instance(path)},
            "annotations": {"summary": f"{service} {path} returns 502"},
            "startsAt": "2026-11-30T05:59:12.403871648Z",
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example:9090/graph",
            "fingerprint": f"{n:012x}{i:04x}",
        }
        for i, path in enumerate(("api", "healthz"))
    ]
    body = {
        "receiver": "incident-bot", "status": "firing", "alerts": alerts,
        "groupLabels": {"alertname": "HTTP5xx", "service": service},
        "commonLabels": {"alertname": "HTTP5xx", "service": service, "status": "502"},
        "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093", "version": "4",
        "groupKey": f'{{}}:{{alertname="HTTP5xx", service="{service}"}}', "truncatedAlerts": 0,
    }  # fmt: skip
    return json.dumps(body).encode()
