"""Routing alerts to services (match.labels, match.url_host) and the incident key."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.config import Settings
from bot.core.models import Alert
from bot.services.routing import Route, group_key, matches, resolve, route, status_class


def settings(**services: Any) -> Settings:
    return Settings.model_validate(
        {
            "hosts": {"web-1": {"address": "203.0.113.10"}, "app-1": {"address": "203.0.113.11"}},
            "services": services,
        }
    )


SETTINGS = settings(
    shop={"match": {"labels": {"service": "shop"}, "url_host": "shop.example.com"}, "hosts": ["web-1", "app-1"]},
    billing={"match": {"labels": {"job": "billing-api", "env": "prod"}}, "hosts": ["app-1"]},
    api={"match": {"url_host": "api.example.com:8443"}, "hosts": ["web-1"]},
    empty={"hosts": ["web-1"]},
)


def alert(**fields: Any) -> Alert:
    return Alert(source="alertmanager", fingerprint=fields.pop("fingerprint", "f1"), state="firing", **fields)


@pytest.mark.parametrize(
    ("fields", "service"),
    [
        ({"labels": {"service": "shop"}}, "shop"),
        ({"service": "shop"}, "shop"),  # the alert's service counts as label "service"
        ({"labels": {"service": "other"}, "url": "https://shop.example.com/healthz"}, "shop"),  # url rule alone
        ({"url": "https://SHOP.example.com./x"}, "shop"),
        ({"url": "http://shop.example.com:8080/"}, "shop"),  # url_host without a port: any port
        ({"labels": {"job": "billing-api", "env": "prod", "x": "y"}}, "billing"),
        ({"labels": {"job": "billing-api"}}, None),  # every label must match
        ({"labels": {"job": "billing-api", "env": "staging"}}, None),
        ({"url": "https://api.example.com:8443/v1"}, "api"),
        ({"url": "https://api.example.com/v1"}, None),  # 443 ≠ 8443
        ({"url": "https://notshop.example.com/"}, None),
        ({"url": "https://shop.example.com.evil.test/"}, None),
        ({"url": "https://user@shop.example.com/"}, "shop"),
        ({"url": "https://[::1"}, None),
        ({"url": "https://shop.example.com:99999/"}, None),
        ({"labels": {"service": "unknown"}}, None),
        ({}, None),
    ],
)
def test_route(fields: dict[str, Any], service: str | None) -> None:
    assert route(alert(**fields), SETTINGS) == service


def test_config_order_decides_between_two_matches() -> None:
    first = settings(a={"match": {"labels": {"team": "web"}}}, b={"match": {"url_host": "shop.example.com"}})
    second = settings(b={"match": {"url_host": "shop.example.com"}}, a={"match": {"labels": {"team": "web"}}})
    both = alert(labels={"team": "web"}, url="https://shop.example.com/")
    assert route(both, first) == "a"
    assert route(both, second) == "b"
    assert all(route(both, first) == "a" for _ in range(10))


def test_default_port_is_implied() -> None:
    s = settings(shop={"match": {"url_host": "shop.example.com:443"}})
    assert route(alert(url="https://shop.example.com/"), s) == "shop"
    assert route(alert(url="http://shop.example.com/"), s) is None


def test_empty_match_matches_nothing() -> None:
    assert not matches(alert(labels={"service": "empty"}, url="https://x.example/"), SETTINGS.services["empty"].match)


def test_no_services() -> None:
    assert route(alert(labels={"service": "shop"}), Settings()) is None


@pytest.mark.parametrize(
    ("status", "klass"), [(502, "5xx"), (521, "5xx"), (404, "4xx"), (200, "2xx"), (None, "unknown"), (700, "unknown")]
)
def test_status_class(status: int | None, klass: str) -> None:
    assert status_class(status) == klass


def test_group_key_routed() -> None:
    assert group_key(alert(status=502), "shop") == "shop:5xx"
    assert group_key(alert(status=504, fingerprint="other"), "shop") == "shop:5xx"
    assert group_key(alert(status=None), "shop") == "shop:unknown"


@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ({"service": "shop", "status": 502}, "unrouted:service=shop:5xx"),
        ({"url": "https://Shop.example.com/x", "status": 503}, "unrouted:host=shop.example.com:5xx"),
        ({"labels": {"alertname": "HTTP5xx"}}, "unrouted:alertname=HTTP5xx:unknown"),
        ({"fingerprint": "abc", "status": 500}, "unrouted:alert=alertmanager/abc:5xx"),
    ],
)
def test_group_key_unrouted(fields: dict[str, Any], key: str) -> None:
    assert group_key(alert(**fields), None) == key


def test_resolve_routed_and_unrouted() -> None:
    routed = resolve(alert(labels={"service": "shop"}, status=502), SETTINGS)
    assert routed == Route(service="shop", hosts=("web-1", "app-1"), group_key="shop:5xx")
    assert routed.routed
    # an unrouted alert never yields hosts, even when its labels name a configured host
    unrouted = resolve(alert(labels={"host": "web-1", "instance": "web-1"}, host="web-1", status=502), SETTINGS)
    assert unrouted.service is None and unrouted.hosts == () and not unrouted.routed
    assert unrouted.group_key.startswith("unrouted:")


@given(
    labels=st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=4),
    url=st.none() | st.text(max_size=40),
    status=st.none() | st.integers(100, 599),
)
def test_never_raises(labels: dict[str, str], url: str | None, status: int | None) -> None:
    a = alert(labels=labels, url=url, status=status)
    r = resolve(a, SETTINGS)
    assert r.group_key == group_key(a, r.service)
    assert (r.hosts == ()) == (r.service is None or r.service == "empty")
