"""dns on getent/dig outputs recorded from the lab host (a real name, localhost, and an .invalid name)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.testing import drive
from runbooks.dns_check import DnsCheck
from tests.runbooks.record import asked, replies

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runbooks" / "dns_check"
FACTS = json.loads((FIXTURES / "facts.json").read_text())


def test_unresolvable_upstream_name_is_a_dns_failure() -> None:
    """does-not-exist.invalid: getent prints nothing (exit 2) and dig says NXDOMAIN."""
    findings = drive(DnsCheck, {}, replies(FIXTURES / "lab_dns.json"), facts=FACTS)
    bad = {f.kind for f in findings if f.data.get("name") == "does-not-exist.invalid"}
    assert bad == {"dns.getent_not_found", "dns.nxdomain"}


def test_localhost_resolves_through_nss_and_is_not_asked_of_dns() -> None:
    """Near miss: localhost is in /etc/hosts, not in DNS; it is resolved with getent only, no failure."""
    commands, findings = asked(DnsCheck, {}, replies(FIXTURES / "lab_dns.json"), FACTS)
    assert ("getent", "ahosts", "localhost") in [c.argv for c in commands]
    assert not [c for c in commands if c.argv[0] == "dig" and c.argv[-1] == "localhost"]
    localhost = [f for f in findings if f.data.get("name") == "localhost"]
    assert localhost and all(f.kind == "dns.resolved" for f in localhost)


def test_ip_literals_and_sockets_are_not_resolved() -> None:
    """Only names are looked up: IP literals and unix sockets are skipped."""
    facts = {"upstreams": "127.0.0.1:8000,[::1]:9000,unix:/run/app.sock", "pg_host": "/var/run/postgresql"}
    assert [f.kind for f in drive(DnsCheck, {}, {}, facts=facts)] == ["dns.nothing"]


@pytest.mark.parametrize("bad", ["$(id):80", "a;b:80", "`id`:80", "-x:80", "a\nb:80"])
def test_hostile_names_are_rejected_with_a_finding(bad: str) -> None:
    """Names with shell metacharacters, a leading dash or a newline never reach getent or dig."""
    findings = drive(DnsCheck, {}, {}, facts={"upstreams": bad})
    assert [f.kind for f in findings] == ["runbook.bad_fact", "dns.nothing"]
