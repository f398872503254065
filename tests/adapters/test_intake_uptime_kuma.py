"""Uptime Kuma webhook → Alerts (fixtures follow Uptime Kuma's source; see SOURCES.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.adapters.intake import SOURCES, uptime_kuma
from bot.core.models import Alert
from bot.errors import PayloadError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "alerts" / "uptime-kuma"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_registered() -> None:
    assert SOURCES["uptime-kuma"] is uptime_kuma.parse


def test_test_button_is_no_alert() -> None:
    assert uptime_kuma.parse(load("01-test-button.json")) == []
    assert uptime_kuma.parse({"msg": "x Testing"}) == []
    assert uptime_kuma.parse({}) == []


def test_down_every_field() -> None:
    (alert,) = uptime_kuma.parse(load("02-http-down-502.json"))
    assert alert == Alert(
        source="uptime-kuma",
        fingerprint="4",
        state="firing",
        status=502,
        url="https://shop.example.com/healthz",
        service="shop",
        host="shop.example.com",
        summary="[Shop] [🔴 Down] Request failed with status code 502",
        labels={"service": "shop", "prod": "", "monitor": "Shop", "monitor_type": "http"},
        starts_at=datetime(2026, 11, 30, 5, 59, 12, 403000, tzinfo=UTC),
        ends_at=None,
    )


def test_up_is_resolved() -> None:
    (alert,) = uptime_kuma.parse(load("03-http-up.json"))
    assert alert.state == "resolved"
    assert alert.fingerprint == "4"  # the same key as the down beat
    assert alert.status == 200
    assert alert.starts_at is None
    assert alert.ends_at == datetime(2026, 11, 30, 6, 4, 12, 871000, tzinfo=UTC)
    assert alert.summary == "[Shop] [✅ Up] 200 - OK"


def test_ping_monitor_from_issue_1207() -> None:
    (alert,) = uptime_kuma.parse(load("04-issue-1207-ping-down.json"))
    assert alert.fingerprint == "10"
    assert alert.state == "firing"
    assert alert.status is None
    assert alert.url is None  # the "https://" placeholder of non-HTTP monitors
    assert alert.host == "10.13.13.13"
    assert alert.summary.startswith("PING 10.13.13.13")
    assert alert.starts_at == datetime(2022, 1, 21, 14, 6, 38, tzinfo=UTC)
    assert alert.labels == {"monitor": "Testing"}


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("Request failed with status code 503", 503),
        ("502 - Bad Gateway", 502),
        ("504 - Gateway Timeout", 504),
        ("timeout of 48000ms exceeded", None),
        ("connect ECONNREFUSED 10.0.0.1:443", None),
        ("200 - OK, but keyword is not in [<html>]", 200),
    ],
)
def test_status_from_message(text: str, status: int | None) -> None:
    (alert,) = uptime_kuma.parse(
        {"heartbeat": {"status": 0, "msg": text, "monitorID": 1}, "monitor": None, "msg": None}
    )
    assert alert.status == status
    assert alert.fingerprint == "1"


@pytest.mark.parametrize("beat", [2, 3])
def test_pending_and_maintenance_are_no_alert(beat: int) -> None:
    assert uptime_kuma.parse({"heartbeat": {"status": beat, "monitorID": 1}, "monitor": None}) == []


def test_form_data_preset_is_unwrapped() -> None:
    body = load("02-http-down-502.json")
    assert uptime_kuma.parse({"data": json.dumps(body)}) == uptime_kuma.parse(body)


def test_no_monitor_id_uses_a_stable_hash() -> None:
    body = {"heartbeat": {"status": 0}, "monitor": {"name": "Shop", "url": "https://shop.example.com/"}}
    (a,) = uptime_kuma.parse(body)
    (b,) = uptime_kuma.parse(body)
    assert a.fingerprint == b.fingerprint and len(a.fingerprint) == 16


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ({"heartbeat": "down"}, "heartbeat"),
        ({"heartbeat": {}}, "heartbeat.status"),
        ({"heartbeat": {"status": "0"}}, "heartbeat.status"),
        ({"heartbeat": {"status": True}}, "heartbeat.status"),
        ({"heartbeat": {"status": 7}}, "heartbeat.status"),
        ({"heartbeat": {"status": 0, "msg": 5}}, "heartbeat.msg"),
        ({"heartbeat": {"status": 0, "time": "noon"}}, "heartbeat.time"),
        ({"heartbeat": {"status": 0, "monitorID": [1]}}, "heartbeat.monitorID"),
        ({"heartbeat": {"status": 0}, "monitor": []}, "monitor"),
        ({"heartbeat": {"status": 0}, "monitor": {"id": 1.5}}, "monitor.id"),
        ({"heartbeat": {"status": 0}, "monitor": {"url": 1}}, "monitor.url"),
        ({"heartbeat": {"status": 0}, "monitor": {"tags": {}}}, "monitor.tags"),
        ({"heartbeat": {"status": 0}, "monitor": {"tags": [{"name": "a", "value": 1}]}}, "monitor.tags[0].value"),
        ({"heartbeat": {"status": 0}, "monitor": {"tags": ["a"]}}, "monitor.tags[0]"),
        ({"msg": ["x"]}, "msg"),
        ({"data": "{not json"}, "data"),
        ({"data": "[1]"}, "data"),
    ],
)
def test_errors_name_the_field(body: object, field: str) -> None:
    with pytest.raises(PayloadError) as info:
        uptime_kuma.parse(body)
    assert info.value.field == field


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(
    json_values
    | st.fixed_dictionaries(
        {
            "heartbeat": st.fixed_dictionaries(
                {"status": st.sampled_from([0, 1]) | json_values},
                optional={"msg": json_values, "time": json_values, "monitorID": json_values},
            )
            | json_values
        },
        optional={
            "monitor": st.fixed_dictionaries(
                {},
                optional={
                    "id": json_values,
                    "url": st.text() | json_values,
                    "tags": json_values,
                    "hostname": json_values,
                },
            )
            | json_values,
            "msg": json_values,
            "data": st.text() | json_values,
        },
    )
)
def test_arbitrary_json_raises_only_payload_error(body: object) -> None:
    try:
        alerts = uptime_kuma.parse(body)
    except PayloadError as exc:
        assert exc.field
        return
    assert len(alerts) <= 1
    assert all(a.status is None or 100 <= a.status <= 599 for a in alerts)
