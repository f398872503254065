"""The hop ladder from the proxy host: each upstream probed directly, and the site through the proxy.

Why: a 502 through nginx says something between nginx and the app failed, not what. Probing the upstream
from the proxy host, bypassing the proxy, splits the ladder: a refused direct probe confirms upstream_down;
a healthy direct probe next to a 502 through the proxy points at the proxy's side (socket permissions,
configuration, timeouts); a slow direct probe confirms the upstream is the slow hop.

What it runs, concurrently (argv; values are arguments, never shell text)::

    curl -sS -o /dev/null -m 5 -w WRITE_OUT http://HOST:PORT/     # https + -k for TLS upstreams
    curl ... --unix-socket PATH http://localhost/                # unix:PATH upstreams
    curl ... -- SITE_URL                                          # through the proxy

(``WRITE_OUT`` prints ``code=``, ``connect=``, ``ttfb=`` and ``total=``.)

Facts: ``upstreams`` (comma-separated ``host:port``, ``http(s)://host:port`` or ``unix:/path``),
``app_socket`` (a unix socket path), ``site_url``. Readers: ``curl.error``, ``curl.response``; each
finding's data says which hop it is (``hop``: ``direct``/``proxy``) and what was probed. No sudo.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from bot.evidence.readers.curl import CurlError, CurlResponse
from bot.runbook.api import Alt, Command, CommandResult, Finding, PathArg, Runbook, Severity, Shape, Steps, Url

WRITE_OUT = "code=%{http_code} connect=%{time_connect} ttfb=%{time_starttransfer} total=%{time_total}\\n"
MAX_PROBES = 8
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_CTRL = re.compile(r"[\x00-\x1f\x7f]")
_URL = re.compile(r"^https?://[^\s\x00-\x1f\x7f/?#@]+(?:[/?#][^\s\x00-\x1f\x7f]*)?$")


def valid_host(host: str) -> bool:
    """A DNS name or an IP literal (IPv6 without brackets), nothing a program could read as an option."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return bool(_HOST.match(host)) and not host.startswith("-")
    return True


def parse_upstream(text: str) -> tuple[str, str, int, bool] | None:
    """``(kind, host_or_path, port, tls)`` for ``unix:/path``, ``[scheme://]host:port`` or ``[v6]:port``.

    ``kind`` is ``unix`` or ``tcp``; None when the text is not a valid upstream (it is then reported,
    never used).
    """
    text = text.strip()
    if text.startswith("unix:"):
        path = text[5:]
        ok = path.startswith("/") and not _CTRL.search(path) and len(path) < 4096
        return ("unix", path, 0, False) if ok else None
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "http", text
    if scheme not in ("http", "https"):
        return None
    rest = rest.rstrip("/")
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    else:
        host, _, port_text = rest.partition(":")
    port = int(port_text) if port_text.isdigit() else (443 if scheme == "https" else 80)
    if not valid_host(host) or not 1 <= port <= 65535 or (port_text and not port_text.isdigit()):
        return None
    return "tcp", host, port, scheme == "https"


def upstreams_from(facts: Mapping[str, str]) -> tuple[list[tuple[str, str, int, bool]], list[str]]:
    """The valid upstreams named by the facts (``upstreams``, ``app_socket``), and the invalid texts."""
    items = [x for x in (facts.get("upstreams") or "").split(",") if x.strip()]
    if facts.get("app_socket"):
        items.append("unix:" + facts["app_socket"].strip())
    good: list[tuple[str, str, int, bool]] = []
    bad: list[str] = []
    for item in items:
        parsed = parse_upstream(item)
        if parsed is None:
            bad.append(item.strip()[:200])
        elif parsed not in good:
            good.append(parsed)
    return good, bad


def label(kind: str, host: str, port: int) -> str:
    if kind == "unix":
        return f"unix:{host}"
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class UpstreamProbe(Runbook):
    """Direct probes of every upstream plus one probe of the site through the proxy."""

    name = "upstream_probe"
    title = "Upstream probed directly from the proxy host (hop ladder)"
    roles = frozenset({"proxy"})
    readers = (CurlError, CurlResponse)
    shapes = (
        Shape(
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-m",
            "5",
            "-w",
            WRITE_OUT,
            Alt(("--unix-socket", PathArg("socket"), "http://localhost/"), ("-k", Url()), Url(), ("--", Url())),
        ),
    )

    def steps(self) -> Steps:
        upstreams, bad = upstreams_from(self.facts)
        findings = [self._bad(text) for text in bad]
        site = (self.facts.get("site_url") or "").strip()
        if site and not _URL.match(site):
            findings.append(self._bad(site, fact="site_url"))
            site = ""
        probes: list[tuple[str, str, Command]] = []
        base = ("curl", "-sS", "-o", "/dev/null", "-m", "5", "-w", WRITE_OUT)
        for kind, host, port, tls in upstreams[:MAX_PROBES]:
            target = label(kind, host, port)
            if kind == "unix":
                argv = (*base, "--unix-socket", host, "http://localhost/")
            else:
                argv = (*base, *(("-k",) if tls else ()), f"{'https' if tls else 'http'}://{target}/")
            probes.append(("direct", target, Command.of(*argv, timeout=10)))
        if site:
            probes.append(("proxy", site, Command.of(*base, "--", site, timeout=10)))
        if not probes:
            return [
                *findings,
                Finding(
                    kind="upstream_probe.nothing",
                    severity=Severity.INFO,
                    summary="no upstream or site URL known (facts upstreams, app_socket, site_url): nothing to probe",
                    runbook=self.name,
                ),
            ]
        results = yield tuple(command for _, _, command in probes)
        assert isinstance(results, tuple)
        for (hop, target, _), result in zip(probes, results, strict=True):
            findings.extend(self._read(hop, target, result))
        return findings

    def _read(self, hop: str, target: str, result: CommandResult) -> list[Finding]:
        if result.error is None and result.exit_status == 127:
            return [self.failed(result)]
        where = f"direct probe of {target}" if hop == "direct" else f"{target} through the proxy"
        out = []
        for finding in self.read(result, CurlError, CurlResponse):
            data = {**finding.data, "hop": hop, "probed": target}
            out.append(finding.model_copy(update={"summary": f"{where}: {finding.summary}", "data": data}))
        return out

    def _bad(self, text: str, fact: str = "upstreams") -> Finding:
        return Finding(
            kind="runbook.bad_fact",
            severity=Severity.WARNING,
            summary=f"{self.name}: {fact} entry {text!r} ignored: not unix:/path, host:port or an http(s) URL",
            data={"fact": fact},
            runbook=self.name,
        )
