"""curl probes: exit-code error lines, response status lines and ``-w/--write-out`` timing outputs.

Three readers share the family ``curl``:

* :class:`CurlError` reads the ``curl: (N) message`` line curl prints on stderr when a transfer fails
  (``src/tool_operate.c``: ``"curl: (%d) %s"``) and classifies the failing layer from the exit code:
  6 name resolution, 7 TCP connect (refused / unreachable), 28 timeout (while connecting, resolving or
  waiting for the answer), 35 TLS handshake, 51/60 certificate verification, 52 empty reply, 56 receive
  failure (reset). The exit-7 wording changed over time (``Failed to connect to H port P: Connection
  refused`` up to 7.80; ``... after N ms: Connection refused`` in 7.81; ``... after N ms: Couldn't
  connect to server`` in 7.82+; ``Failed to connect to H:P ... Could not connect to server`` on current
  master), so the errno text is not relied on; the exit-28 wording too (``Connection timed out after
  N milliseconds`` in older releases, ``Failed to connect to H port P after N ms: Timeout was reached``
  in 7.8x/8.x, ``Operation timed out after N milliseconds with X bytes received`` once connected).
* :class:`CurlResponse` reads what a probe got back: status lines of ``curl -v`` (``< HTTP/1.1 502 Bad
  Gateway``) and ``curl -I/-i`` (``HTTP/2 503``), ``Retry-After`` headers, and write-out outputs in any
  ``key=value`` / ``key: value`` layout (``code=502 connect=0.01 ttfb=0.2 total=0.2``, one
  ``time_total: 1.2`` per line, ...). Under a ``### $ curl ... -w '%{http_code}'`` header a bare
  ``502`` line is read as the status too. ``000`` means no HTTP response at all (the error line names
  the layer). Status findings carry no cause: the status is what the person is asking about.
* Slow answers (time to first byte of 10 s or more) are noted as a weak hint of a slow upstream.

Message texts: shared/reference/error-messages.md §7.5; captured outputs in tests/fixtures/probes.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal
from bot.evidence.reader import LinePattern, PatternReader, Reader, Tally

_HOST_PORT = re.compile(
    r"(?:Failed to connect to|connect to|resolve host:?|resolve|Could not resolve host:)\s+"
    r"(?P<host>[\w.\-:\[\]<>]+?)(?:\s+port\s+(?P<port>\d+)|:(?P<port2>\d+))?(?=[\s:]|$)"
)
_CODE = re.compile(r"curl: \((?P<code>\d+)\) (?P<message>.*)")


def _p(kind: str, trigger: str, summary: str, severity: Severity = Severity.CRITICAL, **kw: Any) -> LinePattern:
    return LinePattern(f"curl.{kind}", trigger, summary, severity, **kw)


class CurlError(PatternReader):
    """``curl: (N) ...`` error lines: which layer of the request failed."""

    name = "curl.error"
    title = "curl error lines (curl: (N) ...)"
    patterns = (
        _p("resolve_timeout", r"curl: \(28\) Resolving timed out", "curl: name resolution timed out ({message})"),
        _p(
            "connect_timeout",
            r"curl: \(28\) (?:Connection timed out after|Failed to connect to|Connection time-?out)"
            r"|curl: \(7\) [^\n]*(?:[Tt]imed out|Timeout was reached|\(110\))",
            "curl: TCP connect to {host} timed out ({count}×)",
            key="host",
        ),
        _p(
            "operation_timeout",
            r"curl: \(28\) ",
            "curl: the server accepted the connection but sent no complete answer in time ({message})",
            key="host",
        ),
        _p(
            "connect_unreachable",
            r"curl: \(7\) [^\n]*(?:No route to host|Network is unreachable|Host is unreachable)",
            "curl: no route to {host} ({count}×)",
            key="host",
        ),
        _p(
            "connect_refused",
            r"curl: \(7\) ",
            "curl: connection to {host} port {port} refused: nothing listens there ({count}×)",
            key="host",
        ),
        _p("resolve_failed", r"curl: \(6\) ", "curl: could not resolve {host} ({count}×)", key="host"),
        _p(
            "cert_expired",
            r"curl: \((?:60|51|35)\) [^\n]*certificate has expired",
            "curl: the server's certificate has expired",
        ),
        _p(
            "cert_untrusted",
            r"curl: \((?:60|77)\) [^\n]*(?:unable to get local issuer|unable to get issuer"
            r"|self.signed certificate in certificate chain|error setting certificate)",
            "curl: the certificate chain is not trusted by this client ({message})",
            Severity.WARNING,
        ),
        _p("cert_invalid", r"curl: \((?:60|51)\) ", "curl: the server's certificate failed verification ({message})"),
        _p("tls_handshake", r"curl: \(35\) ", "curl: TLS handshake with the server failed ({message})"),
        _p(
            "empty_reply",
            r"curl: \(52\) ",
            "curl: the server closed the connection without sending any answer ({count}×)",
        ),
        _p(
            "recv_failure",
            r"curl: \(56\) ",
            "curl: the connection broke while reading the answer ({message}) ({count}×)",
        ),
        _p(
            "http_error",
            r"curl: \(22\) [^\n]*returned error: ?5\d\d",
            "curl -f: the server answered {status}",
            Severity.WARNING,
        ),
    )
    signals: ClassVar[dict[str, Signal]] = {
        "curl.resolve_timeout": Signal(cause="dns_failure", weight=0.55),
        "curl.connect_timeout": Signal(cause="upstream_connect_timeout", weight=0.65),
        "curl.operation_timeout": Signal(cause="upstream_timeout", weight=0.6),
        "curl.connect_unreachable": Signal(cause="upstream_down", weight=0.5),
        "curl.connect_refused": Signal(cause="upstream_down", weight=0.7),
        "curl.resolve_failed": Signal(cause="dns_failure", weight=0.7),
        "curl.cert_expired": Signal(cause="upstream_tls_error", weight=0.75),
        "curl.cert_untrusted": Signal(cause="upstream_tls_error", weight=0.3),
        "curl.cert_invalid": Signal(cause="upstream_tls_error", weight=0.6),
        "curl.tls_handshake": Signal(cause="upstream_tls_error", weight=0.6),
        "curl.empty_reply": Signal(cause="upstream_crashed", weight=0.6),
        "curl.recv_failure": Signal(cause="upstream_crashed", weight=0.55),
    }

    def extract(self, pattern: LinePattern, detail: re.Pattern[str] | None, line: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        found = _CODE.search(line)
        if found:
            data["exit_code"] = int(found.group("code"))
            data["message"] = found.group("message").strip()[:200]
        where = _HOST_PORT.search(line)
        if where:
            data["host"] = where.group("host").rstrip(".:")
            port = where.group("port") or where.group("port2")
            if port:
                data["port"] = int(port)
        status = re.search(r"returned error: ?(\d{3})", line)
        if status:
            data["status"] = int(status.group(1))
        return data


# --- responses -----------------------------------------------------------------------------------

#: ``< HTTP/1.1 502 Bad Gateway`` (curl -v) or ``HTTP/2 503`` (curl -I / -i) at the start of a line.
_STATUS_LINE = re.compile(r"^\s*(?:<\s*)?HTTP/(?P<version>[\d.]+)\s+(?P<status>\d{3})\b(?P<reason>[^\r\n]*)")
_RETRY_AFTER = re.compile(r"^\s*(?:<\s*)?Retry-After:\s*(?P<value>\S[^\r\n]*)", re.I)
#: Write-out keys: curl's variable names plus the short names people give them in their -w format.
_WRITEOUT_PAIR = re.compile(
    r"\b(?P<key>http_code|response_code|http_status|status_code|code|status|"
    r"time_namelookup|time_connect|time_appconnect|time_pretransfer|time_redirect|time_starttransfer|"
    r"time_total|dns|lookup|connect|tcp|tls|ssl|appconnect|pretransfer|ttfb|start_?transfer|total|"
    r"remote_ip|ip|exitcode|errormsg|url_effective|url|ssl_verify_result)"
    r"[\"']?\s*[=:]\s*[\"']?(?P<value>[^\s,;\"'}]*)",
    re.I,
)
_CODE_KEYS = {"http_code", "response_code", "http_status", "status_code", "code", "status"}
_TIME_KEYS = {
    "time_namelookup": "namelookup",
    "dns": "namelookup",
    "lookup": "namelookup",
    "time_connect": "connect",
    "connect": "connect",
    "tcp": "connect",
    "time_appconnect": "appconnect",
    "tls": "appconnect",
    "ssl": "appconnect",
    "appconnect": "appconnect",
    "time_pretransfer": "pretransfer",
    "pretransfer": "pretransfer",
    "time_starttransfer": "starttransfer",
    "ttfb": "starttransfer",
    "starttransfer": "starttransfer",
    "start_transfer": "starttransfer",
    "time_total": "total",
    "total": "total",
}
_BARE_CODE = re.compile(r"^\s*(?P<status>\d{3})(?:\s+[\d.]+)*\s*$")
#: A header naming a curl run whose -w format prints the status code.
_WRITEOUT_HEADER = re.compile(r"curl\b.*(?:-w\b|--write-out|http_code|response_code)", re.I)
#: Slow enough to be worth saying: nginx's default proxy_read_timeout is 60 s, Cloudflare's 120 s.
SLOW_TTFB = 10.0


def _is_writeout(pairs: list[tuple[str, str]]) -> bool:
    """Whether the key/value pairs of a line look like a curl write-out (not any ``status: x`` text)."""
    named = {k for k, v in pairs if k in _TIME_KEYS and re.fullmatch(r"[0-9.]+", v)}
    codes = {k for k, v in pairs if k in _CODE_KEYS and re.fullmatch(r"\d{3}", v)}
    if named:
        return True
    return bool(codes & {"http_code", "response_code", "http_status", "status_code"})


class CurlResponse(Reader):
    """What a curl probe got back: the status, Retry-After, and the write-out timings."""

    name = "curl.response"
    title = "curl responses: status lines, Retry-After, -w write-out timings"
    triggers = (
        r"(?m:^[ \t]*<?[ \t]*HTTP/[0-9.]+ \d\d\d\b)",
        r"(?m:^[ \t]*<?[ \t]*(?i:retry-after):[ \t]*\S)",
        r"(?i:http_code|response_code|http_status|status_code)[\"']?\s*[=:]\s*[\"']?\d\d\d\b",
        r"\bcode\s*=\s*\d\d\d\b[^\n]*\b(?:total|time_total|ttfb|connect|time_connect)\s*=",
        r"(?m:^[ \t]*time_(?:namelookup|connect|appconnect|pretransfer|starttransfer|total)"
        r"[\"']?[ \t]*[=:][ \t]*[0-9.]+)",
    )
    header = r"^\$?\s*(?:\S+\s+)*curl\b"
    signals: ClassVar[dict[str, Signal]] = {
        "curl.slow_response": Signal(cause="upstream_timeout", weight=0.3),
    }

    def __init__(self) -> None:
        self.tally = Tally()
        self._probe: dict[str, Any] = {}
        self._probe_lines: list[str] = []
        self._writeout_block = False
        self._last_status: int | None = None

    def start_block(self, header: str) -> None:
        self._writeout_block = bool(_WRITEOUT_HEADER.search(header))

    def end_block(self) -> None:
        self._flush()
        self._writeout_block = False
        self._last_status = None

    def feed(self, line: str) -> bool:
        status = _STATUS_LINE.match(line)
        if status:
            self._flush()
            code = int(status.group("status"))
            self._last_status = code
            self._status(code, line, reason=status.group("reason").strip())
            return False
        retry = _RETRY_AFTER.match(line)
        if retry:
            self.tally.add(
                "curl.retry_after",
                line,
                retry.group("value").strip(),
                retry_after=retry.group("value").strip(),
                status=self._last_status,
            )
            return False
        pairs = [(m.group("key").lower(), m.group("value")) for m in _WRITEOUT_PAIR.finditer(line)]
        if _is_writeout(pairs):
            for key, value in pairs:
                self._writeout(key, value, line)
            return False
        if self._writeout_block:
            bare = _BARE_CODE.match(line)
            if bare:
                self._flush()
                self._probe["status"] = int(bare.group("status"))
                self._probe["status_line"] = line
                self._probe_lines.append(line)
                self._flush()
        return False

    # -- internals --------------------------------------------------------------------------------
    def _writeout(self, key: str, value: str, line: str) -> None:
        if key in _CODE_KEYS:
            if not re.fullmatch(r"\d{3}", value):
                return
            if "status" in self._probe:
                self._flush()
            self._probe["status"] = int(value)
            self._probe["status_line"] = line
        elif key in _TIME_KEYS:
            try:
                seconds = float(value)
            except ValueError:
                return
            name = _TIME_KEYS[key]
            if name in self._probe:
                self._flush()
            self._probe[name] = seconds
        elif key in {"remote_ip", "ip"} and value:
            self._probe["ip"] = value
        else:
            return
        if not self._probe_lines or self._probe_lines[-1] != line:
            self._probe_lines.append(line)

    def _flush(self) -> None:
        probe, lines = self._probe, self._probe_lines
        self._probe, self._probe_lines = {}, []
        if not probe:
            return
        evidence = str(probe.get("status_line") or (lines[0] if lines else ""))
        status = probe.get("status")
        timings = {k: v for k, v in probe.items() if k in set(_TIME_KEYS.values())}
        if isinstance(status, int):
            self._status(status, evidence, timings=timings, ip=probe.get("ip"))
        connect = timings.get("connect", 0.0)
        ttfb = timings.get("starttransfer")
        if ttfb is not None and ttfb - connect >= SLOW_TTFB:
            self.tally.add(
                "curl.slow_response", evidence, status=status, ttfb=ttfb, wait=round(ttfb - connect, 3), **timings
            )
        elif ttfb is None and timings.get("total", 0.0) >= SLOW_TTFB and connect > 0 and status not in (None, 0):
            self.tally.add("curl.slow_response", evidence, status=status, wait=timings["total"], **timings)

    def _status(self, code: int, line: str, **data: Any) -> None:
        clean = {k: v for k, v in data.items() if v not in (None, "", {})}
        if code == 0:
            self.tally.add("curl.no_response", line, "000", status=0, **clean)
        elif code >= 500:
            self.tally.add("curl.http_5xx", line, str(code), status=code, **clean)
        elif code >= 400:
            self.tally.add("curl.http_4xx", line, str(code), status=code, **clean)
        elif code >= 100:
            self.tally.add("curl.http_ok", line, str(code), status=code, **clean)

    def findings(self) -> list[Finding]:
        self._flush()
        out: list[Finding] = []
        for kind, key, count, evidence, found in self.tally.items():
            data = {**found, "count": count}
            if kind == "curl.http_5xx":
                severity, summary = Severity.WARNING, f"probe answered HTTP {key} ({count}×)"
            elif kind == "curl.http_4xx":
                severity, summary = Severity.INFO, f"probe answered HTTP {key} ({count}×)"
            elif kind == "curl.http_ok":
                severity, summary = Severity.OK, f"probe answered HTTP {key} ({count}×)"
            elif kind == "curl.no_response":
                severity = Severity.WARNING
                summary = f"probe got no HTTP response at all (http_code 000, {count}×); see the curl error line"
            elif kind == "curl.retry_after":
                severity, summary = Severity.INFO, f"response carries Retry-After: {key}"
            elif kind == "curl.slow_response":
                wait = data.get("wait")
                severity = Severity.WARNING
                summary = f"probe waited {wait} s for the first byte after connecting"
            else:
                continue
            out.append(
                Finding(kind=kind, severity=severity, summary=summary, evidence=evidence, data=data, reader=self.name)
            )
        return out


READERS = (CurlError, CurlResponse)
