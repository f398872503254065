"""TLS certificate expiry of the HTTPS endpoints the host serves or forwards to.

Why: an expired upstream certificate breaks a proxy that verifies it (502, ``upstream_tls_error``) and a
CDN in front of the origin (525/526). What it runs per endpoint, concurrently, as a fixed pipeline whose
values are positional arguments::

    openssl s_client -connect "$1" -servername "$2" </dev/null 2>/dev/null | openssl x509 -noout -enddate

(without ``-servername`` for IP literals, where SNI does not apply). Endpoints: the fact ``tls_hosts``
(comma-separated ``host:port``, port 443 when omitted) and the ``https://`` entries of ``upstreams``.
Reader: ``tls.openssl`` (expired → critical, within 14 days → warning). No sudo.
"""

from __future__ import annotations

from bot.evidence.readers.tls import TlsCheck
from bot.runbook.api import Command, CommandResult, Finding, Host, HostPort, Runbook, Severity, Shape, Steps
from runbooks._facts import ignored
from runbooks.upstream_probe import label, parse_upstream

WITH_SNI = 'openssl s_client -connect "$1" -servername "$2" </dev/null 2>/dev/null | openssl x509 -noout -enddate'
WITHOUT_SNI = 'openssl s_client -connect "$1" </dev/null 2>/dev/null | openssl x509 -noout -enddate'
MAX_HOSTS = 8


class TlsCert(Runbook):
    """``notAfter`` of each endpoint's certificate, compared with now."""

    name = "tls_cert"
    title = "TLS certificate expiry of tls_hosts and HTTPS upstreams"
    readers = (TlsCheck,)
    shapes = (Shape("sh", "-c", WITH_SNI, "sh", HostPort(), Host()), Shape("sh", "-c", WITHOUT_SNI, "sh", HostPort()))

    def endpoints(self) -> tuple[list[tuple[str, str]], list[str]]:
        """``(host:port, name)`` pairs to check, and the fact entries that were invalid."""
        out: list[tuple[str, str]] = []
        bad: list[str] = []
        for item in (self.facts.get("tls_hosts") or "").split(","):
            if item.strip():
                parsed = parse_upstream("https://" + item.strip().removeprefix("https://"))
                if parsed is None:
                    bad.append(item.strip()[:200])
                else:
                    out.append((label("tcp", parsed[1], parsed[2]), parsed[1]))
        for item in (self.facts.get("upstreams") or "").split(","):
            if item.strip().startswith("https://"):
                parsed = parse_upstream(item)
                if parsed is None:
                    bad.append(item.strip()[:200])
                else:
                    out.append((label("tcp", parsed[1], parsed[2]), parsed[1]))
        return list(dict.fromkeys(out))[:MAX_HOSTS], bad

    def steps(self) -> Steps:
        endpoints, bad = self.endpoints()
        findings = ignored(self.name, bad, "not host:port")
        if not endpoints:
            findings.append(
                Finding(
                    kind="tls_cert.nothing",
                    severity=Severity.INFO,
                    summary="no TLS endpoint known (facts tls_hosts, https:// upstreams): nothing to check",
                    runbook=self.name,
                )
            )
            return findings
        commands = []
        for hostport, name in endpoints:
            shown = f"openssl s_client -connect {hostport} | openssl x509 -noout -enddate"
            if ":" in name or name.replace(".", "").isdigit():
                commands.append(Command.pipeline(WITHOUT_SNI, hostport, timeout=15, label=shown))
            else:
                commands.append(Command.pipeline(WITH_SNI, hostport, name, timeout=15, label=shown))
        results = yield tuple(commands)
        assert isinstance(results, tuple)
        for (hostport, _), result in zip(endpoints, results, strict=True):
            findings.extend(self._read(hostport, result))
        return findings

    def _read(self, hostport: str, result: CommandResult) -> list[Finding]:
        if result.error is not None:
            return [self.failed(result)]
        found = self.read(result, TlsCheck)
        if not found:
            return [
                Finding(
                    kind="tls_cert.no_certificate",
                    severity=Severity.WARNING,
                    summary=f"no certificate read from {hostport}: no TLS there, refused, or openssl missing",
                    data={"endpoint": hostport, "exit_status": result.exit_status},
                    host=result.host,
                    runbook=self.name,
                )
            ]
        return [f.model_copy(update={"data": {**f.data, "endpoint": hostport}}) for f in found]
