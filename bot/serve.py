"""``incident-bot serve``: the HTTP API on the store, owned by one async lifespan.

Built from the settings once: the SQL store (the embedded SQLite database is migrated on start; a
PostgreSQL one needs ``incident-bot db upgrade``), the incident service with routing, the FastAPI
app run by uvicorn and, on the same event loop, the diagnosis worker that runs the queued jobs (its
SSH commands audited to the store) and the outbox worker that delivers what the bot says about
incidents to each incident's chats (``bot/chats.py``: Slack, Telegram, or with neither configured the
console sender: a thread per incident on stderr and in the log). When uvicorn stops (SIGINT/SIGTERM)
both workers are stopped too: a job it was running stays leased and is run again once the lease
expires; messages not yet sent are given back to the outbox.
Refuses to listen on a non-loopback address while a token is unset (DESIGN §4.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import ipaddress
import os
import signal
import socket
import threading
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn
from sqlalchemy import URL

from bot.adapters.audit import StoreAuditor
from bot.adapters.db import SqlStore, create_engine, upgrade
from bot.adapters.http import GrafanaSigning, build_api
from bot.adapters.log_redaction import install_log_redaction
from bot.adapters.metrics import Metrics
from bot.adapters.probe import HttpxProber
from bot.app import diagnose_incident
from bot.chats import Chats, Inbound, build_chats, chat_operations, pager, reveal
from bot.config import Settings
from bot.core.cards import render_message
from bot.core.incidents import Incident
from bot.core.models import Diagnosis
from bot.core.ports import Reporter
from bot.core.store import Store
from bot.errors import ConfigError
from bot.runbook.registry import load as load_runbooks
from bot.services.announce import Announcer
from bot.services.approvals import ApprovalWorker
from bot.services.diagnosis_jobs import DiagnosisWorker
from bot.services.escalation import EscalationWorker
from bot.services.incidents import IncidentService
from bot.services.outbox import OutboxWorker
from bot.services.paging import Pager
from bot.services.routing import group_key, route


def listen_address(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError("listen", f"{settings.listen!r} is not HOST:PORT")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> None:
    """Fail closed: a public listener needs both tokens (alerts and the API must never be open to
    anyone), and Slack's HTTP mode its signing secret; a Telegram webhook always needs its secret."""
    secrets = settings.secrets
    if settings.telegram.webhook_url and secrets.telegram_bot_token and secrets.telegram_webhook_secret is None:
        raise ConfigError("telegram.webhook_url", "a Telegram webhook needs TELEGRAM_WEBHOOK_SECRET")
    host, _ = listen_address(settings)
    if is_loopback(host):
        return
    required = [
        ("INCIDENT_BOT_WEBHOOK_TOKEN", secrets.webhook_token),
        ("INCIDENT_BOT_API_TOKEN", secrets.api_token),
    ]
    if secrets.slack_bot_token is not None and secrets.slack_app_token is None:  # Slack's HTTP mode
        required.append(("SLACK_SIGNING_SECRET", secrets.slack_signing_secret))
    missing = [name for name, value in required if value is None]
    if missing:
        raise ConfigError("listen", f"{host} is not a loopback address and {' and '.join(missing)} is unset")


def _one_process_per_sqlite_file(url: URL, resources: contextlib.AsyncExitStack) -> None:
    """The embedded SQLite store is for one process: a second ``serve`` on the same file refuses to
    start (an exclusive ``flock`` on ``<file>.lock``, released when this process ends however it ends)."""
    database = url.database
    if url.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return
    lock_path = Path(f"{database}.lock")
    handle = resources.enter_context(lock_path.open("a"))
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError(
            "database_url",
            f"another incident-bot serve already uses {database}; SQLite is for one process "
            "(use PostgreSQL for several replicas)",
        ) from None


class _Server(uvicorn.Server):
    """uvicorn's server, except that SIGINT/SIGTERM make :meth:`serve` return instead of being raised
    again once it stops (uvicorn's default), so the worker is stopped and the engine disposed of."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def grafana_signing(settings: Settings) -> GrafanaSigning | None:
    """How ``/alerts/grafana`` checks signatures: only when ``INCIDENT_BOT_GRAFANA_HMAC_SECRET`` is set."""
    secret = settings.secrets.grafana_hmac_secret
    if secret is None:
        return None
    grafana = settings.grafana
    return GrafanaSigning(
        secret.get_secret_value(),
        header=grafana.hmac_header,
        timestamp_header=grafana.timestamp_header,
        max_age=grafana.max_age,
    )


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def diagnosis_worker(
    settings: Settings,
    store: Store,
    metrics: Metrics,
    announce: Announcer,
    paging: Pager | None = None,
    *,
    slot: int = 0,
) -> DiagnosisWorker:
    """One of this process's ``jobs.concurrency`` workers (``slot``): each claims jobs on its own lease;
    each job's SSH commands go to the store's audit table."""
    catalog = load_runbooks()
    prober = HttpxProber()

    async def run_job(incident: Incident, reporter: Reporter) -> Diagnosis:
        auditor = StoreAuditor(store)
        try:
            return await diagnose_incident(
                incident, settings, catalog, auditor=auditor, prober=prober, reporter=reporter
            )
        finally:
            await auditor.flush()

    return DiagnosisWorker(
        store,
        metrics.timed(run_job),
        clock=lambda: datetime.now(UTC),
        worker_id=f"{worker_name()}/{slot}",
        lease=timedelta(seconds=settings.ssh.deadline + settings.jobs.lease_margin),
        announce=announce,
        hooks=paging,
    )


#: How long the outbox worker may take to give back its unsent messages on shutdown before it is cancelled.
OUTBOX_GRACE = 5.0


def outbox_worker(store: Store, chats: Chats, paging: Pager | None = None) -> OutboxWorker:
    """The outbox worker of this process: a sender per chat target (the console when no chat is set up);
    a page refused for good is put on the incident's timeline and in its thread."""
    return OutboxWorker(
        store,
        render_message,
        chats.senders,
        clock=lambda: datetime.now(UTC),
        pace=chats.pace,
        on_rejected=paging.rejected if paging is not None else None,
    )


