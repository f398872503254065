"""A server process for the benchmarks (``incident-bot serve`` or a peer), started and stopped cleanly.

:class:`Server` starts ``argv`` with its output in ``log``, optionally pinned to CPU cores with
``taskset``, waits for ``GET /healthz`` to answer 200 and stops it with SIGTERM (SIGKILL after a grace);
:meth:`Server.stop` always leaves none running. Imported by the scripts in ``bench/`` (the script's
directory is first on ``sys.path``).
"""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status) == 200
    except (OSError, urllib.error.URLError):
        return False


class Server:
    """One server process on 127.0.0.1:``port``; ``cores`` (``"0"``) pins it with ``taskset -c``."""

    def __init__(
        self, argv: list[str], env: dict[str, str], log: Path, port: int, *, cores: str | None = None,
        start_timeout: float = 60.0, stop_timeout: float = 20.0,
    ) -> None:  # fmt: skip
        self.argv, self.env, self.log, self.port = argv, env, log, port
        self.cores, self.start_timeout, self.stop_timeout = cores, start_timeout, stop_timeout
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        argv = ["taskset", "-c", self.cores, *self.argv] if self.cores else self.argv
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + self.start_timeout
        while not healthy(f"{self.base}/healthz"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"{self.argv[0]} did not come up on {self.base}:\n{self.tail()}")
            time.sleep(0.05)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
