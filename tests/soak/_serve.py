"""What the soak scripts share: a throwaway PostgreSQL cluster, one `incident-bot serve` subprocess (run
as is, or under :class:`Tracer`), and the load's percentiles. Run the scripts from the checkout's root
(see tests/soak/README.md)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bot.lab import postgres
from bot.lab.paths import LabPaths
from bot.lab.process import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKENS = {"INCIDENT_BOT_WEBHOOK_TOKEN": "soak-hook-token-0123", "INCIDENT_BOT_API_TOKEN": "soak-api-token-4567"}
HOOK = {"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_WEBHOOK_TOKEN']}"}


@contextmanager
def database(store: str, workdir: Path) -> Iterator[str]:
    """The URL of the soak's database: a SQLite file in ``workdir``, or a throwaway PostgreSQL cluster."""
    if store == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'bot.db'}"
    else:
        with postgresql_database() as url:
            yield url


class Rows:
    """Rows of the bot's database (read straight from it, as an operator could)."""

    def __init__(self, url: str, workdir: Path) -> None:
        self.url, self.workdir = url, workdir

    def __call__(self, query: str) -> list[tuple[Any, ...]]:
        if self.url.startswith("sqlite"):
            with sqlite3.connect(self.workdir / "bot.db", timeout=30) as db:
                return list(db.execute(query).fetchall())
        import psycopg

        with psycopg.connect(self.url.replace("postgresql+asyncpg://", "postgresql://"), autocommit=True) as conn:
            return list(conn.execute(query).fetchall())


