"""``incident-bot demo``: the main job end to end on this machine, with nothing to configure.

:func:`run_demo` starts the fault lab (real sshd, nginx, gunicorn and PostgreSQL on 127.0.0.1) in a
fresh directory under /tmp, then ``serve`` in this process on an SQLite database in the same directory
with the console chat (the incident thread prints on stderr as the outbox delivers it). It breaks the
lab (``upstream_down``, a 502, unless another scenario is named), requests the site once as a visitor
would (nginx logs the failure), and delivers the alert the way Alertmanager would: an HTTP POST of a
version 4 payload to ``/alerts/alertmanager`` with a bearer token made for this run. It waits until
the diagnosis made over SSH is stored and every message of the thread is delivered, repairs the lab,
posts the same alert ``resolved`` and waits for the resolution to be shown. Then it stops ``serve``,
takes the lab down, removes the directory and checks that nothing it started still runs or listens.

Whatever happens (an error, Ctrl-C, SIGTERM) the same clean-up runs before :func:`run_demo` returns or
raises. A lab call in progress (they block, so they run in a worker thread) is let finish first, so a
half-started lab is taken down whole. A second Ctrl-C during clean-up is ignored.

Raises :class:`LabUnavailable` when the lab cannot run here (a missing Debian package, named with the
command that installs it, or a lab that failed to start), before ``serve`` is started;
:class:`DemoInterrupted` after a clean-up caused by a signal; :class:`DemoFailed` when a step did not
happen in time; the lab's :class:`~bot.lab.UnknownScenario`/:class:`~bot.lab.ScenarioUnavailable`
(usage errors) before anything is started.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import secrets
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml
from rich.console import Console
from rich.text import Text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.adapters.console_chat import PipeSafeConsole
from bot.adapters.db import SqlStore, create_engine
from bot.config import Settings
from bot.core.incidents import IncidentState
from bot.errors import BotError
from bot.lab import SCENARIOS, Lab, LabError, Scenario, ScenarioUnavailable, UnknownScenario
from bot.lab import postgres as lab_postgres
from bot.lab import state as lab_state
from bot.lab.process import free_port, is_root, processes_mentioning
from bot.serve import serve

T = TypeVar("T")

DEFAULT_SCENARIO = "upstream_down"
#: The whole SSH diagnosis may take this long (the lab answers in about two seconds; a command that
#: hangs is cut at COMMAND_TIMEOUT), so the demo stays well under a minute even when something stalls.
DIAGNOSIS_DEADLINE = 20.0
COMMAND_TIMEOUT = 10.0
#: How long to wait for the thread to show the cause (the diagnosis, then the outbox's delivery).
THREAD_TIMEOUT = DIAGNOSIS_DEADLINE + 15.0
#: How long to wait for serve to listen, and for the resolution to be shown.
START_TIMEOUT = 20.0
RESOLVE_TIMEOUT = 15.0
#: How long serve may take to stop before it is cancelled.
STOP_TIMEOUT = 15.0
POLL = 0.1

#: What the demo needs on this machine: (what, Debian package, how to tell it is there).
Requirement = tuple[str, str, Callable[[], bool]]


def _program(name: str) -> Callable[[], bool]:
    return lambda: Path(name).exists() if name.startswith("/") else shutil.which(name) is not None


def _postgres_server() -> bool:
    try:
        lab_postgres.bin_dir()
    except LabError:
        return False
    return True


REQUIREMENTS: tuple[Requirement, ...] = (
    ("/usr/sbin/sshd", "openssh-server", _program("/usr/sbin/sshd")),
    ("ssh-keygen", "openssh-client", _program("ssh-keygen")),
    ("/usr/sbin/nginx", "nginx", _program("/usr/sbin/nginx")),
    ("PostgreSQL server (initdb, pg_ctl)", "postgresql", _postgres_server),
    ("curl", "curl", _program("curl")),
    ("ss", "iproute2", _program("ss")),
)


def missing_requirements(requirements: Sequence[Requirement] = REQUIREMENTS) -> list[tuple[str, str]]:
    """The (program, Debian package) pairs not installed here, in the order of ``requirements``."""
    return [(what, package) for what, package, present in requirements if not present()]


class LabUnavailable(BotError):
    """The fault lab cannot run on this machine; nothing was left running. ``packages`` are the Debian
    packages to install (empty when the lab failed for another reason, given in the message)."""

    code = "demo_lab_unavailable"
    exit_code = 1

    def __init__(self, reason: str, packages: Sequence[str] = ()) -> None:
        super().__init__(reason)
        self.packages = tuple(packages)

    @property
    def install_hint(self) -> str | None:
        """The command that installs the missing packages, or None when none is missing."""
        if not self.packages:
            return None
        return f"apt-get install {' '.join(self.packages)}   (or ./dev setup in a checkout)"


class DemoFailed(BotError):
    """A step of the demo did not happen (in time); everything was cleaned up."""

    code = "demo_failed"
    exit_code = 1


class DemoInterrupted(BotError):
    """The demo was stopped by Ctrl-C or SIGTERM; everything was cleaned up."""

    code = "demo_interrupted"
    exit_code = 130


@dataclass
class DemoReport:
    """What a finished demo did and found."""

    scenario: Scenario
    incident: str = ""
    #: The bot's top cause.
    cause: str | None = None
    resolved: bool = False
    seconds: float = 0.0
    #: Whatever still ran or listened after the clean-up (should be empty).
    leftovers: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The bot named the cause the lab reproduced, the incident resolved, nothing was left running."""
        return self.cause == self.scenario.cause and self.resolved and not self.leftovers

    def summary(self) -> str:
        named = self.cause or "no cause"
        verdict = "as expected" if self.cause == self.scenario.cause else f"expected {self.scenario.cause}"
        left = "nothing left running" if not self.leftovers else "LEFT RUNNING: " + "; ".join(self.leftovers)
        resolved = "resolved" if self.resolved else "NOT resolved"
        return (
            f"demo {'ok' if self.ok else 'FAILED'} in {self.seconds:.1f} s: scenario {self.scenario.name} "
            f"({self.scenario.status}), incident #{self.incident or '-'} {resolved}, suggested cause {named} "
            f"({verdict}); {left}"
        )


