"""uWSGI's log: a full listen queue, HARAKIRI, dead workers and missing applications.

Texts (unbit/uwsgi ``core/master.c``, ``core/master_utils.c``, ``plugins/python/wsgi_handlers.c``; see
shared/reference/error-messages.md §4.3), recognised anywhere in the line (``ctime() - `` prefixes,
Docker/journald prefixes, JSON log formats):

* ``*** uWSGI listen queue of socket "127.0.0.1:3031" (fd: 3) full !!! (101/100) ***``: every worker is
  busy and the kernel backlog is full: worker_saturation.
* ``*** HARAKIRI ON WORKER 1 (pid: 53, try: 1) ***`` (``, graceful: yes`` since 2.0.22): a request ran
  past ``--harakiri`` and the master kills its worker: upstream_timeout. The ``DAMN ! worker N (pid: P)
  died, killed by signal 9`` that follows for the same pid is that kill, not an OOM kill.
* ``DAMN ! worker ... killed by signal 9`` with no harakiri before it: killed from outside (OOM killer).
  Signal 11/7/6 or ``!!! uWSGI process N got Segmentation Fault !!!``: a crash.
* ``--- no python application found, check your startup logs for errors ---`` (answers 500) and
  ``*** no app loaded. GAME OVER ***``: the app failed to import.
* ``uwsgi_response_write_body_do(): Broken pipe`` / ``SIGPIPE: writing to a closed pipe/socket/fd``:
  the proxy had already given up on the request (it logged its own timeout).

Fixtures: Debian uwsgi 2.0.21 on this machine and public reports (tests/fixtures/apps/SOURCES.md).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, ClassVar

from bot.core.models import Severity, Signal
from bot.evidence.reader import LinePattern, PatternReader

_PID = re.compile(r"\(pid: (\d+)")
_SOCKET = re.compile(r'listen queue of socket \\?"([^"\\]*)\\?"(?: \(fd: \d+\))? full !!! \((\d+)/(\d+)\)')
_SIGNAL = re.compile(r"killed by signal (\d+)")
_MAX_HARAKIRI_PIDS = 512


def _p(kind: str, trigger: str, summary: str, severity: Severity = Severity.CRITICAL, **kw: Any) -> LinePattern:
    return LinePattern(f"uwsgi.{kind}", trigger, summary, severity, **kw)


class UwsgiLog(PatternReader):
    name = "uwsgi.log"
    title = "uWSGI log"
    patterns = (
        _p(
            "listen_queue_full",
            r"uWSGI listen queue of socket \S+ (?:\(fd: \d+\) )?full",
            "{count}× uWSGI listen queue of {socket} full ({queued}/{backlog}): every worker busy",
        ),
        _p(
            "harakiri",
            r"HARAKIRI ON WORKER \d+|HARAKIRI triggered by worker",
            "{count}× uWSGI HARAKIRI: a request exceeded --harakiri and its worker was killed",
        ),
        _p(
            "worker_killed",
            r"DAMN ! worker \d+ \(pid: \d+\) (?:died, |MYSTERIOUSLY |MISTERIOUSLY )?killed by signal 9\b",
            "{count}× uWSGI worker killed by SIGKILL from outside (OOM killer?)",
        ),
        _p(
            "worker_crashed",
            r"DAMN ! worker \d+ \(pid: \d+\) (?:died, |MYSTERIOUSLY |MISTERIOUSLY )?killed by signal (?:4|6|7|8|11)\b"
            r"|uWSGI process \d+ got Segmentation Fault",
            "{count}× uWSGI worker crashed (signal {signal})",
        ),
        _p(
            "no_app",
            r"no python application found|no app loaded\. GAME OVER|unable to load app \d+",
            "{count}× uWSGI has no application loaded (the app failed to import)",
        ),
        _p(
            "client_gone",
            r"uwsgi_response_write(?:_body|_headers)?_do\(\): Broken pipe|SIGPIPE: writing to a closed pipe",
            "{count}× uWSGI wrote to a connection the proxy had already closed",
            Severity.WARNING,
        ),
    )
    signals: ClassVar[dict[str, Signal]] = {
        "uwsgi.listen_queue_full": Signal(cause="worker_saturation", weight=0.88),
        "uwsgi.harakiri": Signal(cause="upstream_timeout", weight=0.85),
        "uwsgi.worker_killed": Signal(cause="oom_kill", weight=0.65),
        "uwsgi.worker_crashed": Signal(cause="upstream_crashed", weight=0.8),
        "uwsgi.no_app": Signal(cause="config_error", weight=0.75),
        "uwsgi.client_gone": Signal(cause="upstream_timeout", weight=0.35),
    }

    def __init__(self) -> None:
        super().__init__()
        self._harakiri: OrderedDict[str, None] = OrderedDict()

    def feed(self, line: str) -> bool:
        if "DAMN ! worker" in line and "signal 9" in line:
            pid = _PID.search(line)
            if pid and pid.group(1) in self._harakiri:
                # The SIGKILL that carries out a HARAKIRI: already counted as uwsgi.harakiri.
                self._harakiri.pop(pid.group(1), None)
                return False
        return super().feed(line)

    def extract(self, pattern: LinePattern, detail: re.Pattern[str] | None, line: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        queue = _SOCKET.search(line)
        if queue:
            data.update(socket=queue.group(1), queued=int(queue.group(2)), backlog=int(queue.group(3)))
        signal = _SIGNAL.search(line)
        if signal:
            data["signal"] = int(signal.group(1))
        elif "Segmentation Fault" in line:
            data["signal"] = 11
        return data

    def on_match(self, pattern: LinePattern, line: str, data: dict[str, Any]) -> None:
        if pattern.kind == "uwsgi.harakiri":
            pid = _PID.search(line)
            if pid:
                self._harakiri[pid.group(1)] = None
                while len(self._harakiri) > _MAX_HARAKIRI_PIDS:
                    self._harakiri.popitem(last=False)


READERS = (UwsgiLog,)
