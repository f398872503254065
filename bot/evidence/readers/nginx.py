"""nginx error log: upstream failures, limits, resources, resolver, TLS and configuration errors.

Lines are recognised by their message text anywhere in the line, so the timestamp layout of any
nginx version (``PID#0`` before 1.7.11 or in builds without threads, ``PID#TID`` after), the
``nginx: [emerg]`` stderr form, Docker/compose prefixes (``nginx_1  | ...``), journald prefixes,
JSON-wrapped lines (``{"log":"... upstream: \\"http://...\\" ..."}``) and redacted addresses all
work. errno numbers are matched rather than ``strerror`` texts, which follow the C library (glibc
says "Connection timed out", musl "Operation timed out") and, on Windows builds, Winsock (10061
refused, 10060 timed out, 10054 reset, 10013 access denied). TLS errors carry OpenSSL's
``error:CODE:LIB:FUNC:REASON`` string: OpenSSL 1.x fills FUNC (``ssl3_get_record``), 3.x leaves it
empty (``SSL routines::wrong version number``); the reason is read from either.

A pasted line that was wrapped mid-message (``upstream timed out (110: Connection timed out)`` on one
line, ``while connecting to upstream, client: ...`` on the next) is joined with its continuation
before it is classified, because the ``while ...`` phase decides the kind.

Message texts and their sources: shared/reference/error-messages.md §1; every kind is pinned by a
line captured from nginx 1.22 on this machine or from a public report (tests/fixtures/nginx/SOURCES.md).
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal
from bot.evidence.reader import LinePattern, PatternReader

_UPSTREAM_FIELD = re.compile(r'upstream: \\?"(?:[a-z0-9]+://)?(unix:[^":\\]+|[^"/\\]+)')
_CONNECT_TO = re.compile(r"connect ?\(\) to (\S+) failed")
_SERVER_FIELD = re.compile(r"server: ([^,\s]+)")
_REQUEST_FIELD = re.compile(r'request: \\?"([^"\\]*)')
_ZONE = re.compile(r'zone \\?"([^"\\]+)')
_EXCESS = re.compile(r"excess: ([\d.]+)")
_RESOLVE = re.compile(r"(\S+) could not be resolved \((\d+): ([^)]*)\)")
_RESOLVER = re.compile(r"resolver: (\S+)")
_HOST_NOT_FOUND = re.compile(r'host not found in upstream \\?"([^"\\]+)')
_INVALID_HEADER = re.compile(r'invalid header: \\?"(.*?)\\?" while')
_UPSTREAM_SENT = re.compile(r"upstream sent (.*?)(?: while |, client:|$)")
_SSL_ERROR = re.compile(r"\(SSL: error:[0-9A-Fa-f]+:[^:]*:[^:]*:([^:)]+)")
_WORKER_CONNECTIONS = re.compile(r"(\d+) worker_connections")
_EMERG = re.compile(r"\[emerg\]\s*(?:\d+#\d+: )?(.*)")
_BIND = re.compile(r"bind\(\) to (\S+) failed")
_ERRNO = re.compile(r"failed \((\d+): ")

#: A new log entry starts here: an nginx timestamp or an ``nginx: [level]`` prefix.
_NEW_ENTRY = re.compile(r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d|nginx: \[[a-z]+\]")
#: Texts that show a line carries its phase or context, so nothing essential was wrapped away.
_COMPLETE = re.compile(r" while |client: |server: |resolver: | in \S+:\d+")
#: Messages whose kind depends on the ``while ...`` phase that a wrapped paste may push to the next line.
_PHASED = re.compile(
    r"upstream timed out|SSL_[a-z_]+\(\) failed|peer closed connection in SSL|"
    r"(?:recv|readv|send|writev|sendfile)\(\) failed \((?:104|32|10054)"
)
#: Continuation lines joined to a wrapped line at most.
_MAX_CONTINUATION = 2

#: What an OpenSSL reason usually means when the proxy is the TLS client of its upstream.
_TLS_HINTS = {
    "wrong version number": "the upstream does not speak TLS on that port (plain HTTP?)",
    "packet length too long": "the upstream does not speak TLS on that port (plain HTTP?)",
    "http request": "the upstream does not speak TLS on that port (plain HTTP?)",
    "sslv3 alert handshake failure": "no common protocol or cipher, or the upstream needs SNI "
    "(proxy_ssl_server_name on)",
    "tlsv1 alert internal error": "the upstream rejected the handshake; it may need SNI (proxy_ssl_server_name on)",
    "unsupported protocol": "no TLS version in common with the upstream (proxy_ssl_protocols)",
    "certificate verify failed": "the upstream certificate is not trusted (proxy_ssl_trusted_certificate)",
    "tlsv1 alert unknown ca": "the upstream does not trust the client certificate nginx sent",
}


def _p(kind: str, trigger: str, summary: str, severity: Severity = Severity.CRITICAL, **kw: Any) -> LinePattern:
    return LinePattern(f"nginx.{kind}", trigger, summary, severity, **kw)


class NginxErrorLog(PatternReader):
    """Reads an nginx error log (any version, any wrapper) into one finding per failure kind and upstream."""

    name = "nginx.error"
    title = "nginx error log"
    # Ordered: the first matching pattern wins, so specific errnos and phases come before general texts.
    patterns = (
        _p(
            "upstream_permission_denied",
            r"connect ?\(\) (?:to \S+ )?failed \((?:13|10013): |\((?:13|10013): [^)]*\) while connecting to upstream",
            "{count}× permission denied connecting to upstream {upstream}",
            key="upstream",
        ),
        _p(
            "upstream_ipv6_unavailable",
            r"connect ?\(\) to \[[0-9A-Fa-f:.]+\]:[0-9]+ failed \(99: ",
            "{count}× IPv6 upstream {upstream} not reachable from this host (EADDRNOTAVAIL); "
            "nginx moves on to the next address",
            Severity.WARNING,
            key="upstream",
        ),
        _p(
            "port_exhaustion",
            r"connect ?\(\) (?:to \S+ )?failed \(99: |\(99: [^)]*\) while connecting to upstream",
            "{count}× no free local port to reach {upstream} (EADDRNOTAVAIL)",
            key="upstream",
        ),
        _p(
            "upstream_backlog_full",
            r"connect ?\(\) to unix:\S+ failed \(11: |failed \(11: [^)]*\) while connecting to upstream",
            "{count}× upstream {upstream} accept queue full (EAGAIN on connect)",
            key="upstream",
        ),
        _p(
            "upstream_socket_missing",
            r"connect ?\(\) to unix: ?\S+ failed \(2: ",
            "{count}× upstream socket {upstream} does not exist (app server stopped, or wrong path)",
            key="upstream",
        ),
        _p(
            "upstream_refused",
            r"connect ?\(\) (?:to \S+ )?failed \((?:111|10061): |\((?:111|10061): [^)]*\) while connecting to upstream",
            "{count}× connection refused by upstream {upstream}",
            key="upstream",
        ),
        _p(
            "upstream_unreachable",
            r"connect ?\(\) (?:to \S+ )?failed \((?:101|112|113|10051|10065): ",
            "{count}× upstream {upstream} unreachable (no route / network down)",
            key="upstream",
        ),
        _p(
            "fd_exhaustion",
            r"failed \((?:23|24): ",
            "{count}× out of file descriptors (errno 24, Too many open files): raise worker_rlimit_nofile",
        ),
        _p(
            "worker_connections_reuse",
            r"worker_connections are not enough, reusing connections",
            "{count}× worker_connections ({limit}) nearly used up: idle keep-alive connections closed early",
            Severity.WARNING,
        ),
        _p(
            "worker_connections",
            r"worker_connections are not enough",
            "{count}× all {limit} worker_connections in use: requests fail with 500 or are dropped",
            unless=r"listening sockets",
        ),
        _p(
            "upstream_connect_timeout",
            r"upstream timed out \((?:110|10060): [^)]*\) while (?:connecting to upstream|SSL handshaking to upstream)",
            "{count}× timed out connecting to upstream {upstream} (proxy_connect_timeout)",
            key="upstream",
        ),
        _p(
            "upstream_timeout",
            r"upstream timed out",
            "{count}× upstream {upstream} timed out (no response within the read timeout)",
            key="upstream",
        ),
        _p(
            "upstream_tls",
            r"SSL_do_handshake\(\) failed[^\n]*while SSL handshaking to upstream"
            r"|upstream SSL certificate|peer closed connection in SSL handshake[^\n]*to upstream"
            r"|SSL_[a-z_]+\(\) failed[^\n]*to upstream",
            "{count}× TLS handshake with upstream {upstream} failed: {tls_reason}",
            key="upstream",
        ),
        _p(
            "upstream_premature_close",
            r"upstream prematurely closed",
            "{count}× upstream {upstream} closed the connection before a complete response",
            key="upstream",
        ),
        _p(
            "upstream_reset",
            r"(?:recv|readv|send|writev|sendfile)\(\) failed \((?:104|32|10054): [^)]*\) "
            r"while (?:reading|sending)[^,]*upstream",
            "{count}× upstream {upstream} reset the connection",
            key="upstream",
        ),
        _p(
            "upstream_too_big_header",
            r"upstream sent too big header",
            "{count}× upstream {upstream} response headers larger than proxy_buffer_size/fastcgi_buffer_size",
            key="upstream",
        ),
        _p(
            "upstream_invalid_response",
            r"upstream sent (?:invalid|duplicate|no valid|unknown|more data|unexpected|unsupported)"
            r"|upstream sent \\?\"Content-Length\\?\" and",
            "{count}× upstream {upstream} sent an invalid response: {what}",
            key="upstream",
        ),
        _p(
            "no_live_upstreams",
            r"no live upstreams",
            "{count}× no live upstreams: every server of {upstream} is marked failed",
            key="upstream",
        ),
        _p(
            "upstream_disabled",
            r"upstream server temporarily disabled",
            "{count}× upstream server {upstream} temporarily disabled (max_fails reached)",
            Severity.WARNING,
            key="upstream",
        ),
        _p(
            "resolver_failed",
            r"could not be resolved \(",
            "{count}× could not resolve {name} ({code}: {reason})",
            key="name",
        ),
        _p(
            "resolver_unreachable",
            r"failed \([0-9]+: [^)]*\) while resolving",
            "{count}× DNS resolver {resolver} unreachable",
            Severity.WARNING,
            key="resolver",
        ),
        _p(
            "host_not_found",
            r"host not found in upstream",
            "upstream host {name} not found at start-up/reload: nginx refused the configuration",
            key="name",
        ),
        _p(
            "no_resolver",
            r"no resolver defined to resolve",
            "{count}× no resolver defined to resolve an upstream name (variable in proxy_pass)",
        ),
        _p(
            "rate_limited_dry_run",
            r"limiting (?:requests|connections), dry run",
            "{count}× limit zone {zone} would reject requests (dry run: nothing was rejected)",
            Severity.INFO,
            key="zone",
        ),
        _p(
            "rate_limited",
            r"limiting (?:requests|connections)",
            "{count}× requests rejected by limit zone {zone} (limit_{limit}: 503 by default)",
            key="zone",
        ),
        _p("disk_full", r"failed \(28: ", "{count}× write failed: no space left on device"),
        _p(
            "redirect_cycle",
            r"rewrite or internal redirection cycle",
            "{count}× rewrite or internal redirection cycle (500)",
        ),
        _p(
            "primary_script_unknown",
            r"Primary script unknown",
            "{count}× php-fpm: Primary script unknown (SCRIPT_FILENAME/root wrong)",
            Severity.WARNING,
        ),
        _p(
            "file_permission_denied",
            r"open\(\) \\?[\"“”][^\"“”]*\\?[\"“”] failed \((?:13|10013): |is forbidden \(13: ",
            "{count}× permission denied opening a file (403)",
            Severity.WARNING,
        ),
        _p(
            "bind_failed",
            r"bind\(\) to \S+ failed \(98: ",
            "nginx could not listen on {address}: another process holds the port",
            key="address",
        ),
        _p(
            "config_emerg",
            r"\[emerg\]",
            "nginx refused its configuration: {message}",
            key="message",
        ),
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
        "nginx.worker_connections_reuse": Signal(cause="fd_exhaustion", weight=0.35),
        "nginx.upstream_connect_timeout": Signal(cause="upstream_connect_timeout", weight=0.85),
        "nginx.upstream_timeout": Signal(cause="upstream_timeout", weight=0.85),
        "nginx.upstream_tls": Signal(cause="upstream_tls_error", weight=0.88),
        "nginx.upstream_premature_close": Signal(cause="upstream_crashed", weight=0.8),
        "nginx.upstream_reset": Signal(cause="upstream_crashed", weight=0.75),
        "nginx.upstream_too_big_header": Signal(cause="upstream_bad_response", weight=0.9),
        "nginx.upstream_invalid_response": Signal(cause="upstream_bad_response", weight=0.85),
        "nginx.resolver_failed": Signal(cause="dns_failure", weight=0.9),
        "nginx.resolver_unreachable": Signal(cause="dns_failure", weight=0.6),
        "nginx.host_not_found": Signal(cause="dns_failure", weight=0.85),
        "nginx.no_resolver": Signal(cause="dns_failure", weight=0.75),
        "nginx.rate_limited": Signal(cause="rate_limited", weight=0.9),
        "nginx.disk_full": Signal(cause="disk_full", weight=0.9),
        "nginx.redirect_cycle": Signal(cause="config_error", weight=0.85),
        "nginx.primary_script_unknown": Signal(cause="config_error", weight=0.6),
        "nginx.bind_failed": Signal(cause="config_error", weight=0.5),
        "nginx.config_emerg": Signal(cause="config_error", weight=0.75),
    }

    def __init__(self) -> None:
        super().__init__()
        self._pending: str | None = None
        self._head = ""
        self._joined = 0

    # -- wrapped lines ---------------------------------------------------------------------------
    def feed(self, line: str) -> bool:
        if self._pending is not None:
            pending, head = self._pending, self._head
            self._pending = None
            if _NEW_ENTRY.search(line) or not line.strip():
                self._classify(pending, head)
                return self._read(line, line, 0)
            return self._read(pending + " " + line.strip(), head, self._joined + 1)
        return self._read(line, line, 0)

    def _read(self, text: str, head: str, joined: int) -> bool:
        if joined < _MAX_CONTINUATION and _PHASED.search(text) and not _COMPLETE.search(text):
            self._pending, self._head, self._joined = text, head, joined
            return True
        self._classify(text, head)
        return False

    def _classify(self, text: str, evidence: str) -> None:
        """Classify ``text`` (a line, or a wrapped line joined with its continuation); quote ``evidence``.

        The quoted evidence stays one physical input line (the head of a wrapped message), so every
        quote can be found verbatim in what the person pasted.
        """
        self.tally_first(text, evidence)

    def end_block(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            self._classify(pending, self._head)

    def findings(self) -> list[Finding]:
        self.end_block()
        return super().findings()

    # -- fields --------------------------------------------------------------------------------
    def extract(self, pattern: LinePattern, detail: re.Pattern[str] | None, line: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        upstream = _UPSTREAM_FIELD.search(line) or _CONNECT_TO.search(line)
        if upstream:
            data["upstream"] = upstream.group(1).rstrip(":")
        for field, rx in (("server", _SERVER_FIELD), ("request", _REQUEST_FIELD), ("zone", _ZONE)):
            found = rx.search(line)
            if found:
                data[field] = found.group(1)
        errno = _ERRNO.search(line)
        if errno:
            data["errno"] = int(errno.group(1))
        kind = pattern.kind
        if kind in ("nginx.rate_limited", "nginx.rate_limited_dry_run"):
            excess = _EXCESS.search(line)
            if excess:
                data["excess"] = excess.group(1)
            data["limit"] = "conn" if "limiting connections" in line else "req"
        elif kind == "nginx.resolver_failed":
            found = _RESOLVE.search(line)
            if found:
                data.update(name=found.group(1), code=int(found.group(2)), reason=found.group(3))
        elif kind == "nginx.resolver_unreachable":
            found = _RESOLVER.search(line)
            data["resolver"] = found.group(1).rstrip(",") if found else "?"
        elif kind == "nginx.host_not_found":
            found = _HOST_NOT_FOUND.search(line)
            if found:
                data["name"] = found.group(1)
        elif kind == "nginx.upstream_tls":
            found = _SSL_ERROR.search(line)
            reason = found.group(1).strip() if found else ""
            if reason:
                data["ssl_reason"] = reason
            hint = _TLS_HINTS.get(reason.lower(), "")
            data["tls_reason"] = f"{reason}: {hint}" if hint else reason or _tls_other(line)
        elif kind == "nginx.upstream_invalid_response":
            found = _INVALID_HEADER.search(line)
            if found:
                data["header"] = found.group(1)
            what = _UPSTREAM_SENT.search(line)
            data["what"] = what.group(1) if what else "?"
        elif kind in ("nginx.worker_connections", "nginx.worker_connections_reuse"):
            found = _WORKER_CONNECTIONS.search(line)
            data["limit"] = int(found.group(1)) if found else "?"
        elif kind == "nginx.bind_failed":
            found = _BIND.search(line)
            data["address"] = found.group(1) if found else "?"
        elif kind == "nginx.config_emerg":
            found = _EMERG.search(line)
            data["message"] = (found.group(1) if found else line.strip())[:200]
        return data


# The head of a phase-dependent message also selects a line, so a wrapped paste reaches the reader.
NginxErrorLog.triggers = (*NginxErrorLog.triggers, _PHASED.pattern)


def _tls_other(line: str) -> str:
    """A short reason for TLS lines without an OpenSSL error string."""
    if "certificate verify error" in line:
        found = re.search(r"verify error: \(([^)]*)\)", line)
        return f"certificate rejected ({found.group(1)})" if found else "certificate rejected"
    if "does not match" in line:
        return "certificate name does not match proxy_ssl_name"
    if "peer closed connection" in line:
        return "the upstream closed the connection during the handshake"
    return "see the evidence"


READERS = (NginxErrorLog,)
