"""The outbox worker: delivers what the bot says about incidents to the sender of each chat target.

Messages are written to the outbox in the same transaction as the change they report
(``services/incidents``, ``services/diagnosis_jobs``), one per chat target; an :class:`OutboxWorker`
claims the due ones under a lease (:meth:`Store.claim_messages`), renders each to chat-neutral blocks
(``render``, normally :func:`bot.core.cards.render_message`: the status card for
``opened``/``updated``/``resolved`` with the top cause once a diagnosis exists, the thread posts) and
hands them, redacted (a text that cannot be redacted is withheld), to the sender of the message's
target. Rules (DESIGN §8, serve issue item 8):

- **order**: an incident's messages to one target go out in the order queued; when one fails, the
  later messages of that incident and target are given back to the store and wait behind it (the
  store holds them back), while other targets go on;
- **pace**: at most one message per ``Pace.interval`` seconds to one lane, and optionally at most
  ``Pace.burst`` per ``Pace.window`` (Telegram groups: 20 a minute). A lane is one chat of a target whose
  sender paces per chat (:class:`~bot.core.chat.PerChat`: a Slack channel, a Telegram chat), else the
  whole target. Lanes do not wait for each other: a batch waits out a lane's interval, but a lane that
  must wait longer (its burst window is full) has its messages given back, each due when the pace allows
  (:data:`MAX_PAUSE`);
- **429**: :class:`~bot.errors.RateLimited` blocks the message's lane for ``retry_after`` seconds and the
  message is offered again then (``retry_message(at=now + retry_after)``);
- **5xx / network**: :class:`~bot.errors.TransientChatError` (or an unexpected exception) retries the
  message after an exponential backoff (``backoff`` × 2ⁿ, capped at ``backoff_cap``);
- **permanent**: any other :class:`~bot.errors.ChatError` is logged with its code and the message
  dropped (marked delivered), so one bad message cannot block its incident forever; ``on_rejected``
  (when given) is told, e.g. to write a refused page on the incident's timeline;
- **coalescing**: an ``updated`` message followed in the batch by another ``updated`` or a
  ``resolved`` of the same incident is not sent: the card is rendered from the incident as it is now,
  so the last one shows the latest state;
- **degraded delivery**: a target that keeps failing for an incident (``degraded_after``: three failures
  over thirty seconds by default) gets one ``delivery_degraded`` event on the incident's timeline, and one
  ``delivery_restored`` when it takes a message again (:mod:`bot.services.delivery_health`); every card
  sent to a target shows a line for each *other* target degraded for the incident
  (:func:`bot.core.cards.with_delivery_notice`), and the other targets' cards are refreshed when it changes;
- **exactly once**: a message is marked delivered right after its sender returns; a worker that dies
  leaves its claimed messages leased, and another worker (or this one after a restart) takes the
  undelivered ones once the lease runs out. A batch stops sending before its lease runs out and gives
  what is left back to the store. (A crash between the send and the mark is the one window where a
  message can be said twice.)

Time is injected (``clock``, ``sleep``), so tests run on a fake clock and never sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bot.core.blocks import Block, redacted
from bot.core.cards import read_diagnosis, with_delivery_notice
from bot.core.chat import ChatSender, PerChat
from bot.core.delivery import DEGRADED_AFTER, DegradedAfter
from bot.core.incidents import Incident, OutboxMessage
from bot.core.models import Diagnosis
from bot.core.store import MESSAGE_LEASE, ClaimedMessage, Store
from bot.errors import ChatError, RateLimited, TransientChatError
from bot.services.delivery_health import DeliveryHealth

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]
#: ``render(message, incident, diagnosis)``: the blocks a message shows.
Render = Callable[[OutboxMessage, Incident, Diagnosis | None], list[Block]]
#: ``target_of(message, incident)``: the name of the sender (key of ``senders``) the message goes to.
TargetOf = Callable[[OutboxMessage, Incident], str]
#: ``on_rejected(message, incident, error)``: told when a sender refused a message for good.
OnRejected = Callable[[OutboxMessage, Incident, ChatError], Awaitable[None]]


@dataclass(frozen=True)
class Pace:
    """How fast one target may be written to: one message per ``interval`` seconds, and when ``burst``
    is set, at most ``burst`` messages in any ``window`` seconds."""

    interval: float = 1.0
    burst: int | None = None
    window: float = 60.0

    def __post_init__(self) -> None:
        if self.interval < 0 or self.window <= 0 or (self.burst is not None and self.burst < 1):
            raise ValueError(f"invalid pace {self!r}")


#: The longest a batch waits for one target beyond its interval (a Telegram group's burst window, say):
#: past it the target's messages are given back, due when its pace allows, and the batch goes on with
#: the other targets, so one slow target never holds up another's messages or retries.
MAX_PAUSE = 2.0

#: What a target gets unless told otherwise: one message a second.
DEFAULT_PACE = Pace(interval=1.0)
#: Slack: about one message a second per channel.
SLACK_PACE = Pace(interval=1.0)
#: Telegram: one message a second per chat, twenty a minute per group.
TELEGRAM_GROUP_PACE = Pace(interval=1.0, burst=20, window=60.0)


@dataclass
class _Gate:
    """The pacing state of one target: when it last sent, its recent sends, a 429 block."""

    pace: Pace
    sent: deque[datetime] = field(default_factory=deque)
    blocked_until: datetime | None = None

    def ready_at(self, now: datetime) -> datetime:
        at = now
        if self.sent:
            at = max(at, self.sent[-1] + timedelta(seconds=self.pace.interval))
        if self.pace.burst is not None and len(self.sent) >= self.pace.burst:
            at = max(at, self.sent[-self.pace.burst] + timedelta(seconds=self.pace.window))
        if self.blocked_until is not None:
            at = max(at, self.blocked_until)
        return at

    def record(self, at: datetime) -> None:
        self.sent.append(at)
        keep = max(1, self.pace.burst or 1)
        while len(self.sent) > keep:
            self.sent.popleft()


# ---------------------------------------------------------------------------------------------- worker


@dataclass
class _Item:
    message: ClaimedMessage
    incident: Incident
    target: str
    #: Where it is paced: ``target`` and, for a per-chat sender, the chat (:func:`lane_of`).
    lane: str


def lane_of(target: str, chat: str | None) -> str:
    """The lane of a target's chat (``slack\x1fC0INCIDENTS``), or of the whole target."""
    return f"{target}\x1f{chat}" if chat else target


