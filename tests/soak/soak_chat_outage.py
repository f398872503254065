"""Chat outage soak (issue #9 item 11): Slack answers 503 for ten minutes while alerts keep arriving, then
recovers; every message is delivered once, in order, within pace, and the incident shows a visible
degraded-delivery state meanwhile.

One `incident-bot serve` (SQLite by default) with Slack on the local fake Slack Web API (one channel,
Slack's posting limit of about one message a second enforced by the fake) and Telegram on the local fake
Bot API (a forum chat: a topic per incident), every incident going to both. Each service is configured
with a URL that answers 502, so each incident's diagnosis posts the confirmation probe and its result
into the thread. The run:

1. ``--before`` seconds of normal service: the first incidents open and reach both chats;
2. the fake Slack answers every ``chat.postMessage`` and ``chat.update`` with HTTP 503 for ``--outage``
   seconds (default 600) while a new incident opens every ``--every`` seconds and every third tick resolves
   the oldest open one; every ``--poll`` seconds the script reads ``GET /api/incidents/{id}`` of each
   incident, as a dashboard would;
3. Slack answers again; the script waits (at most ``--drain`` seconds) until nothing is waiting.

Checked, and printed as a table:

- during: each incident whose Slack messages waited at least ``--visible-after`` seconds of the outage has
  one ``delivery_degraded`` event and was seen ``degraded`` in the API's ``delivery.slack``; its Telegram
  card (every version sent or edited, from the fake's call log) warned "⚠ Slack delivery delayed since …",
  unless no card reached Telegram between the two events (Telegram's own 20-a-minute pace holds its
  backlog: counted and printed), and no card sent in between lacked the line; Telegram kept delivering;
- after: each of them has one ``delivery_restored`` event after it, the API says ``ok`` with nothing waiting,
  and no Telegram card warns any more;
- once and in order: every outbox message delivered; one Slack root per incident; each Slack message's
  outbox id once; each incident's Slack replies exactly its ``post`` messages in the order queued;
- pace: successful ``chat.postMessage`` calls at least 0.95 s apart, none refused by the fake's rate limit;
  nothing got through to Slack during the outage.

Exit status 0 when every check passes, 1 when one fails.

    .venv/bin/python tests/soak/soak_chat_outage.py [--outage 600] [--every 20] [--store sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):  # run as a file: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bot.lab.process import free_port
from bot.testing.http_fake import FakeHttpServer
from bot.testing.slack_api import FakeMessage, FakeSlack
from bot.testing.telegram_api import FORUM_CHAT_ID, FakeTelegram
from tests.soak._serve import HOOK, TOKENS, Rows, Serve, database

SIGNING_SECRET = "soak-outage-signing-secret-0123456789"
CHANNEL = "C0OUTAGE"
MAX_SERVICES = 200
API = {"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_API_TOKEN']}"}
WARNING = "⚠ Slack delivery delayed since"
CARD = re.compile(r"[🔴🟠✅]\s*Incident #(\d+):")


class BadGateway(BaseHTTPRequestHandler):
    """Every service's URL: answers 502, so each incident's confirmation probe finds the site failing."""

    def do_GET(self) -> None:
        self.send_response(502)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        return


def webhook(n: int, probe_port: int, state: str) -> bytes:
    service = f"svc-{n}"
    alert = {
        "status": state,
        "labels": {"alertname": "HTTP5xx", "service": service, "status": "502",
                   "instance": f"http://127.0.0.1:{probe_port}/{service}"},
        "annotations": {"summary": f"{service} returns 502"},
        "startsAt": "2026-11-30T05:59:12.403871648Z",
        "endsAt": "2026-11-30T06:59:12Z" if state == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example:9090/graph",
        "fingerprint": f"{n:016x}",
    }  # fmt: skip
    body = {
        "receiver": "incident-bot", "status": state, "alerts": [alert],
        "groupLabels": {"alertname": "HTTP5xx", "service": service},
        "commonLabels": {"alertname": "HTTP5xx", "service": service, "status": "502"},
        "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093", "version": "4",
        "groupKey": f'{{}}:{{alertname="HTTP5xx", service="{service}"}}', "truncatedAlerts": 0,
    }  # fmt: skip
    return json.dumps(body).encode()


def config_text(url: str, port: int, probe_port: int) -> str:
    lines = [
        f"database_url: {url}",
        f"listen: 127.0.0.1:{port}",
        f"slack: {{channel: {CHANNEL}}}",
        f"telegram: {{chat: '{FORUM_CHAT_ID}'}}",
        "services:",
    ]
    for n in range(1, MAX_SERVICES + 1):
        lines.append(
            f"  svc-{n}: {{match: {{labels: {{service: svc-{n}}}}}, hosts: [], url: 'http://127.0.0.1:{probe_port}/svc-{n}'}}"
        )
    return "\n".join(lines) + "\n"


@dataclass
class Seen:
    """What the script saw of one incident while polling."""

    opened_at: float
    api_degraded_at: float | None = None
    max_waiting: int = 0
    last_error: str | None = None


@dataclass
class Run:
    base: str
    probe_port: int
    slack: FakeSlack
    telegram: FakeTelegram
    client: httpx.Client
    seen: dict[str, Seen] = field(default_factory=dict)
    open_services: list[tuple[int, str]] = field(default_factory=list)
    next_service: int = 1
    api_errors: int = 0

    def alert(self, n: int, state: str) -> str:
        answer = self.client.post(
            f"{self.base}/alerts/alertmanager", content=webhook(n, self.probe_port, state),
            headers={**HOOK, "Content-Type": "application/json"},
        )  # fmt: skip
        if answer.status_code != 202:
            raise RuntimeError(f"svc-{n} {state}: answered {answer.status_code} {answer.text[:200]}")
        return str(answer.json()["results"][0]["incident"])

    def open_one(self) -> str:
        n = self.next_service
        self.next_service += 1
        incident = self.alert(n, "firing")
        self.seen.setdefault(incident, Seen(opened_at=time.time()))
        self.open_services.append((n, incident))
        return incident

    def resolve_oldest(self) -> None:
        if len(self.open_services) > 1:
            n, _ = self.open_services.pop(0)
            self.alert(n, "resolved")

    def shown(self, incident: str) -> dict[str, Any] | None:
        try:
            answer = self.client.get(f"{self.base}/api/incidents/{incident}", headers=API)
        except httpx.TransportError:
            self.api_errors += 1
            return None
        if answer.status_code != 200:
            self.api_errors += 1
            return None
        body: dict[str, Any] = answer.json()
        return body

    def cards(self) -> dict[str, str]:
        """Each incident's Telegram card as it reads now (the first bot message of its topic)."""
        found: dict[str, str] = {}
        for topic in self.telegram.topics(FORUM_CHAT_ID):
            mine = [m for m in self.telegram.messages(FORUM_CHAT_ID, thread_id=topic.thread_id) if m.from_bot]
            if mine and mine[0].text and mine[0].text.startswith(("🔴", "🟠", "✅")):
                number = mine[0].text.split("Incident #", 1)[-1].split(":", 1)[0]
                found[number] = mine[0].text
        return found

    def poll(self) -> None:
        now = time.time()
        for incident, seen in self.seen.items():
            body = self.shown(incident)
            slack = (body or {}).get("delivery", {}).get("slack") or {}
            if slack.get("state") == "degraded":
                seen.api_degraded_at = seen.api_degraded_at or now
                seen.last_error = slack.get("last_error")
            seen.max_waiting = max(seen.max_waiting, int(slack.get("waiting") or 0))