def scenario_named(name: str) -> Scenario:
    """The scenario to break; usage errors for an unknown one or one this machine cannot reproduce."""
    scenario = SCENARIOS.get(name)
    if scenario is None:
        raise UnknownScenario(name, SCENARIOS)
    if scenario.needs_root and not is_root():
        raise ScenarioUnavailable(name, "it needs root to mount a small tmpfs for the app's data")
    return scenario


# ---------------------------------------------------------------------------------------------- pieces


def demo_settings(lab_config: Path, database: Path, port: int, webhook_token: str, api_token: str) -> Settings:
    """The lab's own configuration (host ``lab`` over SSH with its pinned host key, service ``lab``)
    with the demo's database, listener, tokens and a diagnosis deadline that fits the demo."""
    document: dict[str, Any] = yaml.safe_load(lab_config.read_text()) or {}
    document["database_url"] = f"sqlite+aiosqlite:///{database}"
    document["listen"] = f"127.0.0.1:{port}"
    ssh = dict(document.get("ssh") or {})
    ssh.update(deadline=DIAGNOSIS_DEADLINE, command_timeout=COMMAND_TIMEOUT)
    document["ssh"] = ssh
    tokens = {"webhook_token": webhook_token, "api_token": api_token}
    settings = Settings.model_validate({**document, "secrets": tokens})
    return settings.model_copy(update={"source": f"{lab_config} (with the demo's database and listener)"})


def alert_labels(scenario: Scenario, url: str) -> dict[str, str]:
    """The labels of the demo's alert: routed by ``service: lab``, the HTTP status in ``http_status``."""
    return {
        "alertname": "HTTP5xx",
        "service": "lab",
        "http_status": str(scenario.status),
        "instance": url,
        "severity": "page",
    }


def alertmanager_payload(
    labels: dict[str, str], summary: str, *, state: str, starts_at: datetime, ends_at: datetime | None = None
) -> dict[str, Any]:
    """An Alertmanager webhook notification (payload version 4) of one alert, as Alertmanager sends it
    for a group by ``alertname``: firing alerts end at Go's zero time, the fingerprint is stable per label set."""
    fingerprint = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:16]
    annotations = {"summary": summary}
    stamp = "%Y-%m-%dT%H:%M:%S.%fZ"
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{labels["alertname"]}"}}',
        "truncatedAlerts": 0,
        "status": state,
        "receiver": "incident-bot",
        "groupLabels": {"alertname": labels["alertname"]},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [
            {
                "status": state,
                "labels": labels,
                "annotations": annotations,
                "startsAt": starts_at.strftime(stamp),
                "endsAt": ends_at.strftime(stamp) if ends_at is not None else "0001-01-01T00:00:00Z",
                "generatorURL": "http://127.0.0.1:9090/graph",
                "fingerprint": fingerprint,
            }
        ],
    }


