"""On-call rotations on fixed instants (an injected clock: every test names the moment it asks about):
hand-offs at the wall-clock time across both daylight-saving switches of 2026 in Europe/Berlin, hand-off
times that do not exist or exist twice, daily and weekly shifts, follow-the-sun layers restricted to
office hours (with the US switching three weeks before Europe), overrides, and the people a level pages."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.core.oncall import (
    Layer,
    Level,
    Override,
    Person,
    Rota,
    Schedule,
    Window,
    format_duration,
    local_instant,
    parse_clock,
    parse_duration,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
TOKYO = ZoneInfo("Asia/Tokyo")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def weekly(start: date = date(2026, 3, 16), handoff: time = time(9, 0)) -> Schedule:
    layer = Layer(members=("alice", "bob", "carol"), zone=BERLIN, handoff=handoff, length_days=7, start=start)
    return Schedule("primary", (layer,), BERLIN)


def daily(handoff: time = time(9, 0), start: date = date(2026, 10, 1)) -> Schedule:
    layer = Layer(members=("alice", "bob"), zone=BERLIN, handoff=handoff, length_days=1, start=start)
    return Schedule("primary", (layer,), BERLIN)


# -- durations and times -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("10m", 600), ("2h", 7200), ("1h30m", 5400), ("1d", 86400), ("1 h 5 m", 3900)]
)
def test_durations_are_read_with_their_units(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)
    assert parse_duration(format_duration(timedelta(seconds=seconds))) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "2", "h", "2x", "-1h", "0m", "2h tomorrow", "1.5h"])
def test_a_duration_without_a_unit_or_with_junk_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_times_of_day_are_24_hour_wall_clock_times() -> None:
    assert parse_clock("9:05") == time(9, 5)
    for bad in ("24:00", "9", "09:60", "nine"):
        with pytest.raises(ValueError, match="time of day"):
            parse_clock(bad)


# -- local instants across DST -----------------------------------------------------------------------


def test_a_wall_clock_time_skipped_by_spring_forward_happens_at_the_jump() -> None:
    # 2026-03-29 in Berlin: 02:00 CET becomes 03:00 CEST at 01:00 UTC; 02:30 never exists.
    assert local_instant(date(2026, 3, 29), time(2, 30), BERLIN) == utc("2026-03-29T01:00:00")
    assert local_instant(date(2026, 3, 29), time(1, 59), BERLIN) == utc("2026-03-29T00:59:00")
    assert local_instant(date(2026, 3, 29), time(3, 0), BERLIN) == utc("2026-03-29T01:00:00")


def test_a_wall_clock_time_repeated_by_fall_back_happens_at_its_first_occurrence() -> None:
    # 2026-10-25 in Berlin: 03:00 CEST becomes 02:00 CET at 01:00 UTC; 02:30 happens twice.
    assert local_instant(date(2026, 10, 25), time(2, 30), BERLIN) == utc("2026-10-25T00:30:00")
    assert local_instant(date(2026, 10, 25), time(3, 30), BERLIN) == utc("2026-10-25T02:30:00")


# -- rotations ---------------------------------------------------------------------------------------


def test_a_weekly_rotation_hands_off_at_nine_local_time_on_both_sides_of_spring_forward() -> None:
    schedule = weekly()
    assert schedule.who(utc("2026-03-16T07:59:59")) == "carol"  # the turn before alice's first one
    assert schedule.who(utc("2026-03-16T08:00:00")) == "alice"  # 09:00 CET
    assert schedule.who(utc("2026-03-23T08:00:00")) == "bob"
    # After the switch 09:00 CEST is 07:00 UTC: a 168-hour count would still say bob for an hour.
    assert schedule.who(utc("2026-03-30T06:59:59")) == "bob"
    assert schedule.who(utc("2026-03-30T07:00:00")) == "carol"
    assert schedule.next_change(utc("2026-03-29T12:00:00")) == (utc("2026-03-30T07:00:00"), "carol")
    shift = schedule.layers[0].shift(utc("2026-03-25T12:00:00"))
    assert (shift.member, shift.start, shift.end) == ("bob", utc("2026-03-23T08:00:00"), utc("2026-03-30T07:00:00"))
    assert shift.end - shift.start == timedelta(hours=167)


def test_a_daily_shift_over_fall_back_lasts_twenty_five_hours() -> None:
    schedule = daily()
    shift = schedule.layers[0].shift(utc("2026-10-24T12:00:00"))
    assert (shift.member, shift.start) == ("bob", utc("2026-10-24T07:00:00"))  # 09:00 CEST, day 23 of the rotation
    assert shift.end == utc("2026-10-25T08:00:00")  # 09:00 CET
    assert schedule.who(utc("2026-10-25T07:30:00")) == shift.member  # 08:30 CET: still the same turn
    assert schedule.who(utc("2026-10-25T08:00:00")) != shift.member
    assert schedule.next_change(utc("2026-10-25T07:30:00")) == (utc("2026-10-25T08:00:00"), "alice")


def test_a_hand_off_at_a_skipped_time_happens_when_the_clocks_jump() -> None:
    schedule = daily(handoff=time(2, 30), start=date(2026, 3, 1))
    before = schedule.who(utc("2026-03-29T00:59:59"))  # 01:59:59 CET
    after = schedule.who(utc("2026-03-29T01:00:00"))  # 03:00 CEST
    assert before != after
    assert schedule.next_change(utc("2026-03-28T12:00:00")) == (utc("2026-03-29T01:00:00"), after)
    # and the day after, 02:30 exists again (CEST): 00:30 UTC
    assert schedule.next_change(utc("2026-03-29T12:00:00")) == (utc("2026-03-30T00:30:00"), before)


def test_a_hand_off_at_a_repeated_time_happens_once_at_its_first_occurrence() -> None:
    schedule = daily(handoff=time(2, 30), start=date(2026, 10, 1))
    first = schedule.who(utc("2026-10-25T00:29:59"))
    second = schedule.who(utc("2026-10-25T00:30:00"))
    assert first != second
    assert schedule.who(utc("2026-10-25T01:30:00")) == second  # 02:30 CET again: no second hand-off
    assert schedule.next_change(utc("2026-10-25T00:30:00")) == (utc("2026-10-26T01:30:00"), first)


def test_a_rotation_of_one_person_never_changes() -> None:
    layer = Layer(members=("alice",), zone=BERLIN, length_days=1)
    schedule = Schedule("solo", (layer,))
    assert schedule.who(utc("2026-03-29T01:00:00")) == "alice"
    assert schedule.next_change(utc("2026-03-29T01:00:00")) is None


def test_times_before_the_start_date_wrap_around_the_members() -> None:
    schedule = weekly(start=date(2026, 3, 16))
    assert schedule.who(utc("2026-03-10T12:00:00")) == "carol"
    assert schedule.who(utc("2026-03-03T12:00:00")) == "bob"


# -- follow the sun ----------------------------------------------------------------------------------


def follow_the_sun() -> Schedule:
    office = Window(days=frozenset(range(5)), start=time(8, 0), end=time(20, 0))
    return Schedule(
        "sre",
        (
            Layer(members=("erik", "emma"), zone=BERLIN, handoff=time(8, 0), start=date(2026, 3, 2), window=office,
                  name="europe"),
            Layer(members=("nina",), zone=NEW_YORK, handoff=time(8, 0), start=date(2026, 3, 2), window=office,
                  name="americas"),
            Layer(members=("taro",), zone=TOKYO, handoff=time(8, 0), start=date(2026, 3, 2), name="apac"),
        ),
    )  # fmt: skip


def test_follow_the_sun_layers_cover_their_office_hours_and_the_first_covering_layer_wins() -> None:
    schedule = follow_the_sun()
    # Tuesday 2026-03-03, all zones on winter time: Berlin +1, New York -5.
    assert schedule.source(utc("2026-03-03T07:00:00")) == ("erik", "europe")  # 08:00 Berlin
    assert schedule.source(utc("2026-03-03T14:00:00")) == ("erik", "europe")  # both offices open: Europe first
    assert schedule.source(utc("2026-03-03T19:00:00")) == ("nina", "americas")  # 20:00 Berlin, 14:00 NY
    assert schedule.source(utc("2026-03-04T00:59:59")) == ("nina", "americas")  # 19:59:59 NY Tuesday evening
    assert schedule.source(utc("2026-03-04T01:00:00")) == ("taro", "apac")  # 20:00 NY: the office window ends
    assert schedule.next_change(utc("2026-03-03T15:00:00")) == (utc("2026-03-03T19:00:00"), "nina")
    # The weekend: no office window starts on Saturday, so Tokyo's layer covers it.
    assert schedule.source(utc("2026-03-07T12:00:00")) == ("taro", "apac")


def test_follow_the_sun_moves_with_each_regions_own_daylight_saving_switch() -> None:
    schedule = follow_the_sun()
    # 2026-03-10: New York is on EDT (-4) since the 8th, Berlin still on CET (+1).
    assert schedule.next_change(utc("2026-03-10T15:00:00")) == (utc("2026-03-10T19:00:00"), "nina")
    assert schedule.next_change(utc("2026-03-10T19:00:00")) == (utc("2026-03-11T00:00:00"), "taro")
    # 2026-03-31: Berlin on CEST (+2) too: Europe closes at 18:00 UTC.
    assert schedule.next_change(utc("2026-03-31T15:00:00")) == (utc("2026-03-31T18:00:00"), "nina")


def test_a_schedule_with_a_gap_says_nobody_is_on_call_there() -> None:
    office = Window(days=frozenset(range(5)), start=time(9, 0), end=time(17, 0))
    schedule = Schedule("office", (Layer(members=("alice",), zone=BERLIN, window=office),))
    assert schedule.who(utc("2026-03-03T12:00:00")) == "alice"
    assert schedule.source(utc("2026-03-03T20:00:00")) == (None, "none")
    assert schedule.next_change(utc("2026-03-03T12:00:00")) == (utc("2026-03-03T16:00:00"), None)
    assert schedule.next_change(utc("2026-03-06T20:00:00")) == (utc("2026-03-09T08:00:00"), "alice")  # Monday


def test_a_window_over_midnight_belongs_to_the_day_it_starts() -> None:
    nights = Window(days=frozenset({4}), start=time(22, 0), end=time(6, 0))  # Friday night
    schedule = Schedule("nights", (Layer(members=("owl",), zone=BERLIN, window=nights),))
    assert schedule.who(utc("2026-03-06T22:00:00")) == "owl"  # Friday 23:00 CET
    assert schedule.who(utc("2026-03-07T04:59:59")) == "owl"  # Saturday 05:59
    assert schedule.who(utc("2026-03-07T05:00:00")) is None
    assert schedule.who(utc("2026-03-07T22:00:00")) is None  # Saturday night is not covered


# -- overrides ---------------------------------------------------------------------------------------


def override(
    person: str, start: str, end: str, *, created: str = "2026-03-01T00:00", schedule: str = "primary", oid: str = "o1"
) -> Override:
    return Override(
        id=oid, schedule=schedule, person=person, starts_at=utc(start), ends_at=utc(end), created_at=utc(created)
    )


def test_an_override_puts_someone_on_call_until_it_ends() -> None:
    schedule = weekly()
    covering = [override("dave", "2026-03-24T10:00:00", "2026-03-24T12:00:00")]
    assert schedule.source(utc("2026-03-24T09:59:59"), covering) == ("bob", "layer 1")
    assert schedule.source(utc("2026-03-24T10:00:00"), covering) == ("dave", "override")
    assert schedule.who(utc("2026-03-24T12:00:00"), covering) == "bob"
    assert schedule.next_change(utc("2026-03-24T09:00:00"), covering) == (utc("2026-03-24T10:00:00"), "dave")
    assert schedule.next_change(utc("2026-03-24T10:30:00"), covering) == (utc("2026-03-24T12:00:00"), "bob")


def test_overlapping_overrides_the_latest_created_wins_and_other_schedules_are_untouched() -> None:
    schedule = weekly()
    both = [
        override("dave", "2026-03-24T10:00:00", "2026-03-24T14:00:00", created="2026-03-24T09:00:00", oid="a"),
        override("erin", "2026-03-24T11:00:00", "2026-03-24T12:00:00", created="2026-03-24T09:30:00", oid="b"),
        override("zed", "2026-03-24T00:00:00", "2026-03-25T00:00:00", schedule="other", oid="c"),
    ]
    assert schedule.who(utc("2026-03-24T10:30:00"), both) == "dave"
    assert schedule.who(utc("2026-03-24T11:30:00"), both) == "erin"
    assert schedule.who(utc("2026-03-24T12:30:00"), both) == "dave"
    assert schedule.who(utc("2026-03-24T14:00:00"), both) == "bob"


def test_an_override_spanning_a_hand_off_hides_it() -> None:
    schedule = weekly()
    covering = [override("dave", "2026-03-30T06:00:00", "2026-03-30T09:00:00")]
    assert schedule.next_change(utc("2026-03-30T05:00:00"), covering) == (utc("2026-03-30T06:00:00"), "dave")
    assert schedule.next_change(utc("2026-03-30T06:00:00"), covering) == (utc("2026-03-30T09:00:00"), "carol")


# -- people and levels -------------------------------------------------------------------------------


def rota() -> Rota:
    people = {
        "alice": Person("alice", slack="U0ALICE", telegram="1001", telegram_username="alice_tg", pagerduty=True),
        "bob": Person("bob", slack="U0BOB"),
        "carol": Person("carol", telegram="1003"),
    }
    return Rota(people=people, schedules={"primary": weekly()}, policies={"shop": (Level(schedule="primary"),)})


def test_a_level_pages_the_schedules_person_and_its_named_people_once_each() -> None:
    team = rota()
    level = Level(schedule="primary", people=("carol", "bob", "nobody-known"))
    at = utc("2026-03-24T12:00:00")  # bob's week
    assert [p.name for p in team.targets(level, at)] == ["bob", "carol"]
    covering = [override("alice", "2026-03-24T00:00:00", "2026-03-25T00:00:00")]
    assert [p.name for p in team.targets(level, at, covering)] == ["alice", "carol", "bob"]


def test_policies_are_per_service_with_a_default_for_the_rest() -> None:
    team = rota()
    assert team.policy("shop") == (Level(schedule="primary"),)
    assert team.policy("blog") == () and team.policy(None) == ()


@pytest.mark.parametrize(
    ("text", "name"),
    [("alice", "alice"), ("@alice", "alice"), ("<@U0BOB|bob>", "bob"), ("<@U0BOB>", "bob"), ("U0BOB", "bob"),
     ("@alice_tg", "alice"), ("1003", "carol"), ("@ALICE", "alice")],
)  # fmt: skip
def test_a_person_is_found_by_name_slack_mention_or_telegram_username(text: str, name: str) -> None:
    found = rota().find(text)
    assert found is not None and found.name == name


def test_an_unknown_person_is_not_found() -> None:
    assert rota().find("@mallory") is None
    assert rota().person_of("slack", "U0ALICE") == rota().people["alice"]
    assert rota().person_of("telegram", "U0ALICE") is None
