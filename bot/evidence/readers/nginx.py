"""nginx error log: the upstream failures of the catalog, limits, resources, resolver and TLS errors.

Lines are recognised by their message text anywhere in the line, so the timestamp layout of any
nginx version (``PID#0`` or ``PID#TID``), Docker and journald prefixes, JSON-wrapped log lines and
redacted addresses all work. errno numbers are matched rather than ``strerror`` texts, which follow
the C library (glibc, musl) and, on Windows builds, Winsock (10061 refused, 10060 timed out, 10054
reset, 10013 access denied). Message texts: shared/reference/error-messages.md §1.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from bot.core.models import Severity, Signal
from bot.evidence.reader import LinePattern, PatternReader

_CONNECTING = r"while connecting to upstream"
_UPSTREAM_FIELD = re.compile(r'upstream: \\?"(?:[a-z0-9]+://)?(unix:[^":\\]+|[^"/\\]+)')
_CONNECT_TO = re.compile(r"connect\(\) to (\S+) failed")
_SERVER_FIELD = re.compile(r'server: ([^,\s]+)')
_REQUEST_FIELD = re.compile(r'request: \\?"([^"\\]*)')
_ZONE = re.compile(r'zone \\?"([^"\\]+)')
_EXCESS = re.compile(r"excess: ([\d.]+)")
_RESOLVE = re.compile(r"(\S+) could not be resolved \((\d+): ([^)]*)\)")
_HOST_NOT_FOUND = re.compile(r'host not found in upstream \\?"([^"\\]+)')


def _p(kind: str, trigger: str, summary: str, severity: Severity = Severity.CRITICAL, **kw: Any) -> LinePattern:
    return LinePattern(f"nginx.{kind}", trigger, summary, severity, **kw)


class NginxErrorLog(PatternReader):
    name = "nginx.error"
    title = "nginx error log"
    # Ordered: the first matching pattern wins, so specific phases come before general texts.
    patterns = (
        _p("upstream_permission_denied", r"\((?:13|10013): [^)]*\) while connecting to upstream",
           "{count}× permission denied connecting to upstream {upstream}", key="upstream"),
        _p("port_exhaustion", r"\(99: Cannot assign requested address\)|failed \(99: ",
           "{count}× no free local port to reach {upstream} (EADDRNOTAVAIL)", key="upstream"),
        _p("upstream_backlog_full", r"failed \(11: [^)]*\) while connecting to upstream",
           "{count}× upstream {upstream} accept queue full (EAGAIN on connect)", key="upstream"),
        _p("upstream_socket_missing", r"connect\(\) to unix:[^ ]+ failed \(2: ",
           "{count}× upstream socket {upstream} does not exist", key="upstream"),
        _p("upstream_refused", r"connect\(\) (?:to \S+ )?failed \((?:111|10061): ",
           "{count}× connection refused by upstream {upstream}", key="upstream"),
        _p("upstream_unreachable",
           r"connect\(\) (?:to \S+ )?failed \((?:101|112|113|10051|10065): ",
           "{count}× upstream {upstream} unreachable (no route / network down)", key="upstream"),
        _p("fd_exhaustion", r"\((?:23|24): Too many open files",
           "{count}× out of file descriptors (Too many open files)"),
        _p("worker_connections", r"worker_connections are not enough",
           "{count}× nginx worker_connections exhausted", unless=r"listening sockets"),
        _p("upstream_connect_timeout",
           r"upstream timed out \((?:110|10060): [^)]*\) while (?:connecting to upstream|SSL handshaking to upstream)",
           "{count}× timed out connecting to upstream {upstream}", key="upstream"),
        _p("upstream_timeout", r"upstream timed out",
           "{count}× upstream {upstream} timed out (no response within the read timeout)", key="upstream"),
        _p("upstream_tls",
           r"SSL_do_handshake\(\) failed[^\n]*while SSL handshaking to upstream"
           r"|upstream SSL certificate|peer closed connection in SSL handshake[^\n]*to upstream"
           r"|SSL_[a-z_]+\(\) failed[^\n]*to upstream",
           "{count}× TLS handshake with upstream {upstream} failed", key="upstream"),
        _p("upstream_premature_close", r"upstream prematurely closed",
           "{count}× upstream {upstream} closed the connection before a complete response", key="upstream"),
        _p("upstream_reset",
           r"(?:recv|readv|send|writev|sendfile)\(\) failed \((?:104|32|10054): [^)]*\) "
           r"while (?:reading|sending)[^,]*upstream",
           "{count}× upstream {upstream} reset the connection", key="upstream"),
        _p("upstream_too_big_header", r"upstream sent too big header",
           "{count}× upstream {upstream} response headers larger than the proxy buffer", key="upstream"),
        _p("upstream_invalid_response",
           r"upstream sent (?:invalid|duplicate|no valid|unknown|more data|unexpected|unsupported)"
           r"|upstream sent \"Content-Length\" and|upstream sent \\\"Content-Length",
           "{count}× upstream {upstream} sent an invalid response", key="upstream"),
        _p("no_live_upstreams", r"no live upstreams",
           "{count}× no live upstreams: every server of the group is marked failed", key="upstream"),
        _p("upstream_disabled", r"upstream server temporarily disabled",
           "{count}× upstream server {upstream} temporarily disabled (max_fails reached)",
           Severity.WARNING, key="upstream"),
        _p("resolver_failed", r"could not be resolved \(",
           "{count}× could not resolve {name} ({reason})", key="name"),
        _p("host_not_found", r"host not found in upstream",
           "upstream host {name} not found at start-up/reload", key="name"),
        _p("no_resolver", r"no resolver defined to resolve",
           "{count}× no resolver defined to resolve an upstream name"),
        _p("rate_limited", r"limiting (?:requests|connections)",
           "{count}× requests rejected by limit zone {zone}", key="zone", unless=r"dry run"),
        _p("disk_full", r"\(28: No space left on device\)",
           "{count}× write failed: no space left on device"),
        _p("redirect_cycle", r"rewrite or internal redirection cycle",
           "{count}× rewrite or internal redirection cycle"),
        _p("primary_script_unknown", r"Primary script unknown",
           "{count}× php-fpm: Primary script unknown (SCRIPT_FILENAME/root wrong)", Severity.WARNING),
        _p("file_permission_denied", r"open\(\) \\?\"[^\"]*\\?\" failed \(13: |is forbidden \(13: ",
           "{count}× permission denied opening a file", Severity.WARNING),
        _p("config_emerg", r"\[emerg\]", "nginx refused its configuration: {message}", key="message"),
    )
    signals: ClassVar[dict[str, Signal]] = {
        "nginx.upstream_refused": Signal(cause="upstream_down", weight=0.85),
        "nginx.upstream_socket_missing": Signal(cause="upstream_down", weight=0.85),
        "nginx.upstream_unreachable": Signal(cause="upstream_down", weight=0.7),
        "nginx.no_live_upstreams": Signal(cause="upstream_down", weight=0.7),
        "nginx.upstream_disabled": Signal(cause="upstream_down", weight=0.4),
        "nginx.upstream_permission_denied": Signal(cause="permission_denied", weight=0.9),
        "nginx.file_permission_denied": Signal(cause="permission_denied", weight=0.6),
        "nginx.port_exhaustion": Signal(cause="port_exhaustion", weight=0.9),
        "nginx.upstream_backlog_full": Signal(cause="worker_saturation", weight=0.8),
        "nginx.fd_exhaustion": Signal(cause="fd_exhaustion", weight=0.9),
        "nginx.worker_connections": Signal(cause="fd_exhaustion", weight=0.85),
        "nginx.upstream_connect_timeout": Signal(cause="upstream_connect_timeout", weight=0.85),
        "nginx.upstream_timeout": Signal(cause="upstream_timeout", weight=0.85),
        "nginx.upstream_tls": Signal(cause="upstream_tls_error", weight=0.88),
        "nginx.upstream_premature_close": Signal(cause="upstream_crashed", weight=0.8),
        "nginx.upstream_reset": Signal(cause="upstream_crashed", weight=0.75),
        "nginx.upstream_too_big_header": Signal(cause="upstream_bad_response", weight=0.9),
        "nginx.upstream_invalid_response": Signal(cause="upstream_bad_response", weight=0.85),
        "nginx.resolver_failed": Signal(cause="dns_failure", weight=0.9),
        "nginx.host_not_found": Signal(cause="dns_failure", weight=0.85),
        "nginx.no_resolver": Signal(cause="dns_failure", weight=0.75),
        "nginx.rate_limited": Signal(cause="rate_limited", weight=0.9),
        "nginx.disk_full": Signal(cause="disk_full", weight=0.9),
        "nginx.redirect_cycle": Signal(cause="config_error", weight=0.85),
        "nginx.primary_script_unknown": Signal(cause="config_error", weight=0.6),
        "nginx.config_emerg": Signal(cause="config_error", weight=0.75),
    }

    def extract(self, pattern: LinePattern, detail: re.Pattern[str] | None, line: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        upstream = _UPSTREAM_FIELD.search(line) or _CONNECT_TO.search(line)
        if upstream:
            data["upstream"] = upstream.group(1).rstrip(":")
        for field, rx in (("server", _SERVER_FIELD), ("request", _REQUEST_FIELD), ("zone", _ZONE)):
            found = rx.search(line)
            if found:
                data[field] = found.group(1)
        if pattern.kind == "nginx.rate_limited":
            excess = _EXCESS.search(line)
            if excess:
                data["excess"] = excess.group(1)
            data["limit"] = "connections" if "limiting connections" in line else "requests"
        elif pattern.kind == "nginx.resolver_failed":
            found = _RESOLVE.search(line)
            if found:
                data.update(name=found.group(1), code=int(found.group(2)), reason=found.group(3))
        elif pattern.kind == "nginx.host_not_found":
            found = _HOST_NOT_FOUND.search(line)
            if found:
                data["name"] = found.group(1)
        elif pattern.kind == "nginx.config_emerg":
            message = line.split("[emerg]", 1)[1].strip()
            data["message"] = re.sub(r"^\d+#\d+: ", "", message)[:200]
        return data


READERS = (NginxErrorLog,)
