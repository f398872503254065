"""dns reader: dig/host/nslookup/getent outcomes from real runs against a local UDP DNS stub (BIND 9.18)."""

from __future__ import annotations

import pytest

from bot.evidence.readers.dns import DnsLookup
from bot.testing import explain, kinds, read
from tests.evidence.readers._host_fixtures import fixture

READERS = [DnsLookup]


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("dig_nxdomain.txt", "dns.nxdomain"),
        ("dig_servfail.txt", "dns.servfail"),
        ("dig_refused.txt", "dns.refused"),
        ("dig_timeout.txt", "dns.no_servers"),
        ("dig_closed_port.txt", "dns.no_servers"),
        ("host_nxdomain.txt", "dns.nxdomain"),
        ("host_servfail.txt", "dns.servfail"),
        ("host_refused.txt", "dns.refused"),
        ("host_timeout.txt", "dns.no_servers"),
        ("nslookup_nxdomain.txt", "dns.nxdomain"),
        ("nslookup_servfail.txt", "dns.servfail"),
        ("nslookup_refused.txt", "dns.refused"),
        ("nslookup_timeout.txt", "dns.no_servers"),
        ("getent_missing.txt", "dns.getent_not_found"),
        ("dig_short_nx.txt", "dns.short_empty"),
    ],
)
def test_a_failed_lookup_is_recognised_from_each_tool(name: str, kind: str) -> None:
    assert kind in kinds(fixture("probes", name), READERS)


@pytest.mark.parametrize("name", ["dig_nxdomain.txt", "host_nxdomain.txt", "nslookup_nxdomain.txt"])
def test_the_failing_name_is_reported(name: str) -> None:
    (finding,) = [f for f in read(fixture("probes", name), READERS) if f.kind == "dns.nxdomain"]
    assert finding.data["name"] == "nx-db.internal.example"


def test_headerless_dig_output_is_read_as_well() -> None:
    text = "\n".join(fixture("probes", "dig_servfail.txt").splitlines()[1:])
    (finding,) = read(text, READERS)
    assert (finding.kind, finding.data["name"]) == ("dns.servfail", "fail.internal.example")


def test_the_old_dig_timeout_text_counts_as_no_servers() -> None:
    line = ";; connection timed out; no servers could be reached"
    assert kinds(line, READERS) == {"dns.no_servers"}
    assert explain(line, 502).causes[0].id == "dns_failure"


@pytest.mark.parametrize("name", ["dig_noerror.txt", "host_ok.txt", "getent_ok.txt", "dig_short_ok.txt"])
def test_near_miss_a_successful_lookup_is_healthy_not_dns_failure(name: str) -> None:
    found = read(fixture("probes", name), READERS)
    assert {f.kind for f in found} == {"dns.resolved"}
    assert all(f.severity.value == "ok" for f in found)


def test_near_miss_one_server_failing_before_another_answers_is_not_a_failure() -> None:
    text = (
        ";; communications error to 127.0.0.53#53: timed out\n"
        "\n"
        "; <<>> DiG 9.18.49 <<>> app.example\n"
        ";; Got answer:\n"
        ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 1\n"
        ";; flags: qr rd ra; QUERY: 1, ANSWER: 1, AUTHORITY: 0, ADDITIONAL: 0\n"
        ";; QUESTION SECTION:\n"
        ";app.example.\t\tIN\tA\n"
    )
    assert kinds(text, READERS) == {"dns.resolved"}


def test_nodata_is_a_weaker_failure_than_nxdomain() -> None:
    text = (
        ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 7\n"
        ";; flags: qr rd ra; QUERY: 1, ANSWER: 0, AUTHORITY: 1, ADDITIONAL: 1\n"
        ";; QUESTION SECTION:\n"
        ";api.example.com.\t\tIN\tAAAA\n"
    )
    (finding,) = read(text, READERS)
    assert (finding.kind, finding.data["type"]) == ("dns.nodata", "AAAA")
