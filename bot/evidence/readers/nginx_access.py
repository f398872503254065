"""HTTP access logs in the common/combined format (nginx and Apache): how many requests failed, and how.

nginx's ``combined`` and Apache's ``%h %l %u %t \\"%r\\" %>s %b`` share one layout, so one reader
(``http.access``) reads both; it recognises a line by its ``[dd/Mon/yyyy:HH:MM:SS +zzzz] "REQUEST"
STATUS`` core, wherever the line starts (a virtual host first, a Docker or journald prefix, a
JSON wrapper with ``\\"`` escapes). Fields appended after the user agent are read when present, keyed
(``upstream_status=502``, ``us=``, ``rt=``, ``urt="0.002"``, ``upstream_response_time=``) or
positional as in ``... "curl/7.88.1" 0.000 0.001 502`` (times have a decimal point, statuses do not).

An access log rarely proves a cause, so most of what it says has no signal: it counts requests and
5xx answers by status and by upstream status, with a few 5xx lines as evidence. Two patterns do
point somewhere, weakly: a 504 that the upstream status also shows as 504 after a whole number of
seconds (a proxy timeout firing, e.g. ``request_time=60.002``), and a 5xx that nginx produced without
contacting any upstream (``upstream_status=-``): 503 is then the default status of ``limit_req`` and
``limit_conn``, 502 that of a failed run-time DNS lookup of a ``proxy_pass`` with a variable.
Format facts: nginx ``ngx_http_log_module`` (``combined``), ``ngx_http_upstream`` variables
(``$upstream_status`` lists one value per tried server, ``, `` separated, ``:`` across internal
redirects); captured lines: tests/fixtures/nginx/SOURCES.md.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal
from bot.evidence.reader import Reader, Tally

_CORE = r"[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9]{2}:[0-9]{2}:[0-9]{2} [+-][0-9]{4}\] \\?\"[^\"]*\\?\" [1-5][0-9][0-9] "
_LINE = re.compile(
    r"\[[0-9]{2}/[A-Z][a-z]{2}/[0-9]{4}:[0-9:]{8} [+-][0-9]{4}\] \\?\"(?P<request>[^\"]*?)\\?\" "
    r"(?P<status>[1-5][0-9][0-9]) (?P<bytes>[0-9]+|-)(?P<tail>.*)"
)
_QUOTED = re.compile(r'\\?"[^"]*?\\?"')
_KEYED_STATUS = re.compile(r"\b(?:upstream_status|ups?_?status|ustatus|us)[=:]\s*\\?\"?([0-9, :-]+)")
_KEYED_RT = re.compile(r"\b(?:request_time|req_time|rt)[=:]\s*\\?\"?([0-9]+\.[0-9]+)")
_KEYED_URT = re.compile(r"\b(?:upstream_response_time|upstream_header_time|urt|uht)[=:]\s*\\?\"?([0-9][0-9., :]*)")
_POSITIONAL = re.compile(r"(?:^|\s)([0-9]+\.[0-9]{3}|[1-5][0-9][0-9]|-)(?=,?\s|,?$)")
_PATH = re.compile(r"^[A-Z]+ (\S+)")

#: Paths kept per status for the summary, beyond which the rest is folded into "(other)".
_MAX_PATHS = 64
_MAX_UPSTREAM_STATUSES = 32
#: A timeout fires at a whole number of seconds, give or take the few milliseconds of timer slack.
_TIMEOUT_SLACK = 0.1
_MIN_TIMEOUT = 1.0


class HttpAccessLog(Reader):
    """Counts the requests of a common/combined access log and reports the 5xx answers among them."""

    name = "http.access"
    title = "HTTP access log (nginx/Apache common or combined format)"
    triggers = (_CORE,)
    signals: ClassVar[dict[str, Signal]] = {
        "http.access_gateway_timeout": Signal(cause="upstream_timeout", weight=0.3),
        "http.access_503_no_upstream": Signal(cause="rate_limited", weight=0.2),
        "http.access_502_no_upstream": Signal(cause="dns_failure", weight=0.2),
    }

    def __init__(self) -> None:
        self.total = 0
        self.by_status: dict[int, int] = {}
        self.upstream_5xx: dict[str, int] = {}
        self.paths_5xx: dict[str, int] = {}
        self.with_upstream_fields = 0
        self.tally = Tally()
        self.timeouts: dict[int, int] = {}

    def feed(self, line: str) -> bool:
        match = _LINE.search(line)
        if match is None:
            return False
        status = int(match.group("status"))
        self.total += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        if status < 500:
            return False
        upstream_status, times = _upstream_fields(match.group("tail"))
        if upstream_status is not None:
            self.with_upstream_fields += 1
        self.tally.add("http.access_5xx", line, str(status))
        ups = upstream_status if upstream_status is not None else "(not logged)"
        _bump(self.upstream_5xx, ups, _MAX_UPSTREAM_STATUSES)
        path = _PATH.match(match.group("request"))
        _bump(self.paths_5xx, path.group(1).split("?", 1)[0] if path else "-", _MAX_PATHS)
        if status == 504 and upstream_status == "504" and times:
            whole = [t for t in times if t >= _MIN_TIMEOUT and abs(t - round(t)) <= _TIMEOUT_SLACK]
            if whole:
                seconds = round(max(whole))
                self.timeouts[seconds] = self.timeouts.get(seconds, 0) + 1
                self.tally.add("http.access_gateway_timeout", line, str(seconds), seconds=seconds)
        elif upstream_status == "-" and status in (502, 503):
            self.tally.add(f"http.access_{status}_no_upstream", line, "")
        return False

    def findings(self) -> list[Finding]:
        if not self.total:
            return []
        out: list[Finding] = []
        errors = sum(n for s, n in self.by_status.items() if s >= 500)
        if not errors:
            out.append(
                Finding(
                    kind="http.access_ok",
                    severity=Severity.OK,
                    summary=f"{self.total} requests in the access log, none answered 5xx",
                    data={"total": self.total, "by_status": dict(sorted(self.by_status.items()))},
                    reader=self.name,
                )
            )
            return out
        evidence: list[str] = []
        for kind, _key, _count, lines, _data in self.tally.items():
            if kind == "http.access_5xx":
                evidence.extend(lines[:2])
        rate = errors / self.total
        statuses = {s: n for s, n in sorted(self.by_status.items()) if s >= 500}
        top = sorted(self.paths_5xx.items(), key=lambda kv: -kv[1])[:3]
        data: dict[str, Any] = {"total": self.total, "count": errors, "rate": round(rate, 4), "by_status": statuses}
        if self.with_upstream_fields:
            data["by_upstream_status"] = dict(sorted(self.upstream_5xx.items(), key=lambda kv: -kv[1]))
        data["top_paths"] = dict(top)
        described = ", ".join(f"{n}× {s}" for s, n in statuses.items())
        out.append(
            Finding(
                kind="http.access_5xx",
                severity=Severity.CRITICAL if rate >= 0.05 else Severity.WARNING,
                summary=f"{errors} of {self.total} requests answered 5xx ({rate:.0%}): {described}; "
                f"most on {', '.join(p for p, _ in top)}",
                evidence=tuple(evidence[:6]),
                data=data,
                reader=self.name,
            )
        )
        out.extend(self._cause_findings())
        return out

    def _cause_findings(self) -> list[Finding]:
        grouped: dict[str, tuple[int, list[str]]] = {}
        for kind, _key, count, lines, _data in self.tally.items():
            if kind == "http.access_5xx":
                continue
            total, kept = grouped.get(kind, (0, []))
            grouped[kind] = (total + count, [*kept, *lines])
        out = []
        for kind, (count, kept) in grouped.items():
            data: dict[str, Any] = {"count": count}
            if kind == "http.access_gateway_timeout":
                seconds = max(self.timeouts, key=lambda s: self.timeouts[s])
                summary = (
                    f"{count} requests answered 504 after ≈{seconds} s with upstream status 504: "
                    f"a proxy timeout of {seconds} s firing"
                )
                data["seconds"] = seconds
            elif kind == "http.access_503_no_upstream":
                summary = (
                    f"{count} requests answered 503 by the proxy itself (no upstream contacted): "
                    "the default status of limit_req/limit_conn, or a deliberate 503"
                )
            else:
                summary = (
                    f"{count} requests answered 502 without contacting an upstream: "
                    "typical of a failed run-time DNS lookup of the upstream name"
                )
            out.append(
                Finding(
                    kind=kind,
                    severity=Severity.WARNING,
                    summary=summary,
                    evidence=tuple(kept[:4]),
                    data=data,
                    reader=self.name,
                )
            )
        return out


def _bump(counts: dict[str, int], key: str, limit: int) -> None:
    if key not in counts and len(counts) >= limit:
        key = "(other)"
    counts[key] = counts.get(key, 0) + 1


def _upstream_fields(tail: str) -> tuple[str | None, list[float]]:
    """(last upstream status or None when not logged, the request/upstream times) from the appended fields."""
    keyed = _KEYED_STATUS.search(tail)
    times: list[float] = []
    for rx in (_KEYED_RT, _KEYED_URT):
        found = rx.search(tail)
        if found:
            times.extend(_numbers(found.group(1)))
    if keyed:
        return _last_status(keyed.group(1)), times
    if times:
        return None, times
    tokens = _POSITIONAL.findall(_QUOTED.sub(" ", tail))
    floats = [float(t) for t in tokens if "." in t]
    if not floats:
        return None, []
    statuses = [t for t in tokens if "." not in t]
    return (statuses[-1] if statuses else None), floats


def _last_status(value: str) -> str:
    """``$upstream_status`` lists one value per tried server: the last one is what the proxy got."""
    parts = [p for p in re.split(r"[,:\s]+", value.strip()) if p]
    return parts[-1] if parts else "-"


def _numbers(value: str) -> list[float]:
    return [float(x) for x in re.findall(r"[0-9]+\.[0-9]+", value)]


READERS = (HttpAccessLog,)
