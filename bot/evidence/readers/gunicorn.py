"""gunicorn's error log: worker timeouts, killed workers, boot failures and request errors.

gunicorn logs ``[2026-11-30 05:04:43 +0000] [20585] [CRITICAL] WORKER TIMEOUT (pid:20588)`` (the layout
of ``glogging.py``); lines are recognised by their message text anywhere in the line, so Docker,
journald and Heroku prefixes work. What each message means (gunicorn/arbiter.py, workers/base.py):

* ``WORKER TIMEOUT (pid:N)``: a sync worker was busy longer than ``--timeout``; the arbiter aborts and
  then kills it, and the proxy sees the connection close (nginx ``upstream prematurely closed``, 502)
  or times out itself (504). The request was too slow: upstream_timeout.
* ``Worker (pid:N) was sent SIGKILL! Perhaps out of memory?`` (gunicorn ≥ 21) and ``Worker with pid N
  was terminated due to signal 9`` (20.1): something outside gunicorn killed the worker, nearly always
  the kernel OOM killer. Not when the same pid had a WORKER TIMEOUT just before: the arbiter kills a
  timed-out worker with SIGABRT and then SIGKILL, and reports that kill with the same words.
* ``Reason: Worker failed to boot.`` / ``Reason: App failed to load.``, ``Exception in worker process``:
  the app cannot start (import error, missing setting); the master exits and the proxy gets
  connection refused.
* ``Connection in use: ('127.0.0.1', 8000)`` / ``Can't connect to ...``: gunicorn cannot bind.
* ``Error handling request /path`` + traceback: one request raised (the traceback reader names the
  exception; this line only says the app answered 500).

Fixtures: gunicorn 27.0.1 on this machine and public reports (tests/fixtures/apps/SOURCES.md).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, ClassVar

from bot.core.models import Severity, Signal
from bot.evidence.reader import LinePattern, PatternReader

_PID = re.compile(r"pid[: ]+(\d+)")
_SIGNAL = re.compile(r"was sent (SIG\w+)|due to signal (\d+)")
_BIND = re.compile(r"Connection in use: (.+)$|Can't connect to (.+)$")
_REQUEST = re.compile(r"Error handling request (\S+(?: \S+)?)")
_TIMEOUT_PID = re.compile(r"WORKER TIMEOUT \(pid:?\s*(\d+)\)")
_KILLED_PID = re.compile(
    r"Worker \(pid:(\d+)\) was sent SIG(?:KILL|ABRT)!|Worker with pid (\d+) was terminated due to signal 9"
)
#: Pids gunicorn itself killed for timing out, so their SIGKILL is not read as an OOM kill.
_MAX_TIMED_OUT_PIDS = 512


def _p(kind: str, trigger: str, summary: str, severity: Severity = Severity.CRITICAL, **kw: Any) -> LinePattern:
    return LinePattern(f"gunicorn.{kind}", trigger, summary, severity, **kw)


class GunicornLog(PatternReader):
    name = "gunicorn.log"
    title = "gunicorn error log"
    patterns = (
        _p(
            "worker_timeout",
            r"WORKER TIMEOUT \(pid",
            "{count}× gunicorn WORKER TIMEOUT: a request ran longer than --timeout and its worker was killed",
        ),
        _p(
            "worker_oom",
            r"Worker \(pid:\d+\) was sent SIGKILL!|was terminated due to signal 9\b",
            "{count}× gunicorn worker SIGKILLed from outside (perhaps out of memory)",
        ),
        _p(
            "worker_signal",
            r"Worker \(pid:\d+\) was sent SIG(?:SEGV|BUS|ILL|FPE)!|was terminated due to signal (?:4|7|8|11)\b",
            "{count}× gunicorn worker crashed ({signal})",
        ),
        _p(
            "worker_aborted",
            r"Worker \(pid:\d+\) was sent SIGABRT!",
            "{count}× gunicorn worker aborted (follows a WORKER TIMEOUT)",
            Severity.INFO,
        ),
        _p("boot_failed", r"Reason: Worker failed to boot\.|Reason: App failed to load\.", "gunicorn exited: {reason}"),
        _p(
            "worker_boot_exception",
            r"Exception in worker process",
            "{count}× exception while a gunicorn worker loaded the app",
            Severity.WARNING,
        ),
        _p(
            "app_load_failed",
            r"Failed to find (?:attribute|application object) '[^']+' in '[^']+'",
            "gunicorn could not find the WSGI application object",
        ),
        _p(
            "bind_in_use",
            r"\[ERROR\] Connection in use: |Can't connect to \(",
            "gunicorn cannot bind {address}: address in use",
        ),
        _p(
            "request_error",
            r"Error handling request",
            "{count}× requests raised in the app (gunicorn answered 500), e.g. {request}",
            Severity.WARNING,
        ),
        _p(
            "master_stopped",
            r"\] Shutting down: Master",
            "gunicorn's master shut down: nothing serves its address until it is started again",
            Severity.WARNING,
            unless=r"Reason:",
        ),
        _p(
            "worker_exit_code",
            r"Worker \(pid:\d+\) exited with code [1-9]",
            "{count}× gunicorn worker exited with an error code",
            Severity.WARNING,
        ),
    )
    signals: ClassVar[dict[str, Signal]] = {
        "gunicorn.worker_timeout": Signal(cause="upstream_timeout", weight=0.88),
        "gunicorn.worker_oom": Signal(cause="oom_kill", weight=0.85),
        "gunicorn.worker_signal": Signal(cause="upstream_crashed", weight=0.8),
        "gunicorn.boot_failed": Signal(cause="config_error", weight=0.7),
        "gunicorn.worker_boot_exception": Signal(cause="config_error", weight=0.5),
        "gunicorn.app_load_failed": Signal(cause="config_error", weight=0.8),
        "gunicorn.bind_in_use": Signal(cause="config_error", weight=0.7),
        "gunicorn.request_error": Signal(cause="app_exception", weight=0.5),
        "gunicorn.worker_exit_code": Signal(cause="upstream_crashed", weight=0.3),
        "gunicorn.master_stopped": Signal(cause="upstream_down", weight=0.5),
    }

    def __init__(self) -> None:
        super().__init__()
        self._timed_out: OrderedDict[str, None] = OrderedDict()

    def feed(self, line: str) -> bool:
        killed = _KILLED_PID.search(line)
        if killed and (killed.group(1) or killed.group(2)) in self._timed_out:
            # The arbiter's own kill of a timed-out worker: already counted as gunicorn.worker_timeout.
            return False
        timed_out = _TIMEOUT_PID.search(line)
        if timed_out:
            self._timed_out[timed_out.group(1)] = None
            while len(self._timed_out) > _MAX_TIMED_OUT_PIDS:
                self._timed_out.popitem(last=False)
        return super().feed(line)

    def extract(self, pattern: LinePattern, detail: re.Pattern[str] | None, line: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        pid = _PID.search(line)
        if pid:
            data["pid"] = int(pid.group(1))
        signal = _SIGNAL.search(line)
        if signal:
            data["signal"] = signal.group(1) or f"signal {signal.group(2)}"
        if pattern.kind == "gunicorn.boot_failed":
            data["reason"] = "worker failed to boot" if "failed to boot" in line else "app failed to load"
        bind = _BIND.search(line)
        if bind:
            data["address"] = (bind.group(1) or bind.group(2)).strip()
        request = _REQUEST.search(line)
        if request:
            data["request"] = request.group(1)
        return data


READERS = (GunicornLog,)
