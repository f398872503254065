"""curl readers: error lines classified by failing layer, status lines, Retry-After and -w write-outs.

Fixtures are real curl 7.88.1 runs against local servers (tests/fixtures/probes/SOURCES.md); the
older exit-7/exit-28 wordings come from the curl history quoted in error-messages.md §7.5.
"""

from __future__ import annotations

import pytest

from bot.evidence.readers.curl import CurlError, CurlResponse
from bot.testing import explain, kinds, read
from tests.evidence.readers._host_fixtures import fixture

READERS = [CurlError, CurlResponse]


def _kinds(name: str) -> set[str]:
    return kinds(fixture("probes", name), READERS)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("curl_w_refused.txt", "curl.connect_refused"),
        ("curl_v_refused.txt", "curl.connect_refused"),
        ("curl_connect_timeout.txt", "curl.connect_timeout"),
        ("curl_v_connect_timeout.txt", "curl.connect_timeout"),
        ("curl_w_timeout.txt", "curl.operation_timeout"),
        ("curl_resolve.txt", "curl.resolve_failed"),
        ("curl_expired_cert.txt", "curl.cert_expired"),
        ("curl_v_expired_cert.txt", "curl.cert_expired"),
        ("curl_selfsigned.txt", "curl.cert_invalid"),
        ("curl_tls_on_plain.txt", "curl.tls_handshake"),
        ("curl_empty_reply.txt", "curl.empty_reply"),
        ("curl_reset.txt", "curl.recv_failure"),
    ],
)
def test_a_real_curl_failure_names_the_failing_layer(name: str, kind: str) -> None:
    assert kind in _kinds(name)


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("curl: (7) Failed to connect to localhost port 8000: Connection refused", "curl.connect_refused"),
        ("curl: (7) Failed to connect to 10.0.0.5 port 80 after 3 ms: Connection refused", "curl.connect_refused"),
        ("curl: (7) Failed to connect to app:8000 after 1 ms: Could not connect to server", "curl.connect_refused"),
        ("curl: (7) Failed to connect to 10.0.0.5 port 80: Connection timed out", "curl.connect_timeout"),
        ("curl: (28) Connection timed out after 10001 milliseconds", "curl.connect_timeout"),
        (
            "curl: (28) Operation timed out after 30000 milliseconds with 0 out of 0 bytes received",
            "curl.operation_timeout",
        ),
        ("curl: (28) Resolving timed out after 5000 milliseconds", "curl.resolve_timeout"),
        ("curl: (7) Failed to connect to 10.0.0.9 port 443: No route to host", "curl.connect_unreachable"),
        ("curl: (60) SSL certificate problem: unable to get local issuer certificate", "curl.cert_untrusted"),
        ("curl: (56) OpenSSL SSL_read: Connection reset by peer, errno 104", "curl.recv_failure"),
    ],
)
def test_every_wording_era_of_the_exit_codes_is_classified(line: str, kind: str) -> None:
    assert kinds(line, READERS) == {kind}


def test_docker_and_json_wrapped_curl_errors_are_read() -> None:
    text = (
        "healthcheck_1  | curl: (7) Failed to connect to web port 8080 after 2 ms: Connection refused\n"
        '{"log":"curl: (52) Empty reply from server\\n","stream":"stderr"}\n'
    )
    assert kinds(text, READERS) == {"curl.connect_refused", "curl.empty_reply"}


def test_refused_probe_carries_host_and_port_and_suggests_upstream_down() -> None:
    found = {f.kind: f for f in read(fixture("probes", "curl_w_refused.txt"), READERS)}
    assert found["curl.connect_refused"].data["host"] == "127.0.0.1"
    assert found["curl.connect_refused"].data["port"] == 28999
    assert explain(fixture("probes", "curl_w_refused.txt"), 502).causes[0].id == "upstream_down"


def test_an_unverifiable_issuer_is_weak_evidence_because_it_is_often_the_clients_ca_store() -> None:
    diagnosis = explain("curl: (60) SSL certificate problem: unable to get local issuer certificate")
    assert diagnosis.causes[0].id == "upstream_tls_error"
    assert diagnosis.causes[0].confidence < 0.5


@pytest.mark.parametrize(
    ("name", "status"),
    [
        ("curl_w_502.txt", 502),
        ("curl_w_colon.txt", 502),
        ("curl_v_502.txt", 502),
        ("curl_I_503_retry_after.txt", 503),
        ("curl_code_only_503.txt", 503),
    ],
)
def test_the_status_a_probe_got_is_read_from_every_layout(name: str, status: int) -> None:
    found = [f for f in read(fixture("probes", name), READERS) if f.kind == "curl.http_5xx"]
    assert [f.data["status"] for f in found] == [status]


def test_write_out_timings_are_parsed_from_key_value_and_one_per_line_layouts() -> None:
    for name in ("curl_w_502.txt", "curl_w_colon.txt"):
        (finding,) = [f for f in read(fixture("probes", name), READERS) if f.kind == "curl.http_5xx"]
        timings = finding.data["timings"]
        assert set(timings) >= {"namelookup", "connect", "starttransfer", "total"}


def test_http_code_000_is_no_response_and_200_is_healthy() -> None:
    assert "curl.no_response" in _kinds("curl_code_only_000.txt")
    assert _kinds("curl_w_200.txt") == {"curl.http_ok"}


def test_retry_after_header_is_recorded_with_the_status_it_came_with() -> None:
    (finding,) = [
        f for f in read(fixture("probes", "curl_I_503_retry_after.txt"), READERS) if f.kind == "curl.retry_after"
    ]
    assert finding.data == {"retry_after": "120", "status": 503, "count": 1}


def test_a_slow_first_byte_is_a_weak_upstream_timeout_hint() -> None:
    text = "code=504 dns=0.004 connect=0.020 tls=0.000 ttfb=60.012 total=60.013 ip=10.0.0.7\n"
    assert kinds(text, READERS) == {"curl.http_5xx", "curl.slow_response"}
    diagnosis = explain(text, 504)
    assert diagnosis.causes[0].id == "upstream_timeout"
    assert diagnosis.causes[0].confidence < 0.5


def test_near_miss_status_and_code_words_in_ordinary_text_are_not_probes() -> None:
    text = (
        "systemd[1]: app.service: Main process exited, code=exited, status=1/FAILURE\n"
        "Process exited with status: 137\n"
        '127.0.0.1 - - [30/Nov/2026:05:02:28 +0000] "GET / HTTP/1.1" 502 157 "-" "curl/7.88.1"\n'
    )
    assert kinds(text, READERS) == set()


def test_near_miss_a_bare_number_outside_a_curl_write_out_block_is_ignored() -> None:
    assert kinds("### $ wc -l access.log\n503\n", READERS) == set()
