"""The status card's degraded-delivery line: one ``⚠ Slack delivery delayed since 10:02 UTC`` line per
degraded target, above the buttons; none for targets that are fine; the card is unchanged when nothing
is degraded."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.core.blocks import Actions, Section, plain_text
from bot.core.cards import status_card, with_delivery_notice
from bot.core.delivery import TargetDelivery
from bot.core.incidents import Incident, IncidentState

T0 = datetime(2026, 11, 30, 10, 2, 13, tzinfo=UTC)
INCIDENT = Incident(id="7", key="shop:5xx", service="shop", routed=True, status=502, title="shop 502", opened_at=T0)
SLACK_DOWN = TargetDelivery(target="slack", label="Slack", state="degraded", since=T0, waiting=7, last_error="HTTP 503")
TELEGRAM_OK = TargetDelivery(target="telegram", label="Telegram", state="ok", since=T0, waiting=1)
PAGERDUTY_DOWN = TargetDelivery(target="pagerduty", label="PagerDuty", state="degraded", since=T0, waiting=1)


def test_a_degraded_target_gets_a_warning_line_above_the_buttons() -> None:
    card = status_card(INCIDENT, None, [SLACK_DOWN, TELEGRAM_OK])
    warnings = [b for b in card if isinstance(b, Section) and b.text.startswith("⚠")]
    assert warnings == [Section("⚠ Slack delivery delayed since 10:02 UTC")]
    assert isinstance(card[-1], Actions) and card.index(warnings[0]) == len(card) - 2
    assert "Telegram" not in plain_text(card)  # a target that is fine is not mentioned


def test_each_degraded_target_has_its_line_in_the_order_given() -> None:
    text = plain_text(status_card(INCIDENT, None, [SLACK_DOWN, PAGERDUTY_DOWN]))
    assert text.index("⚠ Slack delivery delayed") < text.index("⚠ PagerDuty delivery delayed since 10:02 UTC")


def test_without_trouble_the_card_is_the_same_as_before() -> None:
    assert status_card(INCIDENT, None, [TELEGRAM_OK]) == status_card(INCIDENT, None)
    assert "delivery" not in plain_text(status_card(INCIDENT, None))


def test_a_resolved_card_has_no_buttons_and_the_line_goes_last() -> None:
    resolved = INCIDENT.model_copy(update={"state": IncidentState.RESOLVED, "resolved_at": T0})
    card = with_delivery_notice(status_card(resolved, None), [SLACK_DOWN])
    assert not any(isinstance(b, Actions) for b in card)
    assert card[-1] == Section("⚠ Slack delivery delayed since 10:02 UTC")