def card_versions(telegram: FakeTelegram) -> dict[str, list[tuple[float, str]]]:
    """Every version of each incident's Telegram card as it was sent or edited: (time, text), in order."""
    found: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for call in telegram.calls:
        text = str(call.params.get("text") or "")
        card = CARD.search(text)
        if call.ok and call.method in ("sendMessage", "editMessageText") and card:
            found[card.group(1)].append((call.at, text))
    return found


def slack_messages(slack: FakeSlack) -> list[FakeMessage]:
    return [m for root in slack.history(CHANNEL) for m in slack.thread(CHANNEL, root.ts)]


def incident_of(message: FakeMessage) -> str:
    return str(((message.metadata or {}).get("event_payload") or {}).get("incident_id"))


def timestamp(value: object) -> float:
    """A time read from the database (a datetime, or SQLite's text of one; naive means UTC) as epoch seconds."""
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return (when if when.tzinfo is not None else when.replace(tzinfo=UTC)).timestamp()


def at(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).strftime("%H:%M:%S")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outage", type=float, default=600.0, help="seconds Slack answers 503")
    parser.add_argument("--before", type=float, default=30.0, help="seconds of normal service first")
    parser.add_argument("--every", type=float, default=20.0, help="seconds between new incidents")
    parser.add_argument("--poll", type=float, default=10.0, help="seconds between looks at the API")
    parser.add_argument(
        "--visible-after", type=float, default=120.0,
        help="an incident whose Slack messages waited this long in the outage must show degraded",
    )  # fmt: skip
    parser.add_argument("--drain", type=float, default=600.0, help="seconds to wait for the backlog afterwards")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="incident-bot-soak-outage-"))
    port = free_port()
    probe = ThreadingHTTPServer(("127.0.0.1", 0), BadGateway)
    threading.Thread(target=probe.serve_forever, name="bad-gateway", daemon=True).start()
    telegram = FakeTelegram(clock=time.time)
    with (
        database(args.store, workdir) as url,
        FakeSlack(channels={CHANNEL: "outage"}) as slack,
        FakeHttpServer(telegram, name="fake-telegram") as telegram_server,
        httpx.Client(timeout=30) as client,
    ):
        slack.strict_rate(1.0, burst=3)  # Slack's posting limit: the bot must never trip it
        config = workdir / "incident-bot.yaml"
        config.write_text(config_text(url, port, probe.server_address[1]))
        env = {**TOKENS, "XDG_STATE_HOME": str(workdir / "state"), "SLACK_BOT_TOKEN": slack.token,
               "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": slack.api_url,
               "TELEGRAM_BOT_TOKEN": telegram.token, "TELEGRAM_API_URL": telegram_server.url + "/bot",
               "PTB_TIMEDELTA": "true"}  # fmt: skip
        serve = Serve(workdir, config, port, env)
        if args.store == "postgresql":
            serve.upgrade()
        serve.start()
        run = Run(serve.base, probe.server_address[1], slack, telegram, client)
        rows = Rows(url, workdir)
        try:
            started = time.time()
            for _ in range(2):
                run.open_one()
            while time.time() < started + args.before:
                time.sleep(1)
            slack.fail(503, for_seconds=args.outage, methods=["chat.postMessage", "chat.update"])
            run.open_one()  # its card is the first call the outage answers
            while not slack.calls_to("chat.postMessage", ok=False) and time.time() < started + args.before + 30:
                time.sleep(0.1)
            failed = [c for c in slack.calls if c.status == 503]
            outage_start = failed[0].at if failed else time.time()
            outage_end = outage_start + args.outage
            print(
                f"outage from {at(outage_start)} to {at(outage_end)} ({args.outage:.0f} s); workdir {workdir}",
                flush=True,
            )
            tick, next_open, next_poll = 0, time.time() + args.every, time.time()
            telegram_before = len(telegram.calls)
            while time.time() < outage_end:
                now = time.time()
                if now >= next_open and run.next_service <= MAX_SERVICES:
                    tick += 1
                    run.open_one()
                    if tick % 3 == 0:
                        run.resolve_oldest()
                    next_open += args.every
                if now >= next_poll:
                    run.poll()
                    next_poll += args.poll
                time.sleep(0.5)
            telegram_during = len(telegram.calls) - telegram_before
            deadline = time.time() + args.drain
            while time.time() < deadline:
                run.poll()
                waiting = rows("SELECT count(*) FROM outbox WHERE delivered_at IS NULL")[0][0]
                states = [run.shown(i) for i in run.seen]
                degraded = [
                    b for b in states if b and (b.get("delivery", {}).get("slack") or {}).get("state") == "degraded"
                ]
                if waiting == 0 and not degraded:
                    break
                time.sleep(args.poll)
            drained_at = time.time()
            time.sleep(5)  # anything still on its way
            final = {i: run.shown(i) for i in run.seen}
            cards = run.cards()
            outbox = rows("SELECT id, incident_id, target, kind, delivered_at, created_at FROM outbox ORDER BY seq")
        finally:
            serve.stop()
            probe.shutdown()

    # ------------------------------------------------------------------------------------------ checks
    posted = slack_messages(slack)
    roots = slack.history(CHANNEL)
    outbox_ids = [m.outbox_id for m in posted]
    undelivered = [r for r in outbox if r[4] is None]
    posts: dict[str, list[str]] = defaultdict(list)
    for mid, incident, target, kind, _, _ in outbox:
        if target == "slack" and kind == "post":
            posts[str(incident)].append(str(mid))
    out_of_order = []
    for root in roots:
        thread = slack.thread(CHANNEL, root.ts)
        incident = incident_of(root)
        if [m.outbox_id for m in thread[1:]] != posts.get(incident, []):
            out_of_order.append(incident)
    ok_posts = sorted(c.at for c in slack.calls_to("chat.postMessage", ok=True))
    gaps = [b - a for a, b in itertools.pairwise(ok_posts)]
    limited = [c for c in slack.calls if c.status == 429]
    through_during = [c for c in slack.calls if c.ok and outage_start + 1 < c.at < outage_end - 1
                      and c.method in ("chat.postMessage", "chat.update")]  # fmt: skip
    answered_503 = sum(1 for c in slack.calls if c.status == 503)
    late = [c for c in slack.calls if c.ok and c.at >= outage_end and c.method in ("chat.postMessage", "chat.update")]
    caught_up = max((c.at for c in late), default=outage_end) - outage_end

    def events(incident: str, kind: str) -> list[dict[str, Any]]:
        body = final.get(incident) or {}
        return [e for e in body.get("timeline", []) if e["kind"] == kind and e.get("data", {}).get("target") == "slack"]

    # the incidents with a Slack message that waited at least --visible-after seconds inside the outage
    waited = {
        str(incident) for _, incident, target, _, delivered, created in outbox
        if target == "slack" and delivered is not None and timestamp(delivered) >= outage_end
        and max(timestamp(created), outage_start) + args.visible_after <= outage_end
    }  # fmt: skip
    expected = [i for i in run.seen if i in waited]
    degraded_once = [i for i in expected if len(events(i, "delivery_degraded")) == 1]
    api_seen = [i for i in expected if run.seen[i].api_degraded_at is not None]
    versions = card_versions(telegram)
    card_shown, card_behind, card_wrong = [], [], []
    for i in expected:
        went = events(i, "delivery_degraded")
        back = events(i, "delivery_restored")
        began = timestamp(went[0]["at"]) if went else float("inf")  # never degraded: no window to check
        ended = timestamp(back[0]["at"]) if back else float("inf")
        during = [text for when, text in versions.get(i, []) if began + 5 < when < ended - 5]
        if any(WARNING not in text for text in during):
            card_wrong.append(i)  # a card that reached Telegram while Slack was degraded, without the line
        if any(WARNING in text for _, text in versions.get(i, [])):
            card_shown.append(i)
        elif went and not during:
            card_behind.append(i)  # no card reached Telegram between the two events
    telegram_lag = sorted(
        timestamp(delivered) - timestamp(created) for _, _, target, _, delivered, created in outbox
        if target == "telegram" and delivered is not None and outage_start <= timestamp(created) <= outage_end
    )  # fmt: skip
    restored_once = [
        i for i in expected
        if len(events(i, "delivery_restored")) == 1
        and events(i, "delivery_restored")[0]["at"] > events(i, "delivery_degraded")[-1]["at"]
    ]  # fmt: skip
    api_ok = [
        i for i, body in final.items()
        if body is not None and (body.get("delivery", {}).get("slack") or {}).get("state", "ok") == "ok"
        and (body.get("delivery", {}).get("slack") or {}).get("waiting", 0) == 0
    ]  # fmt: skip
    still_warning = [n for n, text in cards.items() if WARNING in text]
    all_degraded = [i for i in run.seen if events(i, "delivery_degraded")]
    extra_events = [
        i for i in run.seen if len(events(i, "delivery_degraded")) > 1 or len(events(i, "delivery_restored")) > 1
    ]
    shown_after: list[float] = []  # the degraded event after the first failure of the incident's Slack message
    restored_after: list[float] = []
    for i in all_degraded:
        first = events(i, "delivery_degraded")[0]
        shown_after.append(timestamp(first["at"]) - timestamp(first["data"]["since"]))
        back = events(i, "delivery_restored")
        if back:
            restored_after.append(timestamp(back[0]["at"]) - outage_end)
    sample = next((events(i, "delivery_degraded")[0]["text"] for i in all_degraded), "none")
    sample_back = next(
        (events(i, "delivery_restored")[0]["text"] for i in all_degraded if events(i, "delivery_restored")), "none"
    )
    n = len(expected)
    checks = [
        ("incidents opened / resolved", f"{len(run.seen)} / {len(run.seen) - len(run.open_services)}",
         len(run.seen) > 3),
        ("Slack 503 answers during the outage", str(answered_503), answered_503 > 0),
        ("Slack calls that got through during it", str(len(through_during)), not through_during),
        ("Telegram calls during the outage", str(telegram_during), telegram_during > 0),
        ("incidents that had to show degraded", str(n), n > 0),
        ("  one delivery_degraded event", f"{len(degraded_once)} of {n}", len(degraded_once) == n),
        ("  API delivery.slack seen degraded", f"{len(api_seen)} of {n}", len(api_seen) == n),
        ("  Telegram card showed the warning", f"{len(card_shown)} of {n}, {len(card_behind)} got no card in time",
         len(card_shown) + len(card_behind) == n),
        ("  Telegram cards sent meanwhile without it", str(len(card_wrong)), not card_wrong),
        ("  one delivery_restored after it", f"{len(restored_once)} of {n}", len(restored_once) == n),
        ("incidents with a second degraded/restored", str(len(extra_events)), not extra_events),
        ("API slack ok, nothing waiting, after", f"{len(api_ok)} of {len(final)}", len(api_ok) == len(final)),
        ("Telegram cards still warning after", str(len(still_warning)), not still_warning),
        ("outbox messages undelivered", f"{len(undelivered)} of {len(outbox)}", not undelivered),
        ("Slack roots (one per incident)", f"{len(roots)} for {len(run.seen)}", len(roots) == len(run.seen)),
        ("Slack messages / outbox ids posted twice", f"{len(posted)} / {len(outbox_ids) - len(set(outbox_ids))}",
         None not in outbox_ids and len(outbox_ids) == len(set(outbox_ids))),
        ("incidents whose replies are off order", str(len(out_of_order)), not out_of_order),
        ("chat.postMessage min gap / under 0.95 s", f"{min(gaps, default=0):.3f} s / {sum(g < 0.95 for g in gaps)}",
         all(g >= 0.95 for g in gaps)),
        ("429s from the fake's rate limit", str(len(limited)), not limited),
        ("API reads that failed", str(run.api_errors), run.api_errors == 0),
    ]  # fmt: skip
    width = max(len(name) for name, _, _ in checks)
    print(
        f"chat outage soak ({args.store}; Slack 503 for {args.outage:.0f} s; a new incident every {args.every:.0f} s)"
    )
    for name, value, ok in checks:
        print(f"  {'ok  ' if ok else 'FAIL'} {name:<{width}}  {value}")
    med = statistics.median(shown_after) if shown_after else float("nan")
    print(f"  degraded recorded after the first failure of the incident's Slack message: median {med:.0f} s, max "
          f"{max(shown_after, default=float('nan')):.0f} s ({len(all_degraded)} incidents)")  # fmt: skip
    lag = statistics.median(telegram_lag) if telegram_lag else float("nan")
    print(f"  Telegram meanwhile (one forum group, 20 messages a minute): a message queued in the outage went out "
          f"after median {lag:.0f} s, max {max(telegram_lag, default=float('nan')):.0f} s")  # fmt: skip
    print(f"  restored recorded after Slack came back: min {min(restored_after, default=float('nan')):.0f} s, max "
          f"{max(restored_after, default=float('nan')):.0f} s")  # fmt: skip
    print(f"  backlog: {len(late)} Slack calls after the outage, the last {caught_up:.0f} s after it ended "
          f"(drained {drained_at - outage_end:.0f} s after); most waiting for one incident: "
          f"{max((s.max_waiting for s in run.seen.values()), default=0)}")  # fmt: skip
    print(f"  e.g. «{sample}»")
    print(f"       «{sample_back}»")
    return 0 if all(ok for _, _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
