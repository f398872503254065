"""Alertmanager webhook → Alerts, on payloads captured from a real Alertmanager 0.25 (see fixtures SOURCES.md)."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.adapters.intake import SOURCES, alertmanager
from bot.core.models import Alert
from bot.errors import PayloadError, UsageError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "alerts" / "alertmanager"
SHOP_GROUP = '{}:{alertname="HTTP5xx", service="shop"}'
JOB_GROUP = '{}:{alertname="UpstreamTimeout"}'


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def by_fingerprint(alerts: list[Alert]) -> dict[str, Alert]:
    return {a.fingerprint: a for a in alerts}


def test_registered() -> None:
    assert SOURCES["alertmanager"] is alertmanager.parse


def test_first_notification_every_field() -> None:
    alerts = alertmanager.parse(load("01-firing-group-of-two.json"))
    assert [a.fingerprint for a in alerts] == ["5bc5a585c4f4f377", "6c7100741344b257"]
    healthz = by_fingerprint(alerts)["6c7100741344b257"]
    assert healthz == Alert(
        source="alertmanager",
        fingerprint="6c7100741344b257",
        state="firing",
        status=502,
        url="https://shop.example.com/healthz",
        service="shop",
        host="shop.example.com",
        summary="shop returns 502 Bad Gateway",
        labels={
            "alertname": "HTTP5xx",
            "instance": "https://shop.example.com/healthz",
            "service": "shop",
            "severity": "critical",
            "status": "502",
        },
        starts_at=datetime(2026, 11, 30, 5, 59, 12, 390097, tzinfo=UTC),
        ends_at=None,
        group_key=SHOP_GROUP,
    )
    api = by_fingerprint(alerts)["5bc5a585c4f4f377"]
    assert (api.url, api.summary, api.state, api.ends_at) == (
        "https://shop.example.com/api",
        "shop api returns 502",
        "firing",
        None,
    )
    assert api.starts_at is not None and api.starts_at.tzinfo is UTC


def test_generator_url_is_never_the_site() -> None:
    body = load("01-firing-group-of-two.json")
    for item in body["alerts"]:
        del item["labels"]["instance"]
    alerts = alertmanager.parse(body)
    assert [a.url for a in alerts] == [None, None]
    assert [a.host for a in alerts] == [None, None]


def test_repeat_is_identical() -> None:
    assert alertmanager.parse(load("02-repeat-interval.json")) == alertmanager.parse(
        load("01-firing-group-of-two.json")
    )


def test_job_label_and_status_code_and_non_url_instance() -> None:
    (alert,) = alertmanager.parse(load("03-firing-job-status-code.json"))
    assert alert.fingerprint == "f0defa52260ad48e"
    assert alert.status == 504
    assert alert.service == "billing-api"
    assert alert.url is None
    assert alert.host == "10.0.0.7"
    assert alert.summary == "billing-api answers 504 Gateway Timeout"
    assert alert.group_key == JOB_GROUP
    assert alert.starts_at == datetime(2026, 11, 30, 5, 59, 20, 140021, tzinfo=UTC)


def test_partly_resolved_group() -> None:
    alerts = by_fingerprint(alertmanager.parse(load("04-one-resolved-one-firing.json")))
    assert alerts["5bc5a585c4f4f377"].state == "resolved"
    assert alerts["5bc5a585c4f4f377"].ends_at == datetime(2026, 11, 30, 5, 59, 25, tzinfo=UTC)
    assert alerts["6c7100741344b257"].state == "firing"
    assert alerts["6c7100741344b257"].ends_at is None


@pytest.mark.parametrize(
    ("name", "fingerprint", "ends_at"),
    [
        ("07-resolved-job.json", "f0defa52260ad48e", datetime(2026, 11, 30, 5, 59, 34, tzinfo=UTC)),
        ("08-all-resolved.json", "6c7100741344b257", datetime(2026, 11, 30, 5, 59, 34, tzinfo=UTC)),
    ],
)
def test_resolved(name: str, fingerprint: str, ends_at: datetime) -> None:
    (alert,) = alertmanager.parse(load(name))
    assert (alert.fingerprint, alert.state, alert.ends_at) == (fingerprint, "resolved", ends_at)


def test_every_fixture_parses() -> None:
    for path in sorted(FIXTURES.glob("*.json")):
        alerts = alertmanager.parse(json.loads(path.read_text()))
        assert alerts, path.name
        assert all(a.source == "alertmanager" and a.status in (502, 504) for a in alerts)


def test_extra_fields_and_missing_optional_ones() -> None:
    body = {"alerts": [{"status": "firing", "surprise": [1, 2], "labels": {"alertname": "X"}}], "new": {"x": 1}}
    (alert,) = alertmanager.parse(body)
    assert alert.summary == "X"
    assert alert.status is None and alert.starts_at is None and alert.group_key is None
    assert len(alert.fingerprint) == 16
    assert alertmanager.parse(body)[0].fingerprint == alert.fingerprint
    assert alertmanager.parse({"alerts": []}) == []


def test_fingerprint_without_source_one_is_stable_per_labels() -> None:
    a = alertmanager.parse({"alerts": [{"status": "firing", "labels": {"a": "1", "b": "2"}}]})[0]
    b = alertmanager.parse({"alerts": [{"status": "resolved", "labels": {"b": "2", "a": "1"}}]})[0]
    c = alertmanager.parse({"alerts": [{"status": "firing", "labels": {"a": "1", "b": "3"}}]})[0]
    assert a.fingerprint == b.fingerprint != c.fingerprint


@pytest.mark.parametrize(
    ("where", "value", "status"),
    [
        ("labels", {"status_code": "503"}, 503),
        ("labels", {"code": "500"}, 500),
        ("labels", {"http_status": "521"}, 521),
        ("labels", {"status": "firing"}, None),
        ("labels", {"status": "700"}, None),
        ("labels", {"status": "99"}, None),
        ("annotations", {"status": "504"}, 504),
        ("annotations", {"summary": "Request failed with status code 502"}, 502),
        ("annotations", {"description": "backend said HTTP/1.1 503 Service Unavailable"}, 503),
        ("annotations", {"summary": "504 Gateway Time-out at the edge"}, 504),
        ("annotations", {"summary": "latency above 500ms"}, None),
    ],
)
def test_status_sources(where: str, value: dict[str, str], status: int | None) -> None:
    (alert,) = alertmanager.parse({"alerts": [{"status": "firing", where: value}]})
    assert alert.status == status


def test_naive_and_offset_times_become_utc() -> None:
    body = {
        "alerts": [{"status": "resolved", "startsAt": "2026-01-02T03:04:05+02:00", "endsAt": "2026-01-02 03:04:05"}]
    }
    (alert,) = alertmanager.parse(body)
    assert alert.starts_at == datetime(2026, 1, 2, 1, 4, 5, tzinfo=UTC)
    assert alert.ends_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def firing(**alert: object) -> dict[str, object]:
    return {"alerts": [{"status": "firing", "labels": {"alertname": "X"}, **alert}]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ([], "body"),
        ("text", "body"),
        (None, "body"),
        (42, "body"),
        ({}, "alerts"),
        ({"alerts": None}, "alerts"),
        ({"alerts": {"0": {}}}, "alerts"),
        ({"alerts": [{"status": "firing"}, "x"]}, "alerts[1]"),
        ({"alerts": [{"status": "firing"}, {}, {"labels": {}}]}, "alerts[1].status"),
        ({"alerts": [{"status": "firing"}, {"status": "firing"}, {"status": "FIRING"}]}, "alerts[2].status"),
        ({"alerts": [{"status": 1}]}, "alerts[0].status"),
        (firing(labels=["a"]), "alerts[0].labels"),
        (firing(labels={"service": 5}), "alerts[0].labels.service"),
        (firing(labels={"a.b": None}), 'alerts[0].labels["a.b"]'),
        (firing(annotations="summary"), "alerts[0].annotations"),
        (firing(annotations={"summary": ["x"]}), "alerts[0].annotations.summary"),
        (firing(startsAt="yesterday"), "alerts[0].startsAt"),
        (firing(startsAt=1700000000), "alerts[0].startsAt"),
        (firing(endsAt="2026-13-01T00:00:00Z"), "alerts[0].endsAt"),
        (firing(fingerprint=123), "alerts[0].fingerprint"),
        (firing(generatorURL={"u": 1}), "alerts[0].generatorURL"),
        ({**firing(), "groupKey": 7}, "groupKey"),
        ({**firing(), "commonLabels": {"x": 1}}, "commonLabels.x"),
    ],
)
def test_errors_name_the_field(body: object, field: str) -> None:
    with pytest.raises(PayloadError) as info:
        alertmanager.parse(body)
    assert info.value.field == field
    assert isinstance(info.value, UsageError)
    message = info.value.user_message()
    assert field in message and "\n" not in message


def test_huge_list_is_fine() -> None:
    body = load("01-firing-group-of-two.json")
    body["alerts"] = [copy.deepcopy(body["alerts"][0]) for _ in range(5000)]
    assert len(alertmanager.parse(body)) == 5000


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)
alertish = st.fixed_dictionaries(
    {"status": st.sampled_from(["firing", "resolved", "x"]) | json_values},
    optional={
        "labels": st.dictionaries(st.sampled_from(["status", "url", "instance", "service", "job", "host"]), st.text())
        | json_values,
        "annotations": st.dictionaries(st.sampled_from(["summary", "description", "status"]), st.text()) | json_values,
        "startsAt": st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-10:00", "2026-01-01"]) | json_values,
        "endsAt": json_values,
        "fingerprint": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    json_values | st.fixed_dictionaries({"alerts": st.lists(alertish, max_size=3)}, optional={"groupKey": json_values})
)
def test_arbitrary_json_raises_only_payload_error(body: object) -> None:
    try:
        alerts = alertmanager.parse(body)
    except PayloadError as exc:
        assert exc.field
        assert "\n" not in exc.user_message()
    else:
        for alert in alerts:
            assert alert.status is None or 100 <= alert.status <= 599
            for moment in (alert.starts_at, alert.ends_at):
                assert moment is None or moment.utcoffset() is not None