def _freeze_start_up_heap() -> None:
    """Collect once, then move every object alive now (modules, classes, the app, its caches: some 200,000)
    to the collector's permanent generation (``gc.freeze``, process-wide). Otherwise a full collection walks
    them all with the event loop stopped: 120-320 ms under a storm on a busy 2-core machine, enough to push
    up to ninety webhooks past 250 ms (``tests/soak/soak_storm.py --trace``). Objects made later are
    collected as before; a frozen one that later becomes part of a garbage cycle is never freed, which is
    why the collection comes first (start-up objects live as long as the process anyway)."""
    gc.collect()
    gc.freeze()


async def _stop_worker(task: asyncio.Task[None], grace: float) -> None:
    """Let ``task`` finish (its stop event is already set) for up to ``grace`` seconds, then cancel it."""
    done, _ = await asyncio.wait({task}, timeout=grace)
    if not done:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _watch(server: uvicorn.Server, started: asyncio.Event | None, shutdown: asyncio.Event | None) -> None:
    """Tell ``started`` once uvicorn listens; ask uvicorn to exit once ``shutdown`` is set."""
    while not server.started:
        await asyncio.sleep(0.02)
    if started is not None:
        started.set()
    if shutdown is not None:
        await shutdown.wait()
        server.should_exit = True


async def serve(
    settings: Settings, *, started: asyncio.Event | None = None, shutdown: asyncio.Event | None = None
) -> None:
    """Run until SIGINT/SIGTERM, or until ``shutdown`` is set; ``started`` is set once the server listens
    (both for callers that run ``serve`` in-process, such as ``incident-bot demo``)."""
    install_log_redaction(settings)  # the configured secrets never reach a log line, whoever logs it
    check_exposure(settings)
    host, port = listen_address(settings)
    clock = lambda: datetime.now(UTC)  # noqa: E731 - one clock for every part
    async with contextlib.AsyncExitStack() as resources:
        engine = create_engine(settings.database_url)
        _one_process_per_sqlite_file(engine.url, resources)
        resources.push_async_callback(engine.dispose)
        if engine.dialect.name == "sqlite":
            await upgrade(engine)
        store = SqlStore(engine)
        chats = await build_chats(settings, store, clock)
        resources.push_async_callback(chats.aclose)
        announce = Announcer(chats.targets)
        paging = pager(settings, store, chats, announce, clock)
        service = IncidentService(
            store,
            route=lambda alert: route(alert, settings),
            group=group_key,
            clock=clock,
            announce=announce,
            hooks=paging,
        )
        secrets = settings.secrets
        metrics = Metrics()
        api = build_api(
            service,
            store,
            webhook_token=reveal(secrets.webhook_token),
            api_token=reveal(secrets.api_token),
            metrics=metrics,
            grafana_signing=grafana_signing(settings),
        )
        ops = chat_operations(settings, store, service, announce, clock, paging=paging)
        inbound = Inbound(settings, engine, ops, chats)
        inbound.mount(api)
        resources.push_async_callback(inbound.stop)
        config = uvicorn.Config(api, host=host, port=port, log_level="info", access_log=False, lifespan="off")
        stop = asyncio.Event()
        workers = [
            asyncio.create_task(
                diagnosis_worker(settings, store, metrics, announce, paging, slot=n).run_forever(stop),
                name=f"diagnosis-worker-{n}",
            )
            for n in range(settings.jobs.concurrency)
        ]
        outbox = asyncio.create_task(outbox_worker(store, chats, paging).run_forever(stop), name="outbox-worker")
        escalations = (
            asyncio.create_task(
                EscalationWorker(store, paging, clock, worker_name()).run_forever(stop), name="escalation-worker"
            )
            if paging is not None
            else None
        )
        expiry = (
            asyncio.create_task(ApprovalWorker(ops.approvals).run_forever(stop), name="approval-expiry")
            if ops.approvals is not None
            else None
        )
        inbound.start(stop)
        server = _Server(config)
        watcher = asyncio.create_task(_watch(server, started, shutdown), name="serve-watch")
        _freeze_start_up_heap()
        try:
            await server.serve()
        finally:
            watcher.cancel()
            stop.set()
            for task in (*workers, escalations, expiry):  # a job or timer in flight stays leased: taken again later
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            await _stop_worker(outbox, OUTBOX_GRACE)  # unsent messages are given back to the outbox
