"""Calls from the application to OUTSIDE services that time out, are refused, reset or do not resolve.

Recognised client texts (whatever the surrounding log layout: tracebacks, Laravel/Monolog lines,
Docker or journald prefixes, JSON-escaped quotes):

* Python ``requests``/``urllib3``: ``HTTPSConnectionPool(host='api.example.com', port=443): Read timed
  out.``, ``... Max retries exceeded with url: ... (Caused by ConnectTimeoutError(...))``,
  ``NewConnectionError(... [Errno 111] Connection refused)``, ``NameResolutionError`` /
  ``[Errno -2] Name or service not known``, ``('Connection aborted.', RemoteDisconnected(...))``.
  aiohttp ``Cannot connect to host H:P``.
* libcurl through PHP (plain ``curl_error()``, Guzzle, WordPress Requests): ``cURL error 28: Operation
  timed out after N milliseconds ...``, ``cURL error 7: Failed to connect to H port P``, ``cURL error
  6: Could not resolve host: H``, ``cURL error 35/56/52``; Guzzle 5's ``[curl] 28: ...``.
* Node.js: ``connect ETIMEDOUT H:P``, ``connect ECONNREFUSED H:P``, ``getaddrinfo ENOTFOUND H``,
  ``read ECONNRESET``, ``socket hang up``; axios ``timeout of N ms exceeded``.
* Go ``net/http``: ``dial tcp H:P: i/o timeout`` / ``connect: connection refused``,
  ``Client.Timeout exceeded while awaiting headers``.

Only a call to an outside host is an ``external_dependency``: a target on the loopback
(``127.0.0.1``, ``localhost``, ``::1``), a database/cache port (5432, 3306, 6379, 11211, 27017, ...)
or a database-looking service name (``db``, ``postgres``, ``redis`` ...) is left to the database
readers, which recognise the same lines by their own content. A name that does not resolve is a
``dns_failure``. When the client text names no host (``read ECONNRESET``, ``httpx.ReadTimeout``) the
finding is kept with a lower weight. Texts: captured in tests/fixtures/apps (requests 2.34/urllib3
2.8, PHP 8.2 curl, Node 20) and public reports listed in tests/fixtures/apps/SOURCES.md.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal
from bot.evidence.reader import Reader, Tally

#: Ports of databases, caches and queues: a failing call to one is a database problem, not a third party.
DATABASE_PORTS = frozenset({5432, 6432, 3306, 33060, 6379, 26379, 11211, 27017, 1433, 1521, 9042, 5672})
_DATABASE_NAME = re.compile(
    r"^(?:db|database|postgres(?:ql)?|pg(?:bouncer)?|mysql|mariadb|redis|memcached?|mongo(?:db)?"
    r"|rabbitmq|elasticsearch|opensearch)(?:[-_.]?\w*)?$",
    re.I,
)
_LOCAL_NAME = re.compile(r"^(?:localhost(?:\.localdomain)?|ip6-localhost|127(?:\.\d{1,3}){3}|::1|0\.0\.0\.0|::)$", re.I)


def is_local_or_database(host: str | None, port: int | None) -> bool:
    """True when host:port is the machine itself or a database/cache (never an outside service)."""
    if port is not None and port in DATABASE_PORTS:
        return True
    if not host:
        return False
    name = host.strip("[]").lower()
    return bool(_LOCAL_NAME.match(name) or _DATABASE_NAME.match(name))


# Where a host:port sits in each client's text.
_POOL = re.compile(r"ConnectionPool\(host=\\?['\"]([^'\"\\]+)\\?['\"], port=(\d+)\)")
_URLLIB_CONN = re.compile(r"Connection to (\S+?) timed out")
_AIOHTTP = re.compile(r"Cannot connect to host (\S+?):(\d+)")
_CURL_CONNECT = re.compile(
    r"(?:Failed to connect to|Could not resolve host:|Resolving timed out[^:]*:?) ?\s*([\w.-]+)(?: port (\d+))?"
)
_CURL_FOR_URL = re.compile(r"\bfor (?:GET |POST |PUT |DELETE |PATCH )?(https?://[^\s\"'\\)]+)")
_URL = re.compile(r"https?://(?:[^@/\s]*@)?(\[[^\]]+\]|[^:/\s\"'\\)]+)(?::(\d+))?")
_NODE_ADDR = re.compile(r"\b(?:connect|read|write) E[A-Z]+ (\[?[\w.:-]+?\]?):(\d+)\b")
_NODE_DNS = re.compile(r"getaddrinfo (?:ENOTFOUND|EAI_AGAIN) ([\w.-]+)")
_GO_DIAL = re.compile(r"dial tcp (\[?[\w.:-]+?\]?):(\d+):")
_GO_LOOKUP = re.compile(r"dial tcp: lookup ([\w.-]+)")
_CURL_CODE = re.compile(r"(?i:curl error:?|\[curl\]) ?(\d+)|\(cURL error code: (\d+)\)")

# Which failure each text describes. Checked in order; the first hit names the failure.
_DNS = re.compile(
    r"NameResolutionError|Name or service not known|Temporary failure in name resolution|nodename nor servname"
    r"|getaddrinfo failed|\[Errno -[235]\]|Could not resolve host|getaddrinfo (?:ENOTFOUND|EAI_AGAIN)"
    r"|dial tcp: lookup [^\s:]+(?:[^\n]*no such host)?|(?i:curl error):? ?6\b|\[curl\] 6:"
)
_CONNECT_TIMEOUT = re.compile(
    r"ConnectTimeout|connect timeout=|Connection timed out after|Failed to connect to [^\n]*(?:Timeout was reached"
    r"|Connection timed out)|connect ETIMEDOUT|dial tcp [^\n]*i/o timeout|Resolving timed out"
)
_READ_TIMEOUT = re.compile(
    r"Read timed out|ReadTimeout|Operation timed out after|(?i:curl error):? ?28\b|\[curl\] 28:|cURL error code: 28"
    r"|ESOCKETTIMEDOUT|timeout of \d+ ?ms exceeded|Client\.Timeout exceeded|ETIMEDOUT|\bTimeoutError\b"
)
_REFUSED = re.compile(
    r"Connection refused|\[Errno 111\]|ECONNREFUSED|(?i:curl error):? ?7\b|\[curl\] 7:|Couldn't connect to server"
    r"|connect: connection refused"
)
_RESET = re.compile(
    r"Connection reset|Connection aborted|RemoteDisconnected|ECONNRESET|socket hang up|\[Errno 104\]"
    r"|(?i:curl error):? ?(?:52|56)\b|Empty reply from server|connection reset by peer"
)
_TLS = re.compile(r"SSLError|CERTIFICATE_VERIFY_FAILED|(?i:curl error):? ?(?:35|51|60)\b|SSL certificate problem")


class OutboundCall(Reader):
    """Failed calls from the app to other services, classified by failure and by where they went."""

    name = "outbound.client"
    title = "Application calls to outside services (requests/urllib3, cURL/Guzzle, Node, Go)"
    triggers = (
        r"ConnectionPool\(host=",
        r"Connection to \S+ timed out\. \(connect timeout",
        r"Cannot connect to host \S+:\d+",
        r"(?i:curl error):? ?\d+|\[curl\] \d+:|\(cURL error code: \d+\)",
        r"\b(?:connect|read|write) E(?:TIMEDOUT|CONNREFUSED|CONNRESET|HOSTUNREACH|NETUNREACH) ",
        r"getaddrinfo E(?:NOTFOUND|AI_AGAIN) ",
        r"Error: (?:socket hang up|read ECONNRESET|ESOCKETTIMEDOUT)",
        r"AxiosError: timeout of \d+ ?ms exceeded",
        r"dial tcp(?: \S+|: lookup \S+ on \S+):? (?:i/o timeout|connect: connection refused|no such host)",
        r"Client\.Timeout exceeded while awaiting headers",
        r"httpx\.(?:ReadTimeout|ConnectTimeout|ConnectError)",
        r"Connection aborted\.', (?:RemoteDisconnected|ConnectionResetError)",
    )
    signals: ClassVar[dict[str, Signal]] = {
        "outbound.timeout": Signal(cause="external_dependency", weight=0.85),
        "outbound.connect_timeout": Signal(cause="external_dependency", weight=0.85),
        "outbound.refused": Signal(cause="external_dependency", weight=0.8),
        "outbound.reset": Signal(cause="external_dependency", weight=0.7),
        "outbound.tls": Signal(cause="external_dependency", weight=0.7),
        "outbound.unknown_host_failure": Signal(cause="external_dependency", weight=0.5),
        "outbound.dns_failure": Signal(cause="dns_failure", weight=0.8),
    }
    _summaries: ClassVar[dict[str, str]] = {
        "outbound.timeout": "{count}× calls to {host} timed out waiting for the answer",
        "outbound.connect_timeout": "{count}× connecting to {host} timed out",
        "outbound.refused": "{count}× {host} refused the connection",
        "outbound.reset": "{count}× {host} reset or dropped the connection",
        "outbound.tls": "{count}× TLS with {host} failed",
        "outbound.unknown_host_failure": "{count}× an outside call failed ({failure}); the target is not named",
        "outbound.dns_failure": "{count}× {host} could not be resolved",
    }

    def __init__(self) -> None:
        self.tally = Tally()

    def feed(self, line: str) -> bool:
        failure = _failure(line)
        if failure is None:
            return False
        host, port = _target(line)
        if failure == "dns":
            if host and not is_local_or_database(host, None):
                self.tally.add("outbound.dns_failure", line, host=host)
            return False
        if is_local_or_database(host, port):
            return False
        if host is None and not _CURL_CODE.search(line):
            self.tally.add("outbound.unknown_host_failure", line, failure=failure)
            return False
        # A PHP cURL error that names no host is still a call to an outside service: PHP apps use
        # cURL for HTTP APIs, not for their database.
        target = (f"{host}:{port}" if port else host) if host else "(host not named)"
        kind = {
            "connect_timeout": "outbound.connect_timeout",
            "timeout": "outbound.timeout",
            "refused": "outbound.refused",
            "reset": "outbound.reset",
            "tls": "outbound.tls",
        }[failure]
        self.tally.add(kind, line, host=target)
        return False

    def findings(self) -> list[Finding]:
        # One finding per kind (hosts listed in data): several hosts failing the same way are one
        # piece of evidence, not independent confirmations.
        merged: dict[str, dict[str, Any]] = {}
        for kind, _key, count, evidence, data in self.tally.items():
            slot = merged.setdefault(kind, {"count": 0, "evidence": [], "hosts": [], "failure": None})
            slot["count"] += count
            slot["evidence"].extend(x for x in evidence if x not in slot["evidence"])
            host = data.get("host")
            if host and host not in slot["hosts"]:
                slot["hosts"].append(host)
            slot["failure"] = slot["failure"] or data.get("failure")
        out: list[Finding] = []
        for kind, slot in merged.items():
            hosts: list[str] = slot["hosts"]
            summary = self._summaries[kind].format(
                count=slot["count"], host=", ".join(hosts[:3]) or "?", failure=slot["failure"] or "?"
            )
            body: dict[str, Any] = {"count": slot["count"]}
            if hosts:
                body["hosts"] = hosts[:10]
            if slot["failure"]:
                body["failure"] = slot["failure"]
            out.append(
                Finding(
                    kind=kind,
                    severity=Severity.CRITICAL if kind != "outbound.unknown_host_failure" else Severity.WARNING,
                    summary=summary,
                    evidence=tuple(slot["evidence"][:4]),
                    data=body,
                    reader=self.name,
                )
            )
        return out


def _failure(line: str) -> str | None:
    if _DNS.search(line):
        return "dns"
    if _CONNECT_TIMEOUT.search(line):
        return "connect_timeout"
    if _READ_TIMEOUT.search(line):
        return "timeout"
    if _REFUSED.search(line):
        return "refused"
    if _TLS.search(line):
        return "tls"
    if _RESET.search(line):
        return "reset"
    return None


def _target(line: str) -> tuple[str | None, int | None]:
    """The host (and port, when given) the failing call went to."""
    for rx in (_POOL, _AIOHTTP, _NODE_ADDR, _GO_DIAL):
        found = rx.search(line)
        if found:
            return found.group(1).strip("[]"), int(found.group(2))
    for rx in (_NODE_DNS, _GO_LOOKUP, _URLLIB_CONN):
        found = rx.search(line)
        if found:
            return found.group(1), None
    url = _CURL_FOR_URL.search(line)
    if url:
        parsed = _URL.search(url.group(1))
        if parsed:
            return parsed.group(1).strip("[]"), int(parsed.group(2)) if parsed.group(2) else None
    found = _CURL_CONNECT.search(line)
    if found:
        return found.group(1), int(found.group(2)) if found.group(2) else None
    if _CURL_CODE.search(line):
        # A cURL error line that names no host: take the first URL on the line, if any.
        parsed = _URL.search(line.split("libcurl-errors.html", 1)[-1])
        if parsed and "curl.haxx.se" not in parsed.group(1) and "curl.se" not in parsed.group(1):
            return parsed.group(1).strip("[]"), int(parsed.group(2)) if parsed.group(2) else None
    return None, None


READERS = (OutboundCall,)
