"""The generic alert body of DESIGN §4.4 → Alerts."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.adapters.intake import SOURCES, generic
from bot.core.models import Alert
from bot.errors import PayloadError

FULL = {
    "id": "shop-healthz",
    "state": "firing",
    "status": 502,
    "url": "https://shop.example.com/healthz",
    "service": "shop",
    "host": "web-1",
    "summary": "shop returns 502",
}


def test_registered() -> None:
    assert set(SOURCES) == {"alertmanager", "grafana", "uptime-kuma", "generic"}
    assert SOURCES["generic"] is generic.parse


def test_every_field() -> None:
    body = {**FULL, "labels": {"team": "web"}, "starts_at": "2026-11-30T05:59:12Z", "extra": True}
    assert generic.parse(body) == [
        Alert(
            source="generic",
            fingerprint="shop-healthz",
            state="firing",
            status=502,
            url="https://shop.example.com/healthz",
            service="shop",
            host="web-1",
            summary="shop returns 502",
            labels={"team": "web"},
            starts_at=datetime(2026, 11, 30, 5, 59, 12, tzinfo=UTC),
        )
    ]


def test_minimal_and_lists() -> None:
    (alert,) = generic.parse({"state": "resolved"})
    assert alert.state == "resolved" and alert.status is None and len(alert.fingerprint) == 16
    assert len(generic.parse([FULL, {**FULL, "id": 2}])) == 2
    assert [a.fingerprint for a in generic.parse({"alerts": [FULL, {**FULL, "id": 7}]})] == ["shop-healthz", "7"]


@pytest.mark.parametrize(("value", "status"), [(502, 502), ("503", 503), (504.0, 504), (None, None), (100, 100)])
def test_status_values(value: object, status: int | None) -> None:
    assert generic.parse({**FULL, "status": value})[0].status == status


def test_status_from_summary_when_absent() -> None:
    body = {"state": "firing", "summary": "probe got HTTP 503"}
    assert generic.parse(body)[0].status == 503


def test_host_from_url_when_absent() -> None:
    body = {"state": "firing", "url": "http://api.example.com:8080/x"}
    assert generic.parse(body)[0].host == "api.example.com"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("firing", "body"),
        (7, "body"),
        ({"status": 502}, "state"),
        ({**FULL, "state": "ok"}, "state"),
        ({**FULL, "state": None}, "state"),
        ({**FULL, "status": 99}, "status"),
        ({**FULL, "status": 600}, "status"),
        ({**FULL, "status": "5xx"}, "status"),
        ({**FULL, "status": True}, "status"),
        ({**FULL, "status": 502.5}, "status"),
        ({**FULL, "status": 10**5000}, "status"),
        ({**FULL, "url": "shop.example.com"}, "url"),
        ({**FULL, "url": "ftp://shop.example.com"}, "url"),
        ({**FULL, "url": 5}, "url"),
        ({**FULL, "service": 5}, "service"),
        ({**FULL, "host": ["a"]}, "host"),
        ({**FULL, "summary": {}}, "summary"),
        ({**FULL, "id": ""}, "id"),
        ({**FULL, "id": 1.5}, "id"),
        ({**FULL, "id": 10**5000}, "id"),
        ({**FULL, "labels": {"a": 1}}, "labels.a"),
        ({**FULL, "starts_at": "never"}, "starts_at"),
        ([FULL, {**FULL, "state": "x"}], "[1].state"),
        ({"alerts": [FULL, FULL, {**FULL, "status": "x"}]}, "alerts[2].status"),
        ({"alerts": 3}, "alerts"),
    ],
)
def test_errors_name_the_field(body: object, field: str) -> None:
    with pytest.raises(PayloadError) as info:
        generic.parse(body)
    assert info.value.field == field
    assert len(info.value.user_message()) < 200


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(
    json_values
    | st.fixed_dictionaries(
        {"state": st.sampled_from(["firing", "resolved"]) | json_values},
        optional={
            key: json_values for key in ("id", "status", "url", "service", "host", "summary", "labels", "starts_at")
        },
    )
)
def test_arbitrary_json_raises_only_payload_error(body: object) -> None:
    try:
        alerts = generic.parse(body)
    except PayloadError:
        return
    assert all(a.status is None or 100 <= a.status <= 599 for a in alerts)
