"""Routing: which service of the config an alert belongs to, and which incident it joins.

A service's ``match`` has two kinds of rule, and any one that matches routes the alert there
(DESIGN §4.5): ``labels`` (every label named equals the alert's; the alert's ``service`` counts as
label ``service`` when the alert has no such label) and ``url_host`` (equals the host, or host:port,
of the alert's URL). Services are tried in the order of the config file, so the first one that
matches wins, the same on every run. A service with an empty ``match`` matches nothing.

An alert that matches nothing is *unrouted*: it still becomes an incident, but it has no hosts, so it
is never diagnosed on hosts taken from its own labels (DESIGN §7: an alert cannot name a host).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from bot.config import ServiceConfig, ServiceMatch, Settings
from bot.core.models import Alert

UNROUTED = "unrouted"
_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Route:
    """Where an alert goes: its service (None when unrouted), the hosts to diagnose and its incident key."""

    service: str | None
    hosts: tuple[str, ...]
    group_key: str

    @property
    def routed(self) -> bool:
        return self.service is not None


def route(alert: Alert, settings: Settings) -> str | None:
    """The name of the first service (in config order) whose ``match`` accepts the alert, else None."""
    for name, service in settings.services.items():
        if matches(alert, service.match):
            return name
    return None


def resolve(alert: Alert, settings: Settings) -> Route:
    """The alert's route: its service, that service's hosts (none when unrouted) and its incident key."""
    name = route(alert, settings)
    service: ServiceConfig | None = settings.services.get(name) if name is not None else None
    hosts = tuple(service.hosts) if service is not None else ()
    return Route(service=name, hosts=hosts, group_key=group_key(alert, name))


def matches(alert: Alert, match: ServiceMatch) -> bool:
    """Whether any one rule of ``match`` accepts the alert."""
    if match.labels:
        labels = dict(alert.labels)
        if alert.service:
            labels.setdefault("service", alert.service)
        if all(labels.get(key) == value for key, value in match.labels.items()):
            return True
    return bool(match.url_host) and _url_host_matches(alert.url, match.url_host or "")


def status_class(status: int | None) -> str:
    """``5xx`` for 502, ``unknown`` when there is no valid status."""
    if status is None or not 100 <= status <= 599:
        return "unknown"
    return f"{status // 100}xx"


def group_key(alert: Alert, service: str | None) -> str:
    """The incident key: one incident per service and status class while any of its alerts fire.

    ``shop:5xx`` for a routed alert; for an unrouted one the service is replaced by the most stable
    thing the alert says about itself: ``unrouted:service=shop:5xx``, ``unrouted:host=shop.example.com:5xx``,
    ``unrouted:alertname=HTTP5xx:5xx``, else ``unrouted:alert=<source>/<fingerprint>:5xx``.
    """
    klass = status_class(alert.status)
    if service is not None:
        return f"{service}:{klass}"
    return f"{UNROUTED}:{_unrouted_part(alert)}:{klass}"


def _unrouted_part(alert: Alert) -> str:
    if alert.service:
        return f"service={alert.service}"
    host = _url_parts(alert.url)
    if host is not None:
        return f"host={host[0]}"
    alertname = alert.labels.get("alertname", "").strip()
    if alertname:
        return f"alertname={alertname}"
    return f"alert={alert.source}/{alert.fingerprint}"


def _url_parts(url: str | None) -> tuple[str, int | None] | None:
    """(lowercased host without a trailing dot, explicit-or-default port) of an absolute URL, else None."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    return host.rstrip("."), port if port is not None else _DEFAULT_PORTS.get(parts.scheme.lower())


def _url_host_matches(url: str | None, want: str) -> bool:
    """``want`` is ``host`` (any port) or ``host:port`` (that port; 443/80 are implied by https/http)."""
    have = _url_parts(url)
    if have is None:
        return False
    target = _url_parts(f"//{want.strip()}")
    if target is None:
        return False
    want_host, want_port = target
    have_host, have_port = have
    if want_host != have_host:
        return False
    return want_port is None or want_port == have_port
