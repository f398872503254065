"""HAProxy logs: ``option httplog`` / ``option tcplog`` lines by termination state, and alert lines.

A traffic line is recognised by its termination state followed by the connection counters
(``SC-- 1/1/0/0/0 0/0``), which every default HTTP and TCP log format carries whatever the syslog
prefix (``haproxy[123]:``, ``log stdout format raw``, Docker). Only abnormal states are selected by
the trigger: ``----`` lines never reach Python, so a large access log costs one DFA pass. Lines are
counted per state and per ``backend/server``: a thousand ``SC--`` lines become one finding with a count.

Client-side states (``CD``, ``cD``, ``CH``, ``CQ``, ``CR``, ``cR``, ``CC``) are reported for the record
but point at no cause: the client went away, not the backend. ``<NOSRV>`` with ``SC`` means no usable
server at all; after ``Server x/y is going DOWN for maintenance`` it is deliberate (maintenance_mode).

Alert lines: ``Server b/s is DOWN, reason: ...`` (health checks), ``backend b has no server
available!``, ``is going DOWN for maintenance``, ``Connect() failed for backend b: no free ports.``,
``Proxy p reached process FD limit``. Texts: shared/reference/error-messages.md §3, HAProxy manual
section 8.5; real lines in tests/fixtures/haproxy/.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal
from bot.evidence.reader import Reader, Tally, tally_findings

#: Termination state (4 chars in HTTP mode, 2 in TCP mode) then actconn/feconn/beconn/srv_conn/retries
#: and srv_queue/backend_queue. The first character is never ``-`` (normal) or ``L`` (local answer).
_STATE_TRIGGER = r" [SsPRIDKUCc][RQCHDLT](?:[-A-Za-z]{2})? \d+/\d+/\d+/\d+/\+?\d+ \d+/\d+"
#: The state with the status before it (``503 217 - - SC-- 1/1/0/0/0 0/0``); works on custom formats too.
_STATE = re.compile(
    r"(?:(?P<status>-?\d{1,3}) \+?\d+ (?:\S+ \S+ )?)?(?P<state>[SsPRIDKUCc][RQCHDLT])(?:[-A-Za-z]{2})? "
    r"\d+/\d+/\d+/\d+/\+?\d+ \d+/\d+"
)
#: ``frontend backend/server Tq/Tw/Tc/Tr/Ta`` (2 to 7 timers, padded or not) when the line has them.
_ROUTE = re.compile(r"(?P<frontend>\S+) (?P<backend>[^\s/]+)/(?P<server>\S*) +(?:\+?-?\d+ */ *){2,6}\+?-?\d+ ")
_REQUEST = re.compile(r'"((?:GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH|CONNECT|TRACE|<BADREQ>)[^"]*)"')

_SERVER_DOWN = re.compile(
    r"(?:Backup )?Server (?P<backend>[^\s/]+)/(?P<server>\S+) is DOWN(?:, reason: (?P<reason>[^,.]+))?"
    r"(?:, code: (?P<code>\d+))?(?:, info: \"(?P<info>[^\"]*))?"
)
_MAINT = re.compile(
    r"Server (?P<backend>[^\s/]+)/(?P<server>\S+) (?:is going DOWN for maintenance|is DOWN for maintenance)"
)
_LEAVE_MAINT = re.compile(r"Server (?P<backend>[^\s/]+)/(?P<server>\S+) is UP[^\n]*leaving (?:forced )?maintenance")
_NO_SERVER = re.compile(r"(?:backend|proxy) '?(?P<backend>[^\s']+)'? has no server available!")
_CHECK_FAILED = re.compile(
    r"Health check for (?:backup )?server (?P<backend>[^\s/]+)/(?P<server>\S+) failed, reason: (?P<reason>[^,]+)"
)
_NO_PORTS = re.compile(r"Connect\(\) failed for backend (?P<backend>\S+?): no free ports")
_FD_LIMIT = re.compile(r"Proxy (?P<backend>\S+) reached (?P<limit>system FD|process FD|system memory) limit")


@dataclass(frozen=True)
class _Kind:
    summary: str
    severity: Severity = Severity.CRITICAL


#: Traffic-line kinds by (first, second) character of the termination state.
_STATE_KIND = {
    ("S", "C"): "haproxy.server_refused",
    ("s", "C"): "haproxy.connect_timeout",
    ("S", "H"): "haproxy.server_aborted",
    ("s", "H"): "haproxy.server_timeout",
    ("P", "H"): "haproxy.bad_response",
    ("S", "D"): "haproxy.server_aborted_data",
    ("s", "D"): "haproxy.server_timeout_data",
    ("P", "D"): "haproxy.bad_response_data",
    ("s", "Q"): "haproxy.queue_timeout",
    ("R", "C"): "haproxy.resource_exhausted",
    ("P", "C"): "haproxy.fd_limit_connect",
    ("P", "T"): "haproxy.tarpit",
    ("D", "D"): "haproxy.killed_server_down",
    ("D", "H"): "haproxy.killed_server_down",
}

_KINDS: dict[str, _Kind] = {
    "haproxy.server_refused": _Kind("{count}× SC: {key} refused the connection (status {status})"),
    "haproxy.no_server": _Kind("{count}× SC with <NOSRV>: backend {key} had no usable server (status {status})"),
    "haproxy.no_server_maintenance": _Kind(
        "{count}× <NOSRV>: every server of backend {key} is in maintenance (status {status})"
    ),
    "haproxy.connect_timeout": _Kind("{count}× sC: connect to {key} hit 'timeout connect' (status {status})"),
    "haproxy.server_aborted": _Kind("{count}× SH: {key} closed or reset before sending headers (status {status})"),
    "haproxy.server_timeout": _Kind(
        "{count}× sH: {key} did not send headers within 'timeout server' (status {status})"
    ),
    "haproxy.bad_response": _Kind("{count}× PH: HAProxy rejected the response of {key} (status {status})"),
    "haproxy.server_aborted_data": _Kind("{count}× SD: {key} died while sending the body", Severity.WARNING),
    "haproxy.server_timeout_data": _Kind("{count}× sD: {key} stalled while sending the body", Severity.WARNING),
    "haproxy.bad_response_data": _Kind("{count}× PD: invalid body from {key}", Severity.WARNING),
    "haproxy.queue_timeout": _Kind("{count}× sQ: requests for {key} expired in the queue (status {status})"),
    "haproxy.resource_exhausted": _Kind("{count}× RC: no local resource (source port, socket) to reach {key}"),
    "haproxy.fd_limit_connect": _Kind("{count}× PC: process socket limit reached connecting to {key}"),
    "haproxy.tarpit": _Kind("{count}× PT: requests tarpitted (status {status})", Severity.WARNING),
    "haproxy.rate_limited": _Kind("{count}× requests denied with 429 (status {status})", Severity.WARNING),
    "haproxy.request_denied": _Kind("{count}× PR: requests blocked by a rule (status {status})", Severity.INFO),
    "haproxy.rewrite_failed": _Kind("{count}× PR 500: a header rewrite failed", Severity.WARNING),
    "haproxy.killed_server_down": _Kind("{count}× streams killed because {key} went DOWN", Severity.WARNING),
    "haproxy.client_abort": _Kind(
        "{count}× {state}: the client gave up or timed out (not a backend fault)", Severity.INFO
    ),
    "haproxy.server_down": _Kind("{count}× health check marked {key} DOWN ({reason})"),
    "haproxy.server_down_l7": _Kind(
        "{count}× health check marked {key} DOWN ({reason}, code {code})", Severity.WARNING
    ),
    "haproxy.server_down_tls": _Kind("{count}× health check marked {key} DOWN ({reason})"),
    "haproxy.check_failed": _Kind("{count}× health check for {key} failed ({reason})", Severity.WARNING),
    "haproxy.no_server_available": _Kind("{count}× backend {key} has no server available"),
    "haproxy.backend_in_maintenance": _Kind("backend {key} has no server available: all in maintenance"),
    "haproxy.server_maintenance": _Kind("{count}× server {key} put in maintenance", Severity.WARNING),
    "haproxy.no_free_ports": _Kind("{count}× no free source port to connect to backend {key}"),
    "haproxy.fd_limit": _Kind("{count}× proxy {key} reached the {limit} limit"),
}


def _describe(kind: str, key: str, count: int, data: dict[str, Any]) -> tuple[str, Severity]:
    spec = _KINDS[kind]
    values = {"reason": "?", "code": "?", "status": "?", "state": "?", "limit": "?", **data}
    summary = spec.summary.format(
        count=count, key=key or "?", **{k: v for k, v in values.items() if k not in {"count", "key"}}
    )
    return summary, spec.severity


_CLIENT_FIRST = {"C", "c"}
#: ``<NOSRV>`` as printed, HTML-escaped, or stripped by a web page that swallowed the angle brackets.
_NO_SERVER_NAMES = {"<NOSRV>", "&lt;NOSRV&gt;", "", "-"}


class HaproxyLog(Reader):
    """HAProxy traffic lines with an abnormal termination state, and its server/backend alert lines."""

    name = "haproxy.log"
    title = "HAProxy log (httplog/tcplog termination states, health-check and alert lines)"
    triggers = (
        _STATE_TRIGGER,
        r"Server \S+/\S+ is DOWN",
        r"Server \S+/\S+ is going DOWN for maintenance",
        r"Server \S+/\S+ is UP[^\n]*maintenance",
        r"has no server available!",
        r"Health check for (?:backup )?server \S+ failed",
        r"Connect\(\) failed for backend \S+ no free ports",
        r"Proxy \S+ reached (?:system FD|process FD|system memory) limit",
    )
    signals: ClassVar[dict[str, Signal]] = {
        "haproxy.server_refused": Signal(cause="upstream_down", weight=0.85),
        "haproxy.no_server": Signal(cause="upstream_down", weight=0.8),
        "haproxy.no_server_maintenance": Signal(cause="maintenance_mode", weight=0.85),
        "haproxy.connect_timeout": Signal(cause="upstream_connect_timeout", weight=0.85),
        "haproxy.server_aborted": Signal(cause="upstream_crashed", weight=0.85),
        "haproxy.server_timeout": Signal(cause="upstream_timeout", weight=0.85),
        "haproxy.bad_response": Signal(cause="upstream_bad_response", weight=0.85),
        "haproxy.server_aborted_data": Signal(cause="upstream_crashed", weight=0.6),
        "haproxy.server_timeout_data": Signal(cause="upstream_timeout", weight=0.6),
        "haproxy.bad_response_data": Signal(cause="upstream_bad_response", weight=0.6),
        "haproxy.queue_timeout": Signal(cause="worker_saturation", weight=0.85),
        "haproxy.resource_exhausted": Signal(cause="port_exhaustion", weight=0.7),
        "haproxy.fd_limit_connect": Signal(cause="fd_exhaustion", weight=0.7),
        "haproxy.tarpit": Signal(cause="rate_limited", weight=0.6),
        "haproxy.rate_limited": Signal(cause="rate_limited", weight=0.85),
        "haproxy.rewrite_failed": Signal(cause="config_error", weight=0.6),
        "haproxy.killed_server_down": Signal(cause="upstream_down", weight=0.5),
        "haproxy.server_down": Signal(cause="upstream_down", weight=0.75),
        "haproxy.server_down_l7": Signal(cause="upstream_down", weight=0.55),
        "haproxy.server_down_tls": Signal(cause="upstream_tls_error", weight=0.7),
        "haproxy.check_failed": Signal(cause="upstream_down", weight=0.4),
        "haproxy.no_server_available": Signal(cause="upstream_down", weight=0.8),
        "haproxy.backend_in_maintenance": Signal(cause="maintenance_mode", weight=0.85),
        "haproxy.server_maintenance": Signal(cause="maintenance_mode", weight=0.7),
        "haproxy.no_free_ports": Signal(cause="port_exhaustion", weight=0.85),
        "haproxy.fd_limit": Signal(cause="fd_exhaustion", weight=0.85),
    }

    def __init__(self) -> None:
        self.tally = Tally()
        #: backend → servers currently in maintenance (entered and not yet left), in log order.
        self._maint: dict[str, set[str]] = {}
        #: backends for which HAProxy said it had no free source port.
        self._no_ports: set[str] = set()

    def feed(self, line: str) -> bool:
        state = _STATE.search(line)
        if state:
            self._traffic(line, state, _ROUTE.search(line))
            return False
        for handler in (self._maintenance, self._server_down, self._no_server, self._other):
            if handler(line):
                break
        return False

    # -- traffic lines ----------------------------------------------------------------------
    def _traffic(self, line: str, match: re.Match[str], route: re.Match[str] | None) -> None:
        state = match["state"]
        backend, server, frontend = (route["backend"], route["server"], route["frontend"]) if route else ("?", "?", "?")
        status = match["status"] or "-"
        first, second = state[0], state[1]
        if server in _NO_SERVER_NAMES:
            server = "<NOSRV>"
        key = backend if server == "<NOSRV>" else f"{backend}/{server}"
        if first in _CLIENT_FIRST:
            kind = "haproxy.client_abort"
            key = state
        elif (first, second) == ("S", "C") and server == "<NOSRV>":
            kind = "haproxy.no_server_maintenance" if self._maint.get(backend) else "haproxy.no_server"
            key = backend
        elif (first, second) == ("P", "H") and status == "500":
            # HAProxy answers 500 for a failed response header rewrite (manual 8.5): a config matter.
            kind = "haproxy.rewrite_failed"
        elif first == "P" and second == "R":
            kind = {"429": "haproxy.rate_limited", "500": "haproxy.rewrite_failed"}.get(
                status, "haproxy.request_denied"
            )
            key = frontend
        elif status == "429":
            kind = "haproxy.rate_limited"
        elif (first, second) == ("S", "C") and backend in self._no_ports:
            # The connect failed locally (no source port), not at the server.
            kind = "haproxy.resource_exhausted"
        else:
            found = _STATE_KIND.get((first, second))
            if found is None:
                return
            kind = found
        data: dict[str, Any] = {"backend": backend, "server": server, "state": state, "status": status}
        request = _REQUEST.search(line)
        if request:
            data["request"] = request.group(1)[:200]
        self.tally.add(kind, line, key, **data)

    # -- alert lines ------------------------------------------------------------------------
    def _maintenance(self, line: str) -> bool:
        left = _LEAVE_MAINT.search(line)
        if left:
            self._maint.get(left["backend"], set()).discard(left["server"])
            return True
        entered = _MAINT.search(line)
        if not entered:
            return False
        backend, server = entered["backend"], entered["server"]
        self._maint.setdefault(backend, set()).add(server)
        self.tally.add("haproxy.server_maintenance", line, f"{backend}/{server}", backend=backend, server=server)
        return True

    def _server_down(self, line: str) -> bool:
        down = _SERVER_DOWN.search(line)
        if not down:
            return False
        backend, server = down["backend"], down["server"]
        reason = (down["reason"] or "no reason given").strip()
        self._maint.get(backend, set()).discard(server)
        if reason.startswith("Layer7"):
            kind = "haproxy.server_down_l7"
        elif reason.startswith("Layer6"):
            kind = "haproxy.server_down_tls"
        else:
            kind = "haproxy.server_down"
        data: dict[str, Any] = {"backend": backend, "server": server, "reason": reason}
        if down["code"]:
            data["code"] = int(down["code"])
        if down["info"]:
            data["info"] = down["info"]
        self.tally.add(kind, line, f"{backend}/{server}", **data)
        return True

    def _no_server(self, line: str) -> bool:
        found = _NO_SERVER.search(line)
        if not found:
            return False
        backend = found["backend"]
        kind = "haproxy.backend_in_maintenance" if self._maint.get(backend) else "haproxy.no_server_available"
        self.tally.add(kind, line, backend, backend=backend)
        return True

    def _other(self, line: str) -> bool:
        check = _CHECK_FAILED.search(line)
        if check:
            key = f"{check['backend']}/{check['server']}"
            self.tally.add("haproxy.check_failed", line, key, backend=check["backend"], reason=check["reason"])
            return True
        ports = _NO_PORTS.search(line)
        if ports:
            self._no_ports.add(ports["backend"])
            self.tally.add("haproxy.no_free_ports", line, ports["backend"], backend=ports["backend"])
            return True
        limit = _FD_LIMIT.search(line)
        if limit:
            kind = "haproxy.fd_limit"
            self.tally.add(kind, line, limit["backend"], backend=limit["backend"], limit=limit["limit"])
            return True
        return False

    def findings(self) -> list[Finding]:
        return tally_findings(self.name, self.tally.items(), _describe)


READERS = (HaproxyLog,)
