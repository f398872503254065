"""The replay memory: a signed request is taken once while its signature could still be accepted, and the
memory forgets it afterwards and stays bounded."""

from __future__ import annotations

from bot.adapters.slack.replay import WINDOW, ReplayGuard, retry_number


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_signature_is_taken_once_within_the_window_and_forgotten_after_it() -> None:
    clock = Clock(1_800_000_000.0)
    guard = ReplayGuard(clock)
    stamp = str(int(clock.now))
    assert guard.first_time(stamp, "v0=aa") is True
    assert guard.first_time(stamp, "v0=aa") is False
    assert guard.first_time(stamp, "v0=bb") is True  # another request signed at the same second
    clock.now += WINDOW  # still acceptable to Slack's check (|now - ts| <= 300): still a replay
    assert guard.first_time(stamp, "v0=aa") is False
    clock.now += 2  # the signature is stale now; its memory can go
    assert guard.first_time(str(int(clock.now)), "v0=cc") is True
    assert len(guard) == 1


def test_the_memory_is_bounded() -> None:
    guard = ReplayGuard(Clock(1_800_000_000.0), capacity=3)
    for n in range(5):
        assert guard.first_time("1800000000", f"v0={n}")
    assert len(guard) == 3


def test_only_a_positive_retry_number_is_a_redelivery() -> None:
    assert retry_number({}) == 0
    assert retry_number({"x-slack-retry-num": ["0"]}) == 0  # Socket Mode's first delivery
    assert retry_number({"x-slack-retry-num": ["2"]}) == 2
    assert retry_number({"x-slack-retry-num": ["two"]}) == 0
