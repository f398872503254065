"""tls reader: openssl x509 dates against the clock, -checkend, s_client verification and handshake errors.

Certificates were made on this machine with openssl 3.0 (an expired leaf signed by a local CA with
``openssl ca -startdate/-enddate``, a self-signed one, one expiring in three days).
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.evidence.readers import tls
from bot.evidence.readers.tls import TlsCheck, parse_not_after
from bot.testing import explain, kinds, read
from tests.evidence.readers._host_fixtures import fixture

READERS = [TlsCheck]
CAPTURED = datetime(2026, 11, 30, 5, 3, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Compare certificate dates with the time the fixtures were captured."""
    monkeypatch.setattr(tls, "utcnow", lambda: CAPTURED)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("openssl_enddate_expired.txt", "tls.cert_expired"),
        ("openssl_enddate_iso.txt", "tls.cert_expired"),
        ("openssl_checkend_expired.txt", "tls.cert_expired"),
        ("openssl_sclient_expired.txt", "tls.cert_expired"),
        ("openssl_sclient_selfsigned.txt", "tls.cert_self_signed"),
        ("openssl_sclient_plain.txt", "tls.handshake_failed"),
        ("openssl_sclient_refused.txt", "tls.connect_failed"),
        ("openssl_enddate_soon.txt", "tls.cert_expiring"),
    ],
)
def test_certificate_problems_are_recognised(name: str, kind: str) -> None:
    assert kind in kinds(fixture("probes", name), READERS)


def test_an_expired_certificate_points_at_upstream_tls_error_and_mentions_cloudflare() -> None:
    text = fixture("probes", "openssl_enddate_expired.txt")
    (finding,) = read(text, READERS)
    assert "cdn_origin_tls" in finding.summary
    assert explain(text, 502).causes[0].id == "upstream_tls_error"


def test_expiring_soon_is_a_warning_with_no_cause() -> None:
    text = fixture("probes", "openssl_enddate_soon.txt")
    (finding,) = read(text, READERS)
    assert finding.severity.value == "warning"
    assert not explain(text).evidence_found


def test_both_date_layouts_parse_including_the_two_space_day() -> None:
    assert parse_not_after("notAfter=Nov  1 00:00:00 2026 GMT") == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_not_after("notAfter=2026-11-01 00:00:00Z") == datetime(2026, 11, 1, tzinfo=UTC)


def test_the_clock_decides_expiry_not_the_capture_date(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tls, "utcnow", lambda: datetime(2026, 12, 4, tzinfo=UTC))
    assert kinds(fixture("probes", "openssl_enddate_soon.txt"), READERS) == {"tls.cert_expired"}


@pytest.mark.parametrize("name", ["openssl_enddate_valid.txt", "openssl_checkend_valid.txt", "openssl_sclient_ok.txt"])
def test_near_miss_a_valid_certificate_is_ok(name: str) -> None:
    found = read(fixture("probes", name), READERS)
    assert found and all(f.severity.value == "ok" for f in found)


def test_near_miss_verify_ok_without_a_peer_certificate_is_not_reported_as_verified() -> None:
    assert "tls.verified" not in kinds(fixture("probes", "openssl_sclient_plain.txt"), READERS)


def test_near_miss_nginx_client_side_handshake_errors_are_not_openssl_probe_output() -> None:
    line = (
        "2026/11/30 05:00:01 [info] 1234#1234: *77 SSL_do_handshake() failed (SSL: error:0A00010B:SSL "
        "routines::wrong version number) while SSL handshaking, client: 198.51.100.7, server: 0.0.0.0:443"
    )
    assert kinds(line, READERS) == set()
