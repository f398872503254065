"""tls_cert on openssl outputs recorded from the lab host against local s_server instances."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.testing import drive
from runbooks.tls_cert import WITH_SNI, WITHOUT_SNI, TlsCert
from tests.runbooks.record import asked, replies

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runbooks" / "tls_cert"
FACTS = json.loads((FIXTURES / "facts.json").read_text())


def test_expired_valid_and_missing_certificates() -> None:
    """28611 serves an expired certificate, 28612 a valid one, nothing listens on 28613."""
    findings = drive(TlsCert, {}, replies(FIXTURES / "lab_tls.json"), facts=FACTS)
    by_endpoint = {f.data.get("endpoint"): f.kind for f in findings}
    assert by_endpoint == {
        "127.0.0.1:28611": "tls.cert_expired",
        "localhost:28612": "tls.cert_valid",
        "127.0.0.1:28613": "tls_cert.no_certificate",
    }


def test_endpoint_and_sni_name_are_positional_arguments() -> None:
    """host:port and the SNI name are "$1"/"$2" of a constant pipeline; IP literals get no SNI."""
    commands, _ = asked(TlsCert, {}, replies(FIXTURES / "lab_tls.json"), FACTS)
    argvs = {c.argv[4:]: c.argv[2] for c in commands}
    assert argvs[("localhost:28612", "localhost")] == WITH_SNI
    assert argvs[("127.0.0.1:28611",)] == WITHOUT_SNI


@pytest.mark.parametrize("bad", ["$(id):443", "a;b:443", "`id`", "-connect:443", "x:443\nid"])
def test_hostile_tls_hosts_are_rejected(bad: str) -> None:
    findings = drive(TlsCert, {}, {}, facts={"tls_hosts": bad})
    assert [f.kind for f in findings] == ["runbook.bad_fact", "tls_cert.nothing"]