def listening(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def in_thread(call: Callable[[], T]) -> T:
    """Run a blocking call in a worker thread. If the caller is cancelled meanwhile, still wait for the
    call to return before the cancellation goes on: a lab half started or half broken is finished
    before it is taken down (a thread cannot be stopped from outside)."""
    future = asyncio.ensure_future(asyncio.to_thread(call))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({future})
        if not future.cancelled():
            future.exception()  # retrieved: the interruption is what is reported, not what it broke
        raise


class _Quiet(logging.Filter):
    """Drops uvicorn's start-up chatter (INFO) while the demo narrates; warnings and errors still show."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


# ---------------------------------------------------------------------------------------------- the run


class _Run:
    """One demo run: its directory, lab, serve task and the clean-up that undoes all of it."""

    def __init__(self, scenario: Scenario, console: Console) -> None:
        self.scenario = scenario
        self.console = console
        self.started = time.monotonic()
        self.report = DemoReport(scenario)
        self.root = Path(tempfile.mkdtemp(prefix="incident-bot-demo-", dir="/tmp"))
        # nginx's workers (nobody) and PostgreSQL (postgres) must reach the lab inside it.
        self.root.chmod(0o755)
        self.lab = Lab(self.root / "lab")
        self.serve_task: asyncio.Task[None] | None = None
        self.shutdown = asyncio.Event()
        self.store: SqlStore | None = None
        self.engine: AsyncEngine | None = None
        self.ports: dict[str, int] = {}
        self.interrupted = False
        self.cleaning = False
        self.webhook_token = secrets.token_urlsafe(24)
        #: The task running the demo, cancelled by :meth:`on_signal`.
        self.main: asyncio.Task[Any] | None = None

    # ---- narration ---------------------------------------------------------------------------------

    def say(self, text: str, style: str = "") -> None:
        line = Text()
        line.append(f"[{time.monotonic() - self.started:5.1f}s] ", style="dim")
        line.append("demo: ", style="bold cyan")
        line.append(text, style=style)
        self.console.print(line, soft_wrap=True)

    # ---- steps ---------------------------------------------------------------------------------------

    async def start_lab(self) -> None:
        self.say(f"starting the fault lab in {self.lab.paths.root}: sshd, nginx, gunicorn, PostgreSQL on 127.0.0.1")
        try:
            status = await in_thread(self.lab.up)
        except LabError as exc:
            raise LabUnavailable(f"the fault lab could not start: {exc.user_message()}") from exc
        st = self.lab.state
        self.ports.update({f"lab {name}": port for name, port in st.ports.items()})
        self.say(
            f"lab up: site {status.url} answers 200; SSH {status.ssh_target} "
            f"(host key pinned in {status.known_hosts}); PostgreSQL on port {st.ports['postgres']}"
        )

    async def start_serve(self) -> Settings:
        port = free_port()
        settings = demo_settings(
            self.lab.paths.config, self.root / "incident-bot.db", port, self.webhook_token, secrets.token_urlsafe(24)
        )
        self.ports["serve"] = port
        started = asyncio.Event()
        self.serve_task = asyncio.create_task(serve(settings, started=started, shutdown=self.shutdown), name="serve")

        async def listens() -> bool:
            return started.is_set()

        await self._until(listens, START_TIMEOUT, "serve to listen")
        self.engine = create_engine(settings.database_url)
        self.store = SqlStore(self.engine)
        self.say(
            f"serve listening on http://127.0.0.1:{port}: SQLite {self.root / 'incident-bot.db'}, "
            f"diagnosis deadline {DIAGNOSIS_DEADLINE:g} s, chat: the console (the thread below)"
        )
        return settings

    async def break_lab(self, client: httpx.AsyncClient) -> None:
        scenario = self.scenario
        self.say(f"breaking the lab ({scenario.name}): {scenario.does}", style="bold")
        await in_thread(self.lab.rotate_logs)
        await in_thread(lambda: self.lab.break_(scenario.name))
        await self.visit(client)

    async def visit(self, client: httpx.AsyncClient) -> int:
        """Request the site once, as a visitor would; print and return what it answered."""
        url = self.lab.url
        try:
            answer = await client.get(url, timeout=10)
        except httpx.HTTPError as exc:
            self.say(f"GET {url} failed: {type(exc).__name__}")
            return 0
        try:
            phrase = HTTPStatus(answer.status_code).phrase
        except ValueError:
            phrase = ""
        self.say(f"GET {url} → {answer.status_code} {phrase}".rstrip())
        return answer.status_code

    async def post_alert(self, client: httpx.AsyncClient, state: str, starts_at: datetime) -> str:
        labels = alert_labels(self.scenario, self.lab.url)
        summary = f"{self.lab.url} answers {self.scenario.status}"
        ends_at = datetime.now(UTC) if state == "resolved" else None
        body = alertmanager_payload(labels, summary, state=state, starts_at=starts_at, ends_at=ends_at)
        url = f"http://127.0.0.1:{self.ports['serve']}/alerts/alertmanager"
        answer = await client.post(
            url, json=body, headers={"Authorization": f"Bearer {self.webhook_token}"}, timeout=10
        )
        if answer.status_code != 202:
            raise DemoFailed(f"serve answered the {state} alert with HTTP {answer.status_code}: {answer.text[:200]}")
        [result] = answer.json()["results"]
        self.say(
            f"Alertmanager webhook: POST /alerts/alertmanager, {labels['alertname']} {state} "
            f"(service={labels['service']}, http_status={labels['http_status']}) with a bearer token "
            f"→ 202, incident #{result['incident']}: {result['outcome'].replace('_', ' ')}"
        )
        return str(result["incident"])

    async def wait_for_cause(self, incident_id: str) -> None:
        store = self._store()

        async def shown() -> bool:
            events = await store.timeline(incident_id)
            failed = [e for e in events if e.kind == "diagnosis_failed"]
            if failed:
                raise DemoFailed(f"the diagnosis of incident #{incident_id} failed: {failed[-1].text}")
            return await store.get_diagnosis(incident_id) is not None and not await self._pending(incident_id)

        await self._until(shown, THREAD_TIMEOUT, "the diagnosis to be posted in the thread")
        diagnosis = await store.get_diagnosis(incident_id) or {}
        causes = diagnosis.get("causes") or []
        if causes:
            top = causes[0]
            self.report.cause = str(top.get("id"))
            self.say(f"the bot suggests {top.get('id')} ({float(top.get('confidence', 0)):.0%})", style="bold")
        else:
            self.say("the bot found no cause", style="bold")

    async def wait_for_resolution(self, incident_id: str) -> None:
        store = self._store()

        async def shown() -> bool:
            incident = await store.get_incident(incident_id)
            resolved = incident is not None and incident.state is IncidentState.RESOLVED
            return resolved and not await self._pending(incident_id)

        await self._until(shown, RESOLVE_TIMEOUT, "the incident to resolve in the thread")
        self.report.resolved = True

    # ---- waiting -----------------------------------------------------------------------------------------

    def _store(self) -> SqlStore:
        assert self.store is not None
        return self.store

    async def _pending(self, incident_id: str) -> bool:
        return any(m.incident_id == incident_id for m in await self._store().pending_messages())

    async def _until(self, check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
        """Poll ``check`` until true; fail when serve stopped meanwhile or ``timeout`` seconds went by."""
        deadline = time.monotonic() + timeout
        while not await check():
            task = self.serve_task
            if task is not None and task.done():
                if self.interrupted:
                    raise asyncio.CancelledError
                problem = task.exception() if not task.cancelled() else None
                detail = f": {problem}" if isinstance(problem, BotError) else ""
                raise DemoFailed(f"serve stopped while waiting for {what}{detail}")
            if time.monotonic() > deadline:
                raise DemoFailed(f"timed out after {timeout:g} s waiting for {what}")
            await asyncio.sleep(POLL)

    # ---- clean-up ------------------------------------------------------------------------------------------

    async def cleanup(self) -> None:
        """Stop serve, take the lab down, remove the directory, then list whatever still runs or listens."""
        self.cleaning = True
        self.say("cleaning up: stopping serve, taking the lab down, removing " + str(self.root))
        task = self.serve_task
        if task is not None:
            self.shutdown.set()
            done, _ = await asyncio.wait({task}, timeout=STOP_TIMEOUT)
            if not done:
                task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        if self.engine is not None:
            await self.engine.dispose()
        saved = lab_state.load(self.lab.paths.state)  # the lab's ports, even when it was stopped mid-start
        if saved is not None:
            self.ports.update({f"lab {name}": port for name, port in saved.ports.items() if port})
        try:
            await in_thread(self.lab.down)
        except LabError as exc:
            self.say(f"taking the lab down: {exc.user_message()}", style="red")
        await in_thread(lambda: shutil.rmtree(self.root, ignore_errors=True))
        self.report.leftovers = self.leftovers()
        self.report.seconds = time.monotonic() - self.started
        if self.report.leftovers:
            self.say("still running: " + "; ".join(self.report.leftovers), style="bold red")
        else:
            ports = ", ".join(str(port) for port in sorted(self.ports.values())) or "none chosen yet"
            self.say(f"clean: no process of the demo left, none of its ports listening ({ports}), directory removed")

    def leftovers(self) -> list[str]:
        found = [f"pid {pid}: {line[:120]}" for pid, line in processes_mentioning(str(self.root) + "/")]
        found += [f"{name} port {port} still listening" for name, port in self.ports.items() if listening(port)]
        if self.root.exists():
            found.append(f"{self.root} still exists")
        return found

    def on_signal(self) -> None:
        """Ctrl-C / SIGTERM: stop the run and clean up (once); during clean-up, say it is under way."""
        first, self.interrupted = not self.interrupted, True
        if self.cleaning or not first:
            self.say("already cleaning up, please wait")
            return
        self.say("interrupted: cleaning up", style="bold yellow")
        if self.main is not None:
            self.main.cancel()


async def _demo(run: _Run) -> DemoReport:
    scenario = run.scenario
    run.say(
        f"the main job end to end: fault lab, serve on SQLite with the console chat, a {scenario.status} "
        f"({scenario.name}) alerted through the Alertmanager webhook, diagnosed over SSH"
    )
    try:
        await run.start_lab()
        await run.start_serve()
        async with httpx.AsyncClient() as client:
            await run.break_lab(client)
            starts_at = datetime.now(UTC)
            incident_id = await run.post_alert(client, "firing", starts_at)
            run.report.incident = incident_id
            await run.wait_for_cause(incident_id)
            run.say("repairing the lab", style="bold")
            await in_thread(run.lab.repair)
            await run.visit(client)
            await run.post_alert(client, "resolved", starts_at)
            await run.wait_for_resolution(incident_id)
    finally:
        await run.cleanup()
    return run.report


async def _main(scenario: Scenario, console: Console) -> DemoReport:
    run = _Run(scenario, console)
    run.main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    handled: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):  # not the main thread
            loop.add_signal_handler(sig, run.on_signal)
            handled.append(sig)
    quiet = _Quiet()
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(quiet)
    try:
        return await _demo(run)
    except (asyncio.CancelledError, BotError):
        # A signal also stops the children in our process group (initdb, pg_ctl…), so a step may fail
        # from it before the cancellation lands: the interruption is what is reported either way.
        if run.interrupted:
            left = run.report.leftovers
            outcome = "still running: " + "; ".join(left) if left else "everything the demo started was stopped"
            raise DemoInterrupted(f"interrupted; {outcome}") from None
        raise
    finally:
        uvicorn_log.removeFilter(quiet)
        for sig in handled:
            loop.remove_signal_handler(sig)


def run_demo(scenario_name: str = DEFAULT_SCENARIO, console: Console | None = None) -> DemoReport:
    """Run the demo (see the module docstring); narration goes to ``console`` (stderr by default)."""
    scenario = scenario_named(scenario_name)
    absent = missing_requirements()
    if absent:
        names = ", ".join(f"{what} (Debian package {package})" for what, package in absent)
        packages = list(dict.fromkeys(package for _, package in absent))
        raise LabUnavailable(f"the fault lab needs {names}, not installed here", packages)
    out = console or PipeSafeConsole(stderr=True, highlight=False)
    return asyncio.run(_main(scenario, out))
