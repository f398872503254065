"""On-call rotations: who is on call at a moment, and when that changes. Pure: no I/O, no clock.

A :class:`Schedule` is one or more :class:`Layer`\\ s. A layer is a rotation: its ``members`` take turns,
each for ``length_days`` days, handing over at the wall-clock time ``handoff`` in the layer's time zone;
the first member's first shift begins on ``start`` (a weekly rotation hands over on ``start``'s weekday).
A layer may be restricted to a daily :class:`Window` (some weekdays, some hours of the day, possibly
over midnight): outside it the layer covers nobody, which is how follow-the-sun is written (one layer
per region, each with its office hours in its own time zone). At any moment the first layer in the
schedule's order that covers it decides who is on call.

Hand-offs follow the wall clock across daylight-saving changes: counting is done in calendar days, so a
09:00 hand-off stays at 09:00 local time on both sides of a switch. A hand-off time that does not exist
on a spring-forward day (02:30 in Europe/Berlin on 2026-03-29) happens when the clocks jump (03:00
CEST); one that exists twice on a fall-back day happens at its first occurrence.

Temporary :class:`Override`\\ s (stored, so every replica sees them) put a person on call for a schedule
from ``starts_at`` to ``ends_at``; where they overlap the one created last wins.

:class:`Rota` ties it together with the people (how each is reached) and the escalation policies
(:class:`Level`\\ s: a schedule or named people, and how long to wait for an acknowledgement before the
next level is paged).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: How far ahead :meth:`Schedule.next_change` looks before saying "no change".
HORIZON = timedelta(days=120)

_DURATION = re.compile(r"(\d+)\s*([smhdw])", re.IGNORECASE)
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """``90s``, ``10m``, ``2h``, ``1h30m``, ``1d``, ``2w`` → a positive timedelta; ValueError otherwise."""
    compact = text.strip().replace(" ", "")
    if not compact:
        raise ValueError("empty duration")
    pos, seconds = 0, 0
    for found in _DURATION.finditer(compact):
        if found.start() != pos:
            break
        seconds += int(found.group(1)) * _UNIT[found.group(2).lower()]
        pos = found.end()
    if pos != len(compact) or seconds <= 0:
        raise ValueError(f"{text!r} is not a duration like 90s, 10m, 2h, 1h30m or 1d")
    return timedelta(seconds=seconds)


def format_duration(delta: timedelta) -> str:
    """``2h``, ``1h30m``, ``45s``: the inverse of :func:`parse_duration` for display."""
    seconds = int(delta.total_seconds())
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            count, seconds = divmod(seconds, size)
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def parse_clock(text: str) -> time:
    """``09:00`` or ``9:30`` (24-hour wall-clock time) → time; ValueError otherwise."""
    found = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if found is None or int(found.group(1)) > 23 or int(found.group(2)) > 59:
        raise ValueError(f"{text!r} is not a time of day like 09:00")
    return time(int(found.group(1)), int(found.group(2)))


def _wall(at: datetime, zone: ZoneInfo) -> datetime:
    return at.astimezone(zone).replace(tzinfo=None)


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The first instant (UTC) whose wall-clock time in ``zone`` on ``day`` is ``at`` or later.

    For a time that exists once this is simply that time; for one that exists twice (fall back) it is
    the first occurrence; for one skipped by a spring-forward jump it is the instant of the jump.
    """
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _wall(first, zone) == naive:
        return first
    # In a gap: fold=0 maps with the offset before the jump (too late), fold=1 with the offset after
    # it (too early). The jump lies between; find it to the second.
    lo = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    hi = first
    lo_s, hi_s = int(lo.timestamp()), int(hi.timestamp())
    while hi_s - lo_s > 1:
        mid = (lo_s + hi_s) // 2
        if _wall(datetime.fromtimestamp(mid, UTC), zone) >= naive:
            hi_s = mid
        else:
            lo_s = mid
    return datetime.fromtimestamp(hi_s, UTC)


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; ValueError naming it when this system does not know it."""
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(f"unknown time zone {name!r} (an IANA name like Europe/Berlin; install tzdata)") from None


@dataclass(frozen=True)
class Window:
    """The part of each day a layer covers: on ``days`` (0 = Monday) from ``start`` to ``end`` wall-clock
    time. ``end`` at or before ``start`` runs over midnight into the next day (``start == end``: 24 hours);
    the weekday is the day the window starts."""

    days: frozenset[int] = frozenset(range(7))
    start: time = time(0, 0)
    end: time = time(0, 0)

    def spans(self, zone: ZoneInfo, around: datetime) -> list[tuple[datetime, datetime]]:
        """The windows (UTC start, end) that start on the local days from the day before ``around`` to
        eight days after it."""
        today = _wall(around, zone).date()
        found: list[tuple[datetime, datetime]] = []
        for offset in range(-1, 9):
            day = today + timedelta(days=offset)
            if day.weekday() not in self.days:
                continue
            ends_on = day if self.end > self.start else day + timedelta(days=1)
            found.append((local_instant(day, self.start, zone), local_instant(ends_on, self.end, zone)))
        return found


@dataclass(frozen=True)
class Shift:
    """One turn of a rotation: ``member`` is on call from ``start`` to ``end`` (UTC)."""

    member: str
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Layer:
    members: tuple[str, ...]
    zone: ZoneInfo
    handoff: time = time(9, 0)
    length_days: int = 7
    start: date = date(2024, 1, 1)
    window: Window | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("a rotation layer needs at least one member")
        if self.length_days < 1:
            raise ValueError("a rotation's shifts last at least one day")

    def shift(self, at: datetime) -> Shift:
        """The rotation's turn at ``at``, whatever the window."""
        day = _wall(at, self.zone).date()
        if local_instant(day, self.handoff, self.zone) > at:
            day -= timedelta(days=1)
        index = (day - self.start).days // self.length_days
        first = self.start + timedelta(days=index * self.length_days)
        return Shift(
            member=self.members[index % len(self.members)],
            start=local_instant(first, self.handoff, self.zone),
            end=local_instant(first + timedelta(days=self.length_days), self.handoff, self.zone),
        )

    def covers(self, at: datetime) -> bool:
        if self.window is None:
            return True
        return any(start <= at < end for start, end in self.window.spans(self.zone, at))

    def who(self, at: datetime) -> str | None:
        return self.shift(at).member if self.covers(at) else None

    def next_boundary(self, at: datetime) -> datetime:
        """The first instant after ``at`` where this layer may change: a hand-off or a window edge."""
        best = self.shift(at).end
        if self.window is not None:
            for start, end in self.window.spans(self.zone, at):
                for edge in (start, end):
                    if at < edge < best:
                        best = edge
        return best


