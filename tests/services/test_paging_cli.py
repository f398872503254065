"""``incident-bot oncall`` and ``oncall override`` as a user runs them, on the README's complete example
configuration and a real SQLite store: who is on call at a time (across the spring-forward switch, in
each schedule's time zone, follow-the-sun layers included), overrides kept in the store, JSON output,
and bad input (exit 2 with one line), no rotation (exit 1). The example also builds the rota and the
escalation policies the pager uses."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError
from bot.services.paging import paging_options, rota_from_settings

#: The complete example of the README's on-call section (kept identical to it).
EXAMPLE = """\
services:
  shop:
    match: {labels: {service: shop}}
    url: https://shop.example.com/healthz
    chat: {slack_channel: C0123456, telegram_chat: "-1001234567890"}
    escalation:                       # this service's policy; others use oncall.escalation
      - {schedule: primary, after: 10m}
      - {schedule: secondary, after: 15m}
      - {people: [dana]}

oncall:
  people:                             # everyone who can be paged, and how
    alice: {name: Alice, slack: U01ALICE, telegram: 111111111, telegram_username: alice_ops, pagerduty: true}
    bob:   {slack: U01BOB, telegram: 222222222, pagerduty: true}
    carol: {slack: U01CAROL}
    dana:  {name: Dana (eng manager), slack: U01DANA, pagerduty: true}
    kenji: {slack: U01KENJI, telegram: 333333333}
    maria: {slack: U01MARIA}
  schedules:
    primary:                          # one weekly rotation, handed over Mondays 09:00 Berlin time
      time_zone: Europe/Berlin
      rotation: weekly                # daily, weekly, or a number of days like 3d
      handoff: "09:00"                # quote times: YAML reads 10:30 as a number
      start: 2026-01-05               # alice's first week (a Monday: hand-offs are on Mondays)
      members: [alice, bob, carol]
    secondary:                        # follow the sun: the first layer covering the moment decides
      layers:
        - {name: europe, time_zone: Europe/Berlin, days: [mon, tue, wed, thu, fri], hours: "08:00-18:00",
           rotation: daily, handoff: "08:00", members: [carol, bob]}
        - {name: americas, time_zone: America/New_York, days: [mon, tue, wed, thu, fri], hours: "09:00-18:00",
           members: [maria]}
        - {name: apac, time_zone: Asia/Tokyo, members: [kenji]}
  escalation:                         # the default policy
    - {schedule: primary, after: 15m}
    - {people: [dana]}
  storm_window: 10m                   # one page per service within it, with a count
  blip_grace: 5m                      # a probe that found the site answering defers the page this long
  probe_wait: 2m                      # page even if the confirmation probe has not reported by then
  slack_url: https://acme.slack.com   # for links to threads in pages and on PagerDuty

pagerduty:
  severity: critical                  # PAGERDUTY_ROUTING_KEY (and PAGERDUTY_EVENTS_URL) come from the environment
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *args], check=False, capture_output=True, text=True, timeout=60)


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "incident-bot.yaml"
    path.write_text(f"database_url: sqlite+aiosqlite:///{tmp_path / 'bot.db'}\n" + EXAMPLE)
    return str(path)


def test_the_example_builds_the_rota_the_policies_and_the_paging_options(config: str) -> None:
    settings = load_settings(config, env={"PAGERDUTY_ROUTING_KEY": "k" * 32})
    rota = rota_from_settings(settings)
    assert rota is not None
    assert [level.label for level in rota.policy("shop")] == ["schedule primary", "schedule secondary", "dana"]
    assert [level.after for level in rota.policy("blog")] == [timedelta(minutes=15), timedelta(minutes=15)]
    assert rota.people["alice"].telegram == "111111111" and rota.people["dana"].label == "Dana (eng manager)"
    options = paging_options(settings, slack_dm=True, telegram_dm=False)
    assert options.pagerduty and options.direct == frozenset({"slack_dm"})
    # Wednesday 2026-03-25 10:00 UTC: day 814 of Europe's daily rotation (from 2024-01-01): carol's
    at = datetime(2026, 3, 25, 10, 0, tzinfo=UTC)
    assert rota.schedules["secondary"].source(at) == ("carol", "europe")
    assert rota.schedules["secondary"].source(at + timedelta(hours=8)) == ("maria", "americas")
    assert rota.schedules["secondary"].source(datetime(2026, 3, 28, 12, 0, tzinfo=UTC)) == ("kenji", "apac")


