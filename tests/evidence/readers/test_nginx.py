"""NginxErrorLog on real nginx 1.22 captures from this machine and on public excerpts (see SOURCES.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bot.core.models import Finding, Severity
from bot.evidence.readers.nginx import NginxErrorLog
from bot.testing import explain, kinds, read

FIXTURES = Path(__file__).parents[2] / "fixtures" / "nginx"
CORPUS = Path(__file__).parents[2] / "corpus" / "nginx.yaml"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def nginx(text: str) -> list[Finding]:
    return read(text, [NginxErrorLog])


def by_kind(text: str) -> dict[str, list[Finding]]:
    out: dict[str, list[Finding]] = {}
    for finding in nginx(text):
        out.setdefault(finding.kind, []).append(finding)
    return out


def lab_line(fragment: str) -> str:
    """The one line of the lab capture that contains ``fragment``."""
    (line,) = [x for x in fixture("error-upstream-failures.log").splitlines() if fragment in x]
    return line


# -- every failure captured in the lab gets its kind --------------------------------------------

LAB_KINDS = [
    ("GET /refused", "nginx.upstream_refused", "upstream_down"),
    ("missing.sock failed (2: No such file", "nginx.upstream_socket_missing", "upstream_down"),
    ("perm.sock failed (13: Permission denied)", "nginx.upstream_permission_denied", "permission_denied"),
    ("full.sock failed (11:", "nginx.upstream_backlog_full", "worker_saturation"),
    ("GET /timeout", "nginx.upstream_timeout", "upstream_timeout"),
    ("GET /connect-timeout", "nginx.upstream_connect_timeout", "upstream_connect_timeout"),
    (
        'while SSL handshaking to upstream, client: 127.0.0.1, server: lab.local, request: "GET /tls HTTP/1.1", '
        'upstream: "https://127.0.0.1:18106',
        "nginx.upstream_connect_timeout",
        "upstream_connect_timeout",
    ),
    ("upstream prematurely closed", "nginx.upstream_premature_close", "upstream_crashed"),
    ("(104: Connection reset by peer)", "nginx.upstream_reset", "upstream_crashed"),
    ("too big header", "nginx.upstream_too_big_header", "upstream_bad_response"),
    ("invalid header", "nginx.upstream_invalid_response", "upstream_bad_response"),
    ("no live upstreams", "nginx.no_live_upstreams", "upstream_down"),
    ("wrong version number", "nginx.upstream_tls", "upstream_tls_error"),
    ("app.internal.example could not", "nginx.resolver_failed", "dns_failure"),
    ("api.internal.example could not", "nginx.resolver_failed", "dns_failure"),
    ("no resolver defined", "nginx.no_resolver", "dns_failure"),
    ('limiting requests, excess: 1.000 by zone "perip"', "nginx.rate_limited", "rate_limited"),
    ("limiting connections by zone", "nginx.rate_limited", "rate_limited"),
    ("redirection cycle", "nginx.redirect_cycle", "config_error"),
    ('private.html" failed (13:', "nginx.file_permission_denied", "permission_denied"),
]


@pytest.mark.parametrize(("fragment", "kind", "cause"), LAB_KINDS, ids=[k for _, k, _ in LAB_KINDS])
def test_each_captured_failure_line_gets_its_kind_and_cause(fragment: str, kind: str, cause: str) -> None:
    """Each real nginx 1.22 line from the lab is recognised as the failure it is and names its cause."""
    line = lab_line(fragment)
    assert kinds(line, [NginxErrorLog]) == {kind}
    assert NginxErrorLog.signals[kind].cause == cause


def test_whole_lab_log_yields_one_finding_per_kind_and_upstream_with_useful_summaries() -> None:
    """The full capture (info level, with notices and keep-alive noise) groups by upstream and names it."""
    found = by_kind(fixture("error-upstream-failures.log"))
    refused = {f.data["upstream"] for f in found["nginx.upstream_refused"]}
    assert refused == {"127.0.0.1:18199", "127.0.0.1:18197", "127.0.0.1:18198"}
    (missing,) = found["nginx.upstream_socket_missing"]
    assert missing.data["upstream"] == "unix:/tmp/nginxlab/missing.sock"
    assert "unix:/tmp/nginxlab/missing.sock" in missing.summary
    (tls,) = found["nginx.upstream_tls"]
    assert tls.data["ssl_reason"] == "wrong version number"
    assert "plain HTTP" in tls.summary
    (invalid,) = found["nginx.upstream_invalid_response"]
    assert invalid.data["header"] == "X-Bad\\x01..."
    limited = {f.data["zone"]: f.data["limit"] for f in found["nginx.rate_limited"]}
    assert limited == {"perip": "req", "connperip": "conn"}
    assert {f.data["upstream"] for f in found["nginx.upstream_disabled"]} == {"127.0.0.1:18197", "127.0.0.1:18198"}
    (unreachable,) = found["nginx.resolver_unreachable"]
    assert unreachable.data == {**unreachable.data, "resolver": "127.0.0.1:18054", "count": 2}
    assert all(f.evidence for fs in found.values() for f in fs)


def test_limit_req_dry_run_is_reported_as_info_not_as_rate_limiting() -> None:
    """`limiting requests, dry run` rejected nothing (the lab's /dryrun answered 200 twice): no rate_limited."""
    line = lab_line("dry run")
    found = nginx(line)
    assert [f.kind for f in found] == ["nginx.rate_limited_dry_run"]
    assert found[0].severity is Severity.INFO
    assert "nginx.rate_limited_dry_run" not in NginxErrorLog.signals


def test_client_side_tls_noise_is_not_an_upstream_tls_error() -> None:
    """Handshake failures of clients (lab :18443 and public reports) never count as upstream TLS errors."""
    lab = [x for x in fixture("error-upstream-failures.log").splitlines() if "server: 127.0.0.1:18443" in x]
    assert len(lab) == 3
    text = "\n".join(lab) + "\n" + fixture("public/client-tls-noise.log")
    assert kinds(text, [NginxErrorLog]) == set()


def test_info_and_notice_lines_of_a_healthy_run_give_nothing() -> None:
    """Start-up notices, keep-alive closes and reload messages are not failures."""
    lines = [x for x in fixture("error-upstream-failures.log").splitlines() if "[notice]" in x or "[info]" in x]
    lines = [x for x in lines if "SSL_do_handshake" not in x and "plain HTTP" not in x]
    assert len(lines) > 20
    assert nginx("\n".join(lines)) == []


def test_worker_connections_exhaustion_captured_with_tiny_limit() -> None:
    """`5 worker_connections are not enough while connecting to upstream` (three 500s) → fd_exhaustion."""
    (finding,) = nginx(fixture("error-worker-connections.log"))
    assert finding.kind == "nginx.worker_connections"
    assert finding.data["limit"] == 5 and finding.data["count"] == 3
    assert "500" in fixture("statuses-worker-connections.txt")


def test_emfile_lines_count_as_fd_exhaustion() -> None:
    """socket()/accept4()/socketpair() failed (24: Too many open files) → one fd_exhaustion finding."""
    (finding,) = nginx(fixture("error-emfile.log"))
    assert finding.kind == "nginx.fd_exhaustion"
    assert finding.data["count"] == fixture("error-emfile.log").count("(24: Too many open files)") == 16
    assert NginxErrorLog.signals["nginx.fd_exhaustion"].cause == "fd_exhaustion"


def test_nginx_t_failures_are_config_errors_and_host_not_found_is_dns() -> None:
    """`nginx -t` [emerg] lines: unknown host → host_not_found (dns_failure), the rest → config_emerg."""
    found = by_kind(fixture("nginx-t-emerg.txt"))
    (host,) = found["nginx.host_not_found"]
    assert host.data["name"] == "app"
    messages = {f.data["message"] for f in found["nginx.config_emerg"]}
    assert any(m.startswith('unknown directive "proxy_buffer"') for m in messages)
    assert any("is not terminated by" in m for m in messages)
    assert any(m.startswith("cannot load certificate") for m in messages)


def test_successful_nginx_t_is_not_a_config_error() -> None:
    """`nginx -t` that passes gives no nginx error-log finding (its framing lines belong to config_test)."""
    assert nginx(fixture("nginx-t-ok.txt")) == []


def test_port_already_in_use_at_start_is_bind_failed() -> None:
    """`bind() to 127.0.0.1:18080 failed (98: ...)` on start (stderr and error log) → bind_failed by address."""
    text = fixture("nginx-start-port-in-use.txt") + fixture("error-port-in-use.log")
    found = by_kind(text)
    (bind,) = found["nginx.bind_failed"]
    assert bind.data["address"] == "127.0.0.1:18080"
    assert bind.data["count"] == 10


# -- the real variety of public reports ------------------------------------------------------------

PUBLIC_KINDS = [
    ("docker-refused.log", {"nginx.upstream_refused"}),
    ("pid0-socket-missing.log", {"nginx.upstream_socket_missing"}),
    ("windows-10061.log", {"nginx.upstream_refused"}),
    ("wrapped-ssl-openssl1.log", {"nginx.upstream_tls"}),
    ("wrapped-refused.log", {"nginx.upstream_refused"}),
    ("journald-limiting.log", {"nginx.rate_limited"}),
    ("ipv6-99-musl.log", {"nginx.upstream_ipv6_unavailable"}),
    ("port-exhaustion-99.log", {"nginx.port_exhaustion"}),
    ("invalid-header-1.21.log", {"nginx.upstream_invalid_response"}),
    ("upstream-tls-openssl3-sni.log", {"nginx.upstream_tls"}),
    ("worker-connections-1024.log", {"nginx.worker_connections"}),
    ("less-truncated.log", {"nginx.upstream_refused", "nginx.no_live_upstreams"}),
    ("docker-host-not-found.log", {"nginx.host_not_found"}),
    ("unknown-error-strerror.log", {"nginx.upstream_reset", "nginx.upstream_refused", "nginx.upstream_timeout"}),
    ("ingress-access-504.log", {"nginx.upstream_connect_timeout"}),
    ("docker-socket-missing-access.log", {"nginx.upstream_socket_missing"}),
]


@pytest.mark.parametrize(("name", "expected"), PUBLIC_KINDS, ids=[n for n, _ in PUBLIC_KINDS])
def test_public_excerpts_are_recognised_whatever_the_wrapper(name: str, expected: set[str]) -> None:
    """Docker/journald prefixes, PID#0, Windows errnos, musl/unknown strerror, pager cuts and wraps all work."""
    assert kinds(fixture(f"public/{name}"), [NginxErrorLog]) == expected


def test_wrapped_tls_line_is_joined_and_keeps_its_openssl1_reason() -> None:
    """A line wrapped before `while SSL handshaking to upstream` is one upstream TLS error; its head is quoted."""
    (finding,) = nginx(fixture("public/wrapped-ssl-openssl1.log"))
    assert finding.data["ssl_reason"] == "wrong version number"
    assert finding.evidence == ("nginx | 2017/10/05 21:39:23 [error] 10#10: *12 SSL_do_handshake() failed ",)


def test_wrapped_timeout_is_classified_by_the_phase_on_the_next_line() -> None:
    """`upstream timed out (110: ...)` with `while connecting to upstream` on the next line is a connect timeout."""
    line = lab_line("GET /connect-timeout")
    head, tail = line.split(" while ", 1)
    assert kinds(f"{head}\nwhile {tail}", [NginxErrorLog]) == {"nginx.upstream_connect_timeout"}
    read_head, read_tail = lab_line("GET /timeout").split(" while ", 1)
    assert kinds(f"{read_head}\nwhile {read_tail}", [NginxErrorLog]) == {"nginx.upstream_timeout"}


def test_a_wrapped_line_followed_by_a_new_entry_is_not_glued_to_it() -> None:
    """A cut line with no continuation still counts, and the next log entry is read on its own."""
    head = lab_line("GET /timeout").split(" while ", 1)[0]
    text = head + "\n" + lab_line("too big header")
    assert kinds(text, [NginxErrorLog]) == {"nginx.upstream_timeout", "nginx.upstream_too_big_header"}


def test_json_wrapped_docker_lines_keep_upstream_and_kind() -> None:
    """Lab lines inside Docker's json-file envelope (quotes escaped) give the same kinds and upstreams."""
    lines = [lab_line("missing.sock failed"), lab_line("GET /premature"), lab_line("wrong version number")]
    wrapped = "\n".join(json.dumps({"log": x + "\n", "stream": "stderr"}) for x in lines)
    found = by_kind(wrapped)
    assert set(found) == {"nginx.upstream_socket_missing", "nginx.upstream_premature_close", "nginx.upstream_tls"}
    assert found["nginx.upstream_socket_missing"][0].data["upstream"] == "unix:/tmp/nginxlab/missing.sock"
    assert found["nginx.upstream_premature_close"][0].data["upstream"] == "127.0.0.1:18102"


def test_bare_invalid_header_of_old_nginx_is_still_a_bad_response() -> None:
    """Up to 1.21.0 the message is a bare `upstream sent invalid header` (built here from the 1.22 line)."""
    line = lab_line("invalid header").replace(': "X-Bad\\x01..."', "")
    assert "invalid header while reading" in line
    assert kinds(line, [NginxErrorLog]) == {"nginx.upstream_invalid_response"}


def test_ipv6_eaddrnotavail_is_not_port_exhaustion() -> None:
    """`connect() to [::1]:8080 failed (99: ...)` is a missing IPv6 address, not a full port range."""
    (finding,) = nginx(fixture("public/ipv6-99-musl.log"))
    assert finding.kind == "nginx.upstream_ipv6_unavailable"
    assert finding.severity is Severity.WARNING
    assert "nginx.upstream_ipv6_unavailable" not in NginxErrorLog.signals


def test_openssl3_handshake_failure_suggests_sni() -> None:
    """OpenSSL 3 `SSL routines::sslv3 alert handshake failure` to an upstream hints at proxy_ssl_server_name."""
    (finding,) = nginx(fixture("public/upstream-tls-openssl3-sni.log"))
    assert finding.data["ssl_reason"] == "sslv3 alert handshake failure"
    assert "proxy_ssl_server_name" in finding.summary


# -- end to end --------------------------------------------------------------------------------


def test_demo_sample_names_upstream_down_first() -> None:
    """The shipped demo (real gunicorn stop behind nginx) explains 502 as upstream_down, quoting nginx."""
    sample = Path(__file__).parents[3] / "bot" / "samples" / "502-upstream-down.txt"
    diagnosis = explain(sample.read_text(), 502)
    assert diagnosis.causes[0].id == "upstream_down"
    assert any("connect() failed (111: Connection refused)" in line for line in diagnosis.causes[0].evidence)


def test_corpus_entries_rank_their_confirmed_cause_first() -> None:
    """Each public excerpt of tests/corpus/nginx.yaml ranks the cause its thread confirmed first."""
    entries = yaml.safe_load(CORPUS.read_text())
    assert 8 <= len(entries) <= 15
    for entry in entries:
        diagnosis = explain(entry["text"], entry.get("status"))
        assert diagnosis.causes[0].id == entry["cause"], entry["id"]