@contextmanager
def postgresql_database() -> Iterator[str]:
    """A throwaway PostgreSQL cluster (``initdb`` into a temporary directory) and the URL of its database."""
    root = Path(tempfile.mkdtemp(prefix="incident-bot-soak-pg-"))
    root.chmod(0o755)
    paths = LabPaths(root)
    paths.logs.mkdir()
    port = free_port()
    try:
        postgres.init(paths, port)
        with (paths.pg_data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("max_connections = 100\n")  # the lab's cluster keeps 12; serve's pool and ours need more
        postgres.start(paths)
        yield f"postgresql+asyncpg://{postgres.superuser()}@127.0.0.1:{port}/postgres"
    finally:
        postgres.stop(paths)
        shutil.rmtree(root, ignore_errors=True)


def wait_until(check: Callable[[], bool], timeout: float, what: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(every)


def healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


class Serve:
    """`incident-bot serve --config CONFIG` as a subprocess; each start logs to ``serve-<n>.log`` in ``workdir``."""

    def __init__(self, workdir: Path, config: Path, port: int, env: dict[str, str]) -> None:
        self.workdir, self.config, self.env = workdir, config, env
        self.base = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        #: How ``incident-bot`` is run (the storm soak's ``--trace`` runs it under its tracer).
        self.command = [sys.executable, "-m", "bot"]

    def upgrade(self) -> None:
        """``incident-bot db upgrade`` (PostgreSQL needs it before ``serve``)."""
        done = subprocess.run(
            [sys.executable, "-m", "bot", "db", "upgrade", "--config", str(self.config)],
            capture_output=True, text=True, timeout=120, check=False, env={**os.environ, **self.env}, cwd=ROOT,
        )  # fmt: skip
        if done.returncode != 0:
            raise RuntimeError(f"db upgrade failed: {done.stderr}")

    def start(self) -> subprocess.Popen[bytes]:
        self.starts += 1
        log = self.workdir / f"serve-{self.starts}.log"
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*self.command, "serve", "--config", str(self.config)],
                env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
            )  # fmt: skip
        proc = self.proc
        wait_until(lambda: healthy(self.base) or proc.poll() is not None, 30, "serve to answer /healthz")
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited: {log.read_text()[-2000:]}")
        return proc

    def kill(self) -> None:
        """SIGKILL, and wait for it to be gone."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Tracer:
    """What the storm soak's ``--trace`` records inside the server process, as JSON lines in ``path``: each
    ``POST /alerts/…`` (``req``: wall-clock start, seconds taken inside the app), each full garbage
    collection (``gc``: end, pause, objects frozen by then), each time the event loop came back late
    (``lag``: a 10 ms sleep that took 50 ms or more longer), and the main thread's stack when the loop has
    not turned for 100 ms (``stall``)."""

    LAG_S = 0.05
    STALL_S = 0.1

    def __init__(self, path: Path) -> None:
        self.path = path
        self.events: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.main = threading.get_ident()
        self.beat = time.monotonic()
        self.gc_started = 0.0

    def emit(self, event: dict[str, Any]) -> None:
        with self.lock:
            self.events.append(event)

    def flush(self) -> None:
        with self.lock:
            batch, self.events = self.events, []
        with self.path.open("a", encoding="utf-8") as out:
            out.writelines(json.dumps(event) + "\n" for event in batch)

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.gc_started = time.perf_counter()
        elif info["generation"] == 2:
            pause = time.perf_counter() - self.gc_started
            self.emit({"k": "gc", "t": time.time(), "d": pause, "frozen": gc.get_freeze_count()})

    def watch(self) -> None:
        """A thread: the stack of a stalled loop, once per stall; the events to the file every second."""
        reported = 0.0
        flushed = time.monotonic()
        while True:
            time.sleep(0.02)
            beat = self.beat
            if time.monotonic() - beat > self.STALL_S and reported != beat:
                reported = beat
                frame = sys._current_frames().get(self.main)
                stack = [line.strip() for line in traceback.format_stack(frame)[-8:]] if frame else []
                self.emit({"k": "stall", "t": time.time(), "stack": stack})
            if time.monotonic() - flushed >= 1.0:
                flushed = time.monotonic()
                self.flush()

    async def heartbeat(self) -> None:
        while True:
            before = self.beat = time.monotonic()
            await asyncio.sleep(0.01)
            self.beat = time.monotonic()
            if self.beat - before - 0.01 >= self.LAG_S:
                self.emit({"k": "lag", "t": time.time(), "d": self.beat - before - 0.01})

    def wrap(self, app: Any) -> Any:
        """``app`` (ASGI) timing each alert webhook; its first request starts the heartbeat."""
        beating: list[asyncio.Task[None]] = []

        async def timed(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if not beating:
                beating.append(asyncio.get_running_loop().create_task(self.heartbeat()))
            if scope["type"] != "http" or not scope["path"].startswith("/alerts/"):
                await app(scope, receive, send)
                return
            wall, start = time.time(), time.perf_counter()
            try:
                await app(scope, receive, send)
            finally:
                self.emit({"k": "req", "t": wall, "d": time.perf_counter() - start})

        return timed


def traced_main() -> None:
    """``python -c 'from tests.soak._serve import traced_main; traced_main()' TRACE_FILE serve …``: the
    command line of ``incident-bot``, with :class:`Tracer` recording into TRACE_FILE."""
    import atexit

    import uvicorn

    from bot.cli import main

    tracer = Tracer(Path(sys.argv[1]))
    gc.callbacks.append(tracer.on_gc)
    threading.Thread(target=tracer.watch, name="soak-tracer", daemon=True).start()
    atexit.register(tracer.flush)
    config_init = uvicorn.Config.__init__

    def traced_config(config: uvicorn.Config, app: Any, *args: Any, **kwargs: Any) -> None:
        config_init(config, tracer.wrap(app), *args, **kwargs)

    uvicorn.Config.__init__ = traced_config  # type: ignore[method-assign,assignment]
    sys.argv = ["incident-bot", *sys.argv[2:]]
    main()


def traced_command(trace: Path) -> list[str]:
    """How :class:`Serve` runs ``incident-bot`` under :func:`traced_main`, recording into ``trace``."""
    return [sys.executable, "-c", "from tests.soak._serve import traced_main; traced_main()", str(trace)]


def percentile(ordered: list[float], fraction: float) -> float:
    """The value at ``fraction`` of a sorted list (nan when empty)."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]
