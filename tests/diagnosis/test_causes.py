"""Every cause of the catalog, end to end through readers and rules: one positive, one near miss.

The positive case is real evidence for the cause (lines captured from the real program on this machine,
or a public excerpt; see each fixture folder's SOURCES.md) and must put the cause first. The near
miss is real text that looks related and must not count as evidence for the cause (the cause may
still be listed as a usual suspect of the status, without evidence).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.diagnosis.catalog import CATALOG
from bot.testing import explain

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def grep(path: str, *needles: str) -> str:
    """The lines of a fixture that contain every needle (as the person would paste them)."""
    lines = (FIXTURES / path).read_text(errors="replace").splitlines()
    found = [line for line in lines if all(n in line for n in needles)]
    assert found, f"{path} has no line with {needles}"
    return "\n".join(found) + "\n"


def whole(path: str) -> str:
    return (FIXTURES / path).read_text(errors="replace")


NGINX = "nginx/error-upstream-failures.log"

# cause → (evidence text, status)
POSITIVE: dict[str, tuple[str, int | None]] = {
    "upstream_down": (grep(NGINX, "connect() failed (111"), 502),
    "upstream_crashed": (grep(NGINX, "prematurely closed connection"), 502),
    "upstream_timeout": (grep(NGINX, "upstream timed out", "reading response header"), 504),
    "upstream_connect_timeout": (grep(NGINX, "upstream timed out", "while connecting to upstream"), 504),
    "upstream_bad_response": (grep(NGINX, "too big header"), 502),
    "upstream_tls_error": (grep(NGINX, "SSL_do_handshake", "to upstream"), 502),
    "dns_failure": (whole("nginx/public/docker-host-not-found.log"), 502),
    "permission_denied": (grep("apache/24_fpmlocked.log", "Permission denied"), 503),
    "fd_exhaustion": (whole("nginx/error-emfile.log"), 500),
    "port_exhaustion": (whole("nginx/public/port-exhaustion-99.log"), 502),
    "disk_full": (whole("disk/df-h-full.txt") + whole("disk/enospc-real.txt"), 500),
    "oom_kill": (whole("memory/pqhosting-dmesg-T.txt"), 502),
    "db_down": (whole("db/pg15-psycopg2-refused.txt"), 500),
    "db_connections_exhausted": (whole("db/pg15-psycopg2-too-many-clients.txt"), 500),
    "db_slow_query": (whole("db/pg15-sqlalchemy-statement-timeout.txt"), 504),
    "worker_saturation": (grep("apache/24_mpm_event_maxrequestworkers.log", "AH00484"), 503),
    "rate_limited": (grep(NGINX, "limiting requests, excess"), 503),
    "maintenance_mode": (whole("probes/maintenance_wpmgr_stuck.txt"), 503),
    "app_exception": (grep("apache/24_fpmfatal.log", "PHP Fatal error"), 500),
    "config_error": (grep(NGINX, "rewrite or internal redirection cycle"), 500),
    "cpu_starvation": (
        "### $ uptime\n" + whole("load/uptime-overloaded.txt") + "### $ nproc\n" + whole("load/nproc.txt"),
        504,
    ),
    "external_dependency": (whole("apps/requests-readtimeout-external.txt"), 504),
    "cdn_origin_unreachable": (whole("probes/cloudflare_521_oneline.txt"), 521),
    "cdn_origin_tls": (whole("probes/cloudflare_526_text_keeweb.txt"), 526),
    "cdn_bad_origin_response": (whole("probes/cloudflare_520_reference_number.txt"), 520),
}

# cause → (text that looks related, status): the cause must not come first.
NEAR_MISS: dict[str, tuple[str, int | None]] = {
    # nginx gave up on one server and another answered: a warning, not an outage.
    "upstream_down": (whole("probes/curl_w_200.txt"), None),
    # A client hanging up on nginx is not the upstream dying.
    "upstream_crashed": (grep(NGINX, "closed keepalive connection"), 502),
    # A timeout while connecting is a connect timeout, not a slow upstream.
    "upstream_timeout": (grep(NGINX, "upstream timed out", "while connecting to upstream"), 504),
    # A read timeout is not a connect timeout.
    "upstream_connect_timeout": (grep(NGINX, "upstream timed out", "reading response header"), 504),
    # nginx buffering a large response to disk is normal.
    "upstream_bad_response": (grep(NGINX, "gracefully shutting down"), 502),
    # TLS errors of clients talking to nginx are not TLS to the upstream.
    "upstream_tls_error": (grep(NGINX, "SSL_do_handshake", "while SSL handshaking, client"), 502),
    # A name that resolves is fine.
    "dns_failure": (whole("probes/dig_noerror.txt"), 502),
    # 404s for missing files are not permission problems.
    "permission_denied": (whole("nginx/access-combined.log"), 403),
    # A healthy ss -s says nothing about descriptors.
    "fd_exhaustion": (whole("sockets/ss-s-idle.txt"), 500),
    # EADDRNOTAVAIL to an IPv6 address nginx then skipped is not exhaustion.
    "port_exhaustion": (whole("nginx/public/ipv6-99-musl.log"), 502),
    # A read-only squashfs at 100 % is always full by design.
    "disk_full": (whole("disk/df-h-squashfs-only.txt"), 500),
    # free with plenty available.
    "oom_kill": (whole("memory/free-m.txt"), 502),
    # pg_isready accepting connections.
    "db_down": (whole("db/pg15-pg_isready-accepting.txt"), 500),
    # A connection count well below max_connections.
    "db_connections_exhausted": (whole("db/pg15-connections-ok.txt"), 500),
    # Short queries in pg_stat_activity.
    "db_slow_query": (whole("db/pg15-pg_stat_activity-short.txt"), 504),
    # php-fpm starting its workers is not saturation.
    "worker_saturation": (grep("apache/24_mpm_event_maxrequestworkers.log", "AH00489"), 503),
    # limit_req in dry-run mode rejects nothing.
    "rate_limited": (grep(NGINX, "limiting requests, dry run"), 503),
    # PostgreSQL's maintenance_work_mem setting is not maintenance mode.
    "maintenance_mode": (whole("probes/postgres_maintenance_work_mem.txt"), 503),
    # php-fpm spawning more children is load, not an application error.
    "app_exception": (whole("apps/php-fpm-seems-busy.log"), 500),
    # nginx -t passing.
    "config_error": (whole("probes/nginx_t_ok.txt"), 500),
    # An idle machine.
    "cpu_starvation": (
        "### $ uptime\n" + whole("load/uptime-idle.txt") + "### $ nproc\n" + whole("load/nproc.txt"),
        504,
    ),
    # A timeout talking to the local database is not an outside dependency.
    "external_dependency": (whole("db/pg15-sqlalchemy-statement-timeout.txt"), 504),
    # A plain 502 from the origin's own nginx with no CDN involved.
    "cdn_origin_unreachable": (grep(NGINX, "connect() failed (111"), 502),
    # An expired certificate with a plain 502 is the upstream's TLS, not the CDN's.
    "cdn_origin_tls": (whole("probes/openssl_enddate_expired.txt"), 502),
    # A 502 with a premature close at the origin, no CDN.
    "cdn_bad_origin_response": (grep(NGINX, "prematurely closed connection"), 502),
}


def test_every_catalog_cause_has_a_positive_and_a_near_miss_case() -> None:
    assert set(POSITIVE) == set(CATALOG) == set(NEAR_MISS)


@pytest.mark.parametrize("cause", sorted(POSITIVE))
def test_real_evidence_puts_the_cause_first_and_quotes_it(cause: str) -> None:
    text, status = POSITIVE[cause]
    diagnosis = explain(text, status)
    assert diagnosis.top is not None
    assert diagnosis.top.id == cause, [(c.id, c.confidence) for c in diagnosis.causes[:3]]
    assert diagnosis.top.evidence, "a cause backed by evidence quotes it"
    assert diagnosis.top.confidence >= 0.5


@pytest.mark.parametrize("cause", sorted(NEAR_MISS))
def test_a_near_miss_gives_the_cause_no_evidence(cause: str) -> None:
    text, status = NEAR_MISS[cause]
    diagnosis = explain(text, status)
    backed = [c.id for c in diagnosis.causes if c.evidence]
    assert cause not in backed, [(c.id, c.confidence) for c in diagnosis.causes[:3]]
