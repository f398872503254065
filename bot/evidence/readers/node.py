"""Node.js runtime failures and the PM2 process manager's log.

:class:`NodeRuntime` recognises what Node prints when a process dies (texts captured from Node 20 on
this machine; older wordings from public reports):

* ``FATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory`` (also
  ``Ineffective mark-compacts near heap limit``, ``CALL_AND_RETRY_LAST``, ``Committing semi space
  failed. Allocation failed - process out of memory``): V8 hit its heap limit and aborted.
* ``Error: listen EADDRINUSE: address already in use 127.0.0.1:3000``: the port is taken.
* An uncaught exception: Node prints the throwing source location (``/app/server.js:2`` or
  ``node:events:502``), the source line, a caret, a blank line, then ``TypeError: ...`` and the stack;
  since Node 18 a ``Node.js v20.x`` footer closes the report. The reader follows the block from the
  location line to the error line and quotes that. ``UnhandledPromiseRejectionWarning`` (Node ≤ 14)
  and ``[UnhandledPromiseRejection: ...]`` are unhandled rejections.
  Errors that are failed calls to other services (``connect ECONNREFUSED``, ``getaddrinfo ENOTFOUND``)
  are also read by the outbound and database readers, which name the dependency.

:class:`Pm2Log` reads PM2's daemon log (``lib/God.js``, ``lib/Worker.js``; pm2 5.4.3 captured here):
``App [api:0] exited with code [1] via signal [SIGINT]`` (the signal text defaults to SIGINT when PM2
recorded none, so only the code is trusted, and ``[SIGKILL]``), ``Script ... had too many unstable
restarts (N). Stopped. "errored"`` and ``[PM2][WORKER] Process N restarted because it exceeds
--max-memory-restart value``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal
from bot.evidence.reader import LinePattern, PatternReader, Reader, Tally

_HEAP = re.compile(r"FATAL ERROR: [^\n]*Allocation failed - (?:JavaScript heap|process) out of memory")
_EADDRINUSE = re.compile(r"listen EADDRINUSE(?:: address already in use)? ?(\S*)")
# Multi-line flag: the scanner's prefilter runs over whole chunks, where a bare ``$`` is the chunk's end.
_LOCATION = r"(?m:(?:^|[\s|])(?:node:[\w/]+|[^\s:|]+\.(?:js|mjs|cjs|ts)):\d+[ \t\r]*$)"
_ERROR_LINE = re.compile(r"(?:^|[\s|:\]])((?:[A-Z][\w.]*)?(?:Error|Exception))(?: \[[A-Z_]+\])?: (.+)$")
_REJECTION = re.compile(r"UnhandledPromiseRejectionWarning: (.+)$|\[UnhandledPromiseRejection: (.+)$")
_FOOTER = re.compile(r"Node\.js v\d+\.\d+\.\d+")
#: Lines to look at after the location line for the error line (source line, caret, blank, error).
_BLOCK_LINES = 8


class NodeRuntime(Reader):
    name = "node.runtime"
    title = "Node.js runtime errors (heap out of memory, EADDRINUSE, uncaught exceptions)"
    triggers = (
        r"Allocation failed - (?:JavaScript heap|process) out of memory",
        r"listen EADDRINUSE",
        _LOCATION,
        r"UnhandledPromiseRejectionWarning: |\[UnhandledPromiseRejection: ",
        r"(?m:Node\.js v\d+\.\d+\.\d+[ \t\r]*$)",
    )
    signals: ClassVar[dict[str, Signal]] = {
        "node.heap_oom": Signal(cause="oom_kill", weight=0.8),
        "node.eaddrinuse": Signal(cause="config_error", weight=0.75),
        "node.uncaught_exception": Signal(cause="app_exception", weight=0.6),
        "node.unhandled_rejection": Signal(cause="app_exception", weight=0.5),
    }

    def __init__(self) -> None:
        self.tally = Tally()
        self._left = 0

    def feed(self, line: str) -> bool:
        if _HEAP.search(line):
            self._left = 0
            self.tally.add("node.heap_oom", line)
            return False
        found = _EADDRINUSE.search(line)
        if found:
            self._left = 0
            self.tally.add("node.eaddrinuse", line, address=found.group(1) or "?")
            return False
        rejection = _REJECTION.search(line)
        if rejection:
            self.tally.add("node.unhandled_rejection", line, message=(rejection.group(1) or rejection.group(2))[:200])
            return False
        if _FOOTER.search(line) and not self._left:
            self.tally.add("node.crash_report", line)
            return False
        if self._left:
            error = _ERROR_LINE.search(line)
            if error:
                self._left = 0
                self.tally.add("node.uncaught_exception", line, error=error.group(1), message=error.group(2)[:200])
                return False
            self._left -= 1
            return self._left > 0
        if re.search(_LOCATION, line):
            self._left = _BLOCK_LINES
            return True
        return False

    def end_block(self) -> None:
        self._left = 0

    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        merged: dict[str, tuple[int, list[str], dict[str, Any]]] = {}
        for kind, _key, count, evidence, data in self.tally.items():
            total, lines, first = merged.get(kind, (0, [], data))
            merged[kind] = (total + count, lines + [x for x in evidence if x not in lines], first)
        for kind, (count, lines, data) in merged.items():
            if kind == "node.heap_oom":
                summary, severity = f"{count}× Node.js ran out of V8 heap and aborted", Severity.CRITICAL
            elif kind == "node.eaddrinuse":
                summary = f"Node.js cannot listen on {data.get('address', '?')}: address already in use"
                severity = Severity.CRITICAL
            elif kind == "node.uncaught_exception":
                summary = f"{count}× uncaught {data.get('error')} crashed the Node.js process: {data.get('message')}"
                severity = Severity.CRITICAL
            elif kind == "node.unhandled_rejection":
                summary, severity = f"{count}× unhandled promise rejection: {data.get('message')}", Severity.WARNING
            else:
                summary, severity = f"{count} Node.js crash reports (process exited)", Severity.INFO
            out.append(
                Finding(
                    kind=kind,
                    severity=severity,
                    summary=summary,
                    evidence=tuple(lines[:4]),
                    data={**data, "count": count},
                    reader=self.name,
                )
            )
        return out


_APP = re.compile(r"App \[([^\]]+)\] exited with code \[(-?\d+)\] via signal \[(\w+)\]")


def _pm2(kind: str, trigger: str, summary: str, severity: Severity = Severity.CRITICAL, **kw: Any) -> LinePattern:
    return LinePattern(f"pm2.{kind}", trigger, summary, severity, **kw)


class Pm2Log(PatternReader):
    name = "pm2.log"
    title = "PM2 daemon log"
    patterns = (
        _pm2(
            "errored",
            r"had too many unstable restarts \(\d+\)\. Stopped",
            "PM2 gave up restarting {app}: too many unstable restarts (status errored)",
        ),
        _pm2(
            "memory_restart",
            r"restarted because it exceeds --max-memory-restart value",
            "{count}× PM2 restarted a process over its --max-memory-restart limit",
        ),
        _pm2(
            "app_killed",
            r"App \[[^\]]+\] exited with code \[\S+\] via signal \[SIGKILL\]",
            "{count}× PM2 app {app} was SIGKILLed",
        ),
        _pm2(
            "app_crashed",
            r"App \[[^\]]+\] exited with code \[(?:-?[1-9]\d*)\]",
            "{count}× PM2 app {app} exited with code {code}",
        ),
        _pm2(
            "app_exited",
            r"App \[[^\]]+\] exited with code \[0\]",
            "{count}× PM2 app {app} stopped (code 0)",
            Severity.INFO,
        ),
    )
    signals: ClassVar[dict[str, Signal]] = {
        "pm2.errored": Signal(cause="upstream_down", weight=0.8),
        "pm2.memory_restart": Signal(cause="oom_kill", weight=0.6),
        "pm2.app_killed": Signal(cause="oom_kill", weight=0.5),
        "pm2.app_crashed": Signal(cause="upstream_crashed", weight=0.6),
    }

    def extract(self, pattern: LinePattern, detail: re.Pattern[str] | None, line: str) -> dict[str, Any]:
        found = _APP.search(line)
        if found:
            return {"app": found.group(1), "code": int(found.group(2)), "signal": found.group(3)}
        script = re.search(r"Script (\S+) had too many", line)
        return {"app": script.group(1)} if script else {}


READERS = (NodeRuntime, Pm2Log)
