"""One fake Slack Web API (``bot.testing.slack_api.FakeSlack``) on 127.0.0.1 for the Slack adapter tests,
started once for the package and reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.testing.slack_api import FakeSlack

CHANNELS = {
    "C0INCIDENTS": "incidents",
    "C0SHOP": "shop-alerts",
    "C0API": "api-alerts",
    "C0OUTSIDE": "outside",
    "C0OLD": "old-incidents",
}


@pytest.fixture(scope="package")
def slack_server() -> Iterator[FakeSlack]:
    with FakeSlack(channels=CHANNELS, not_member=["C0OUTSIDE"], archived=["C0OLD"]) as fake:
        yield fake


@pytest.fixture
def slack(slack_server: FakeSlack) -> FakeSlack:
    slack_server.reset()
    return slack_server
