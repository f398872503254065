"""What the soak scripts share: a throwaway PostgreSQL cluster, one `incident-bot serve` subprocess, and
the load's percentiles. Run the scripts from the checkout's root (see tests/soak/README.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from bot.lab import postgres
from bot.lab.paths import LabPaths
from bot.lab.process import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKENS = {"INCIDENT_BOT_WEBHOOK_TOKEN": "soak-hook-token-0123", "INCIDENT_BOT_API_TOKEN": "soak-api-token-4567"}
HOOK = {"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_WEBHOOK_TOKEN']}"}


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
                [sys.executable, "-m", "bot", "serve", "--config", str(self.config)],
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


def percentile(ordered: list[float], fraction: float) -> float:
    """The value at ``fraction`` of a sorted list (nan when empty)."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]