def test_oncall_shows_who_is_on_call_and_the_hand_off_after_the_dst_switch(config: str) -> None:
    done = cli("oncall", "--config", config, "--at", "2026-03-29T12:00:00Z")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "on call at 2026-03-29 12:00:00 UTC"
    # From 2026-01-05 week 11 (2026-03-23) is carol's; the next Monday 09:00 is CEST, 07:00 UTC
    assert "primary    carol (rotation) until Mon 2026-03-30 09:00 CEST (07:00 UTC), then alice" in lines
    # Sunday: Tokyo's layer until Europe's office opens Monday 08:00 CEST (the schedule's own zone is UTC)
    assert "secondary  kenji (apac) until Mon 2026-03-30 06:00 UTC (06:00 UTC), then bob" in lines


def test_an_override_from_the_cli_is_kept_in_the_store_and_shown(config: str) -> None:
    done = cli("oncall", "override", "@dana", "2h", "--schedule", "primary", "--start", "2026-03-29T12:00:00+00:00",
               "--actor", "ops", "--config", config)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == "dana is on call for primary from Sun 2026-03-29 14:00 CEST until Sun 2026-03-29 16:00 CEST\n"
    shown = cli("oncall", "--config", config, "--at", "2026-03-29T13:00:00Z", "--json")
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    primary = next(s for s in body["schedules"] if s["schedule"] == "primary")
    assert primary == {"schedule": "primary", "time_zone": "Europe/Berlin", "person": "dana", "by": "override",
                       "until": "2026-03-29T14:00:00+00:00", "then": "carol"}  # fmt: skip
    assert [(o["person"], o["created_by"]) for o in body["overrides"]] == [("dana", "ops")]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("oncall", "--at", "yesterday"), "--at: 'yesterday' is not an ISO 8601 time"),
        (("oncall", "override", "mallory", "2h"), "'mallory' is not a person of oncall.people"),
        (("oncall", "override", "bob", "2 hours"), "is not a duration"),
        (("oncall", "override", "dana", "1h"), "say which schedule: one of primary, secondary"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(config: str, args: tuple[str, ...], says: str) -> None:
    done = cli(*args, "--config", config)
    assert done.returncode == 2, done.stdout
    assert says in done.stderr and len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_without_an_oncall_section_oncall_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "plain.yaml"
    path.write_text(f"database_url: sqlite+aiosqlite:///{tmp_path / 'bot.db'}\n")
    done = cli("oncall", "--config", str(path))
    assert done.returncode == 1 and "no on-call rotation is configured" in done.stderr


@pytest.mark.parametrize(
    ("change", "field", "problem"),
    [
        ("time_zone: Europe/Berlin", "time_zone: Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ('handoff: "09:00"', "handoff: 10:30", "write the hand-off time in quotes"),
        ("members: [alice, bob, carol]", "members: [alice, zoe]", "names 'zoe', who is not under oncall.people"),
        ("{people: [dana]}\n\noncall", "{people: [dan]}\n\noncall", "names 'dan', who is not under oncall.people"),
        ("after: 10m", "after: soon", "is not a duration"),
        ('hours: "08:00-18:00"', 'hours: "8 to 6"', "must be like 08:00-20:00"),
    ],
)
def test_a_bad_oncall_config_is_refused_naming_the_problem(
    tmp_path: Path, change: str, field: str, problem: str
) -> None:
    path = tmp_path / "bad.yaml"
    assert change in EXAMPLE
    path.write_text(EXAMPLE.replace(change, field, 1))
    with pytest.raises(ConfigError) as refused:
        load_settings(str(path), env={})
    assert problem in refused.value.user_message()
