"""DNS from the host: do the upstream (and site, database, TLS) host names resolve where the proxy runs?

Why: nginx resolves ``proxy_pass`` names at start (``host not found in upstream``) or, with variables,
at run time through its ``resolver`` (``could not be resolved (3: Host not found)``); the name that
fails from the proxy host may resolve fine from a laptop. What it runs, per name, concurrently::

    getent ahosts NAME                      # what the C library (NSS: /etc/hosts, DNS) answers
    dig +time=2 +tries=1 NAME               # what the DNS servers answer (skipped if dig is missing)

Names come from the facts ``upstreams``, ``site_url``, ``tls_hosts``, ``pg_host``, ``mysql_host``,
``redis_host``; IP literals and unix sockets are skipped. Reader: ``dns.lookup``. No sudo.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from bot.evidence.readers.dns import DnsLookup
from bot.runbook.api import Command, CommandResult, Finding, Host, Runbook, Severity, Shape, Steps
from runbooks._facts import ignored
from runbooks.upstream_probe import parse_upstream, valid_host

MAX_NAMES = 8
_LOOPBACK = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_FAILURES = {"dns.nxdomain", "dns.servfail", "dns.refused", "dns.nodata"}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class DnsCheck(Runbook):
    """Resolves the host names the proxy and the app depend on, from the host itself."""

    name = "dns"
    title = "DNS resolution of upstream and dependency names from the host"
    readers = (DnsLookup,)
    shapes = (Shape("getent", "ahosts", Host()), Shape("dig", "+time=2", "+tries=1", Host()))

    def names(self) -> tuple[list[str], list[str]]:
        """The host names to resolve and the fact entries that were not valid host names."""
        candidates: list[str] = []
        bad: list[str] = []
        for item in [*(self.facts.get("upstreams") or "").split(","), *(self.facts.get("tls_hosts") or "").split(",")]:
            if not item.strip():
                continue
            parsed = parse_upstream(item)
            if parsed is None:
                bad.append(item.strip()[:200])
            elif parsed[0] == "tcp":
                candidates.append(parsed[1])
        site = (self.facts.get("site_url") or "").strip()
        if site:
            try:
                host = urlsplit(site).hostname or ""
            except ValueError:
                host = ""
            (candidates if host else bad).append(host or site[:200])
        for fact in ("pg_host", "mysql_host", "redis_host"):
            value = (self.facts.get(fact) or "").strip()
            if value and not value.startswith("/"):
                candidates.append(value)
        names: list[str] = []
        for host in candidates:
            if not valid_host(host):
                bad.append(host[:200])
            elif not _is_ip(host) and host.lower() not in names:
                names.append(host.lower())
        return names[:MAX_NAMES], bad

    def steps(self) -> Steps:
        names, bad = self.names()
        findings = ignored(self.name, bad, "not a valid host name")
        if not names:
            findings.append(
                Finding(
                    kind="dns.nothing",
                    severity=Severity.INFO,
                    summary="no host names to resolve (upstreams and dependencies are IP addresses or sockets)",
                    runbook=self.name,
                )
            )
            return findings
        commands: list[Command] = []
        for name in names:
            commands.append(Command.of("getent", "ahosts", name, timeout=10))
            if name not in _LOOPBACK:  # /etc/hosts names, never in DNS
                commands.append(Command.of("dig", "+time=2", "+tries=1", name, timeout=10))
        results = yield tuple(commands)
        assert isinstance(results, tuple)
        found = [f for result in results for f in self._read(result)]
        by_nss = {
            str(f.data.get("name")) for f in found if f.kind == "dns.resolved" and f.data.get("detail") == "getent"
        }
        for item in found:
            name = str(item.data.get("name"))
            finding = item
            if item.kind in _FAILURES and name in by_nss:
                finding = Finding(
                    kind="dns.hosts_only",
                    severity=Severity.INFO,
                    summary=f"{name} resolves through the system resolver (/etc/hosts or NSS) but not in DNS: "
                    "fine for nginx at start, not for a run-time `resolver`",
                    evidence=item.evidence,
                    data=item.data,
                    host=item.host,
                    runbook=self.name,
                )
            findings.append(finding)
        return findings

    def _read(self, result: CommandResult) -> list[Finding]:
        if result.error is not None:
            return [self.failed(result)]
        if result.exit_status == 127:
            return []  # dig is not installed: getent alone answers
        return self.read(result, DnsLookup)
