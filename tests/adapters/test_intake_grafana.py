"""Grafana webhook → Alerts, on the documentation's example and a probe-rule notification (fixtures SOURCES.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.adapters.intake import SOURCES, grafana
from bot.core.models import Alert
from bot.errors import PayloadError

FIXTURES = Path(__file__).parent.parent / "fixtures" / "alerts" / "grafana"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def test_registered() -> None:
    assert SOURCES["grafana"] is grafana.parse


def test_docs_example_every_field() -> None:
    first, second = grafana.parse(load("01-docs-two-firing.json"))
    assert first == Alert(
        source="grafana",
        fingerprint="c6eadffa33fcdf37",
        state="firing",
        status=None,  # values B=44.2 (not whole), C=1 (not a status)
        url=None,  # generatorURL and silenceURL are Grafana's pages, not the site
        service=None,
        host=None,
        summary="This alert was triggered for zone us-1",
        labels={"alertname": "High memory usage", "team": "blue", "zone": "us-1"},
        starts_at=datetime(2021, 10, 12, 7, 51, 3, 157076, tzinfo=UTC),
        ends_at=None,
        group_key="{}:{}",
    )
    assert second.fingerprint == "bc97ff14869b13e3"
    assert second.summary == "This alert was triggered for zone eu-1"
    assert second.starts_at == datetime(2021, 10, 12, 7, 56, 3, 157076, tzinfo=UTC)
    assert second.labels == {"alertname": "High CPU usage", "team": "blue", "zone": "eu-1"}


def test_probe_rule_status_from_values() -> None:
    (alert,) = grafana.parse(load("02-constructed-probe-502-resolved.json"))
    assert alert.fingerprint == "2b8c0ce6dd0fbd38"
    assert alert.state == "resolved"
    assert alert.status == 502
    assert alert.url == "https://shop.example.com/healthz"
    assert alert.host == "shop.example.com"
    assert alert.service == "blackbox"
    assert alert.summary == "[RESOLVED] Site returns 5xx Sites (https://shop.example.com/healthz blackbox)"
    assert alert.starts_at == datetime(2026, 11, 30, 5, 58, tzinfo=UTC)
    assert alert.ends_at == datetime(2026, 11, 30, 6, 3, tzinfo=UTC)
    assert alert.group_key is not None and alert.group_key.endswith('grafana_folder="Sites"}')


def one(**alert: object) -> dict[str, object]:
    return {"alerts": [{"status": "firing", "labels": {"alertname": "Site"}, **alert}]}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (one(values={"A": 503.0}), 503),
        (one(values={"A": 502, "B": 504}), None),  # ambiguous
        (one(values={"A": 502, "B": 502.0, "C": 1}), 502),
        (one(values=None), None),
        (one(valueString="[ var='A' labels={} value=504 ], [ var='C' labels={} value=1 ]"), 504),
        (one(valueString="[ var='A' labels={} value=12.5 ]"), None),
        (one(labels={"status": "500"}, values={"A": 502}), 500),  # labels first
        ({**one(), "title": "[FIRING:1] Site (HTTP 502)"}, 502),
        ({**one(), "message": "Request failed with status code 503"}, 503),
    ],
)
def test_status_sources(body: dict[str, object], status: int | None) -> None:
    (alert,) = grafana.parse(body)
    assert alert.status == status


def test_group_title_is_not_used_for_one_of_many() -> None:
    body = {
        "title": "[FIRING:2] HTTP 502",
        "alerts": [{"status": "firing"}, {"status": "firing", "labels": {"x": "1"}}],
    }
    assert [a.status for a in grafana.parse(body)] == [None, None]
    assert [a.summary for a in grafana.parse(body)] == ["", ""]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ("[]", "body"),
        ({"receiver": "x"}, "alerts"),
        ({"alerts": "none"}, "alerts"),
        ({"alerts": [{"status": "alerting"}]}, "alerts[0].status"),
        (one(values=[1, 2]), "alerts[0].values"),
        (one(values={"A": "502"}), "alerts[0].values.A"),
        (one(values={"A": True}), "alerts[0].values.A"),
        (one(valueString=502), "alerts[0].valueString"),
        ({**one(), "title": ["x"]}, "title"),
        ({**one(), "message": 1}, "message"),
        (one(endsAt="soon"), "alerts[0].endsAt"),
    ],
)
def test_errors_name_the_field(body: object, field: str) -> None:
    with pytest.raises(PayloadError) as info:
        grafana.parse(body)
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
            "alerts": st.lists(
                st.fixed_dictionaries(
                    {"status": st.just("firing")},
                    optional={
                        "values": st.dictionaries(st.text(max_size=2), st.floats() | st.integers()) | json_values,
                        "valueString": st.text() | json_values,
                    },
                ),
                max_size=3,
            )
        },
        optional={"title": json_values, "message": json_values},
    )
)
def test_arbitrary_json_raises_only_payload_error(body: object) -> None:
    try:
        alerts = grafana.parse(body)
    except PayloadError:
        return
    assert all(a.status is None or 100 <= a.status <= 599 for a in alerts)