def _target_of_lane(lane: str) -> str:
    return lane.split("\x1f", 1)[0]


class OutboxWorker:
    def __init__(
        self,
        store: Store,
        render: Render,
        senders: Mapping[str, ChatSender],
        clock: Clock,
        pace: Pace | Mapping[str, Pace] = DEFAULT_PACE,
        *,
        sleep: Sleep = asyncio.sleep,
        target_of: TargetOf | None = None,
        batch: int = 50,
        lease: timedelta = MESSAGE_LEASE,
        backoff: float = 1.0,
        backoff_cap: float = 60.0,
        on_rejected: OnRejected | None = None,
        degraded_after: DegradedAfter = DEGRADED_AFTER,
    ) -> None:
        if not senders:
            raise ValueError("the outbox needs at least one sender")
        if batch < 1 or lease <= timedelta(0) or backoff <= 0 or backoff_cap < backoff:
            raise ValueError("invalid outbox settings")
        self.store = store
        self.render = render
        self.senders = dict(senders)
        self.clock = clock
        self.sleep = sleep
        self.pace = pace
        self.target_of = target_of or self._default_target
        self.batch = batch
        self.lease = lease
        self.backoff = backoff
        self.backoff_cap = backoff_cap
        self.on_rejected = on_rejected
        self._default = next(iter(self.senders))
        self._gates: dict[str, _Gate] = {}
        self._failures: dict[str, int] = defaultdict(int)
        self._stop: asyncio.Event | None = None
        self.health = DeliveryHealth(store, clock, self.senders, self.target_of, threshold=degraded_after)

    def _default_target(self, message: OutboxMessage, incident: Incident) -> str:
        return message.target if message.target in self.senders else self._default

    def _gate(self, lane: str) -> _Gate:
        gate = self._gates.get(lane)
        if gate is None:
            target = _target_of_lane(lane)
            pace = self.pace if isinstance(self.pace, Pace) else self.pace.get(target, DEFAULT_PACE)
            gate = self._gates[lane] = _Gate(pace)
        return gate

    def _lane(self, target: str, incident: Incident) -> str:
        sender = self.senders.get(target)
        return lane_of(target, sender.lane(incident) if isinstance(sender, PerChat) else None)

    def backoff_delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th transient failure of a message."""
        return float(min(self.backoff_cap, self.backoff * 2 ** max(0, failures - 1)))

    @property
    def _stopping(self) -> bool:
        return self._stop is not None and self._stop.is_set()

    async def run_once(self) -> int:
        """Claim the due messages and deliver them (paced); the number claimed (0: nothing was due)."""
        claimed_at = self.clock()
        claimed = await self.store.claim_messages(self.batch, claimed_at, lease=self.lease)
        if not claimed:
            return 0
        deadline = claimed_at + self.lease * 0.8  # give back what is left well before the lease runs out
        queues = await self._queues(claimed)
        stopped: dict[tuple[str, str], datetime] = {}  # (incident, target) → when its failed message is retried
        while any(queues.values()):
            now = self.clock()
            if self._stopping:
                await self._give_back(queues, stopped, now)
                break
            lane, ready = min(((n, self._gate(n).ready_at(now)) for n, q in queues.items() if q), key=lambda c: c[1])
            if ready > deadline:
                await self._give_back({lane: queues[lane]}, stopped, ready)
                continue
            if ready > now:
                if (ready - now).total_seconds() > max(MAX_PAUSE, self._gate(lane).pace.interval):
                    await self._hand_back(lane, queues[lane], stopped, now)  # a burst window: claim again later
                    continue
                await self._pause((ready - now).total_seconds())
                continue
            item = queues[lane].popleft()
            held = stopped.get((item.message.incident_id, item.target))
            if held is not None:
                await self.store.retry_message(item.message.id, held)
                continue
            await self._deliver(item, queues, stopped)
        return len(claimed)

    async def run_forever(self, stop: asyncio.Event, idle: float = 1.0) -> None:
        """Deliver messages until ``stop`` is set, looking again every ``idle`` seconds when none is due."""
        self._stop = stop
        while not stop.is_set():
            try:
                worked = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store itself failed: wait and try again
                log.exception("outbox worker: the store failed")
                worked = 0
            if not worked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), idle)

    async def _pause(self, seconds: float) -> None:
        """Sleep (the injected way), cut short when the worker is asked to stop."""
        if self._stop is None:
            await self.sleep(seconds)
            return
        sleeping = asyncio.ensure_future(self.sleep(seconds))
        stopping = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({sleeping, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeping, stopping):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _queues(self, claimed: Sequence[ClaimedMessage]) -> dict[str, deque[_Item]]:
        """Per lane, the claimed messages to send in order; superseded card updates are settled here."""
        incidents: dict[str, Incident | None] = {}
        items: list[_Item] = []
        for message in claimed:
            if message.incident_id not in incidents:
                incidents[message.incident_id] = await self.store.get_incident(message.incident_id)
            incident = incidents[message.incident_id]
            if incident is None:
                log.error("outbox message %s: incident %s does not exist; dropped", message.id, message.incident_id)
                await self.store.mark_delivered(message.id, self.clock())
                continue
            target = self.target_of(message, incident)
            items.append(_Item(message, incident, target, self._lane(target, incident)))
        kept: list[_Item] = []
        for n, item in enumerate(items):
            if item.message.kind == "updated" and any(
                later.message.incident_id == item.message.incident_id
                and later.target == item.target
                and later.message.kind in ("updated", "resolved")
                for later in items[n + 1 :]
            ):
                log.debug("outbox message %s: superseded by a later card update", item.message.id)
                await self.store.mark_delivered(item.message.id, self.clock())
                continue
            kept.append(item)
        queues: dict[str, deque[_Item]] = defaultdict(deque)
        for item in kept:
            queues[item.lane].append(item)
        return queues

    async def _give_back(
        self, queues: Mapping[str, deque[_Item]], stopped: Mapping[tuple[str, str], datetime], at: datetime
    ) -> None:
        """Offer the unsent messages again at ``at`` (or behind their incident's failed message)."""
        for queue in queues.values():
            while queue:
                item = queue.popleft()
                await self.store.retry_message(
                    item.message.id, max(at, stopped.get((item.message.incident_id, item.target), at))
                )

    async def _hand_back(
        self, lane: str, queue: deque[_Item], stopped: Mapping[tuple[str, str], datetime], now: datetime
    ) -> None:
        """Give the lane's unsent messages back, each due when the lane's pace would let it go (so they
        come back one by one, not all at once), rather than hold the batch while the lane waits."""
        gate = self._gate(lane)
        ahead = _Gate(gate.pace, deque(gate.sent), gate.blocked_until)
        while queue:
            item = queue.popleft()
            at = ahead.ready_at(now)
            ahead.record(at)
            await self.store.retry_message(
                item.message.id, max(at, stopped.get((item.message.incident_id, item.target), at))
            )

    async def _deliver(
        self, item: _Item, queues: Mapping[str, deque[_Item]], stopped: dict[tuple[str, str], datetime]
    ) -> None:
        message, target = item.message, item.target
        incident = await self.store.get_incident(message.incident_id) or item.incident  # as it is now
        gate = self._gate(item.lane)
        sender = self.senders.get(target)
        if sender is None:
            log.error("outbox message %s: no sender for target %r; dropped", message.id, target)
            await self.store.mark_delivered(message.id, self.clock())
            return
        gate.record(self.clock())
        try:
            diagnosis = None
            if message.kind != "post" or not message.payload:
                diagnosis = read_diagnosis(await self.store.get_diagnosis(message.incident_id))
            blocks = self.render(message, incident, diagnosis)
            if message.kind != "post":  # a card: say which other targets are behind
                blocks = with_delivery_notice(blocks, await self.health.others_degraded(incident, target))
            await sender.send(message, redacted(blocks), incident)
        except asyncio.CancelledError:
            raise  # shutting down: the message stays leased and is offered again once the lease runs out
        except RateLimited as exc:
            at = self.clock() + timedelta(seconds=exc.retry_after)
            log.warning("outbox: %s rate limited; waiting %.1fs (message %s)", target, exc.retry_after, message.id)
            gate.blocked_until = max(at, gate.blocked_until or at)
            stopped[(message.incident_id, target)] = at
            await self.store.retry_message(message.id, at)
            await self._give_back({item.lane: queues[item.lane]}, stopped, at)  # the whole lane waits
            await self.health.failed(incident, target, exc.detail, exc.code)
        except ChatError as exc:
            if not isinstance(exc, TransientChatError):
                log.error("outbox message %s to %s rejected for good (%s); dropped", message.id, target, exc.code)
                self._failures.pop(message.id, None)
                await self.store.mark_delivered(message.id, self.clock())
                await self._rejected(message, incident, exc)
                return
            await self._retry_later(message, target, stopped, exc.code)
            await self.health.failed(incident, target, exc.detail, exc.code)
        except Exception as exc:  # a sender or renderer bug: retry like a transient failure, loudly
            log.exception("outbox message %s to %s: unexpected failure", message.id, target)
            await self._retry_later(message, target, stopped, type(exc).__name__)
            await self.health.failed(incident, target, f"unexpected {type(exc).__name__}", "unexpected")
        else:
            self._failures.pop(message.id, None)
            await self.store.mark_delivered(message.id, self.clock())
            await self.health.delivered(incident, target)

    async def _rejected(self, message: ClaimedMessage, incident: Incident, error: ChatError) -> None:
        if self.on_rejected is None:
            return
        try:
            await self.on_rejected(message, incident, error)
        except Exception:  # the message is dropped either way; only the record of it is lost
            log.exception("outbox message %s: recording its rejection failed", message.id)

    async def _retry_later(
        self, message: ClaimedMessage, target: str, stopped: dict[tuple[str, str], datetime], code: str
    ) -> None:
        self._failures[message.id] += 1
        delay = self.backoff_delay(self._failures[message.id])
        at = self.clock() + timedelta(seconds=delay)
        log.warning("outbox message %s to %s failed (%s); retrying in %.1fs", message.id, target, code, delay)
        stopped[(message.incident_id, target)] = at
        await self.store.retry_message(message.id, at)