class Override(BaseModel):
    """``person`` is on call for ``schedule`` from ``starts_at`` to ``ends_at`` (stored; set by ``by``)."""

    model_config = ConfigDict(frozen=True)

    id: str
    schedule: str
    person: str
    starts_at: datetime
    ends_at: datetime
    created_at: datetime
    created_by: str = ""

    def active(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


@dataclass(frozen=True)
class OnCallNow:
    """Who is on call for ``schedule`` at ``at`` (None: nobody covers it), and by what (``override`` or
    the layer's name); ``until``/``then`` say when that changes and to whom (None: not within the horizon)."""

    schedule: str
    at: datetime
    person: str | None
    by: str
    until: datetime | None = None
    then: str | None = None


@dataclass(frozen=True)
class Schedule:
    name: str
    layers: tuple[Layer, ...]
    zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError(f"schedule {self.name!r} has no layers")

    def _override(self, at: datetime, overrides: Iterable[Override]) -> Override | None:
        mine = [o for o in overrides if o.schedule == self.name and o.active(at)]
        return max(mine, key=lambda o: (o.created_at, o.id)) if mine else None

    def source(self, at: datetime, overrides: Iterable[Override] = ()) -> tuple[str | None, str]:
        """(who is on call at ``at``, what decided it: ``override`` or the layer's name, ``none``)."""
        override = self._override(at, overrides)
        if override is not None:
            return override.person, "override"
        for n, layer in enumerate(self.layers, 1):
            if layer.covers(at):
                return layer.shift(at).member, layer.name or f"layer {n}"
        return None, "none"

    def who(self, at: datetime, overrides: Iterable[Override] = ()) -> str | None:
        """The person on call at ``at`` (None when no layer covers it and no override is active)."""
        return self.source(at, overrides)[0]

    def next_change(
        self, at: datetime, overrides: Iterable[Override] = (), horizon: timedelta = HORIZON
    ) -> tuple[datetime, str | None] | None:
        """When, after ``at``, someone else is on call, and who (None: nobody); None within ``horizon``."""
        mine = [o for o in overrides if o.schedule == self.name]
        current = self.who(at, mine)
        limit = at + horizon
        moment = at
        while True:
            edges = [layer.next_boundary(moment) for layer in self.layers]
            edges += [e for o in mine for e in (o.starts_at, o.ends_at) if e > moment]
            moment = min(edges)
            if moment > limit:
                return None
            after = self.who(moment, mine)
            if after != current:
                return moment, after

    def now(self, at: datetime, overrides: Sequence[Override] = ()) -> OnCallNow:
        person, by = self.source(at, overrides)
        change = self.next_change(at, overrides)
        return OnCallNow(
            schedule=self.name,
            at=at,
            person=person,
            by=by,
            until=change[0] if change else None,
            then=change[1] if change else None,
        )


# ------------------------------------------------------------------------------------- people, levels


@dataclass(frozen=True)
class Person:
    """Someone who can be paged, and how: a Slack user id (``U…``), a Telegram user id (and username,
    for matching ``@name`` in Telegram commands), and whether PagerDuty pages them too."""

    name: str
    slack: str | None = None
    telegram: str | None = None
    telegram_username: str | None = None
    pagerduty: bool = False
    display: str = ""

    @property
    def label(self) -> str:
        return self.display or self.name

    @property
    def channels(self) -> tuple[str, ...]:
        """The ways this person is paged, for the thread and the timeline."""
        ways = []
        if self.slack:
            ways.append("Slack DM")
        if self.telegram:
            ways.append("Telegram DM")
        if self.pagerduty:
            ways.append("PagerDuty")
        return tuple(ways)


@dataclass(frozen=True)
class Level:
    """One level of an escalation policy: a schedule's on-call person or named people, and how long to
    wait for an acknowledgement before the next level is paged."""

    schedule: str | None = None
    people: tuple[str, ...] = ()
    after: timedelta = timedelta(minutes=15)

    @property
    def label(self) -> str:
        parts = []
        if self.schedule:
            parts.append(f"schedule {self.schedule}")
        if self.people:
            parts.append(", ".join(self.people))
        return " + ".join(parts) or "nobody"


_SLACK_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")


@dataclass(frozen=True)
class Rota:
    """People, schedules and escalation policies (``policies[service]``, ``default`` for the rest)."""

    people: Mapping[str, Person]
    schedules: Mapping[str, Schedule]
    policies: Mapping[str, tuple[Level, ...]] = field(default_factory=dict)
    default: tuple[Level, ...] = ()

    def policy(self, service: str | None) -> tuple[Level, ...]:
        if service is not None and service in self.policies:
            return self.policies[service]
        return self.default

    def targets(self, level: Level, at: datetime, overrides: Sequence[Override] = ()) -> list[Person]:
        """The people a level pages at ``at``: the schedule's on-call person, then the named people
        (each once; names the config does not know are left out)."""
        names: list[str] = []
        if level.schedule is not None and level.schedule in self.schedules:
            who = self.schedules[level.schedule].who(at, overrides)
            if who is not None:
                names.append(who)
        names.extend(level.people)
        seen: dict[str, Person] = {}
        for name in names:
            if name in self.people and name not in seen:
                seen[name] = self.people[name]
        return list(seen.values())

    def find(self, text: str) -> Person | None:
        """The person ``text`` names: ``alice``, ``@alice``, a Slack mention ``<@U123|alice>`` or user id,
        a Telegram ``@username`` or user id."""
        value = text.strip()
        mention = _SLACK_MENTION.fullmatch(value)
        if mention is not None:
            value = mention.group(1)
        bare = value.removeprefix("@")
        for person in self.people.values():
            if bare in (person.name, person.slack, person.telegram):
                return person
        lowered = bare.lower()
        for person in self.people.values():
            if lowered in (person.name.lower(), (person.telegram_username or "").lower().removeprefix("@")):
                return person
        return None

    def person_of(self, platform: str, user: str) -> Person | None:
        """The person behind a chat user (``slack``/``telegram`` and the platform's user id)."""
        for person in self.people.values():
            if (platform == "slack" and person.slack == user) or (platform == "telegram" and person.telegram == user):
                return person
        return None
