"""HttpAccessLog on the access logs of the nginx lab run and on public excerpts (see fixtures/nginx/SOURCES.md)."""

from __future__ import annotations

import json
from pathlib import Path

from bot.core.models import Finding, Severity
from bot.evidence.readers.nginx_access import HttpAccessLog
from bot.testing import read

FIXTURES = Path(__file__).parents[2] / "fixtures" / "nginx"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


def access(text: str) -> dict[str, Finding]:
    found = read(text, [HttpAccessLog])
    assert len({f.kind for f in found}) == len(found)
    return {f.kind: f for f in found}


def test_combined_log_counts_requests_and_5xx_by_status() -> None:
    """The lab's combined log: 31 requests, 21 of them 5xx, counted per status with 5xx lines as evidence."""
    found = access(fixture("access-combined.log"))
    assert set(found) == {"http.access_5xx"}
    summary = found["http.access_5xx"]
    assert summary.data["total"] == 31
    assert summary.data["count"] == 21
    assert summary.data["by_status"] == {500: 1, 502: 14, 503: 2, 504: 4}
    assert summary.data["rate"] == round(21 / 31, 4)
    assert "by_upstream_status" not in summary.data
    assert summary.severity is Severity.CRITICAL
    assert summary.evidence and all('" 50' in line for line in summary.evidence)


def test_combined_log_alone_suggests_no_cause() -> None:
    """Without upstream fields the access log proves no cause: no finding kind with a signal is emitted."""
    found = access(fixture("access-combined.log"))
    assert not set(found) & set(HttpAccessLog.signals)


def test_keyed_upstream_fields_split_5xx_by_upstream_status() -> None:
    """`upstream_status=` (including the `502, 502` list of a retried group) is read, the last value counts."""
    found = access(fixture("access-upstream-keyed.log"))
    assert found["http.access_5xx"].data["by_upstream_status"] == {"502": 11, "-": 6, "504": 4}


def test_positional_upstream_fields_read_like_keyed_ones() -> None:
    """`... "UA" $request_time $upstream_response_time $upstream_status` gives the same split."""
    keyed = access(fixture("access-upstream-keyed.log"))
    positional = access(fixture("access-upstream-positional.log"))
    assert set(positional) == set(keyed)
    assert positional["http.access_5xx"].data == keyed["http.access_5xx"].data


def test_504_after_whole_seconds_with_upstream_504_is_a_proxy_timeout() -> None:
    """The lab's 504s (request_time 2.00x s, proxy timeouts of 2 s) → a weak upstream_timeout hint."""
    finding = access(fixture("access-upstream-keyed.log"))["http.access_gateway_timeout"]
    assert finding.data == {"count": 4, "seconds": 2}
    signal = HttpAccessLog.signals["http.access_gateway_timeout"]
    assert signal.cause == "upstream_timeout" and signal.weight <= 0.3


def test_ingress_nginx_504_after_three_five_second_tries_is_a_timeout() -> None:
    """Public ingress-nginx line: upstream times `5.000, 5.000, 5.000`, status `504, 504, 504`."""
    finding = access(fixture("public/ingress-access-504.log"))["http.access_gateway_timeout"]
    assert finding.data["count"] == 1


def test_504_whose_time_is_not_a_whole_number_of_seconds_is_not_called_a_timeout() -> None:
    """An upstream that itself answered 504 after 0.35 s does not look like a proxy timeout firing."""
    line = next(x for x in fixture("access-upstream-keyed.log").splitlines() if "GET /timeout" in x)
    line = line.replace("request_time=2.002", "request_time=0.350")
    line = line.replace("upstream_response_time=2.003", "upstream_response_time=0.349")
    found = access(line)
    assert "http.access_gateway_timeout" not in found
    assert found["http.access_5xx"].data["by_status"] == {504: 1}


def test_5xx_answered_without_an_upstream_point_weakly_at_limits_and_dns() -> None:
    """503 with upstream_status `-` (limit_req/limit_conn in the lab) and 502 with `-` (resolver failures)."""
    found = access(fixture("access-upstream-keyed.log"))
    assert found["http.access_503_no_upstream"].data["count"] == 2
    assert found["http.access_502_no_upstream"].data["count"] == 3
    assert HttpAccessLog.signals["http.access_503_no_upstream"].cause == "rate_limited"
    assert HttpAccessLog.signals["http.access_502_no_upstream"].cause == "dns_failure"
    assert all(s.weight <= 0.3 for s in HttpAccessLog.signals.values())


def test_healthy_log_is_ok() -> None:
    """Only 2xx/4xx lines: one OK finding, no 5xx."""
    lines = [x for x in fixture("access-combined.log").splitlines() if '" 200 ' in x or '" 403 ' in x]
    found = access("\n".join(lines))
    assert set(found) == {"http.access_ok"}
    assert found["http.access_ok"].severity is Severity.OK
    assert found["http.access_ok"].data["total"] == len(lines)


def test_error_log_lines_are_not_access_lines() -> None:
    """The error log of the same run (it quotes request lines too) is not counted as requests."""
    assert read(fixture("error-upstream-failures.log"), [HttpAccessLog]) == []


def test_json_wrapped_and_prefixed_access_lines_are_read() -> None:
    """Docker json-file envelopes (escaped quotes) and a compose prefix still parse status and upstream fields."""
    lines = fixture("access-upstream-keyed.log").splitlines()
    wrapped = [json.dumps({"log": x + "\n", "stream": "stdout"}) for x in lines[:15]]
    prefixed = [f"nginx-1  | {x}" for x in lines[15:]]
    found = access("\n".join(wrapped + prefixed))
    assert found["http.access_5xx"].data["total"] == 31
    assert found["http.access_5xx"].data["by_upstream_status"] == {"502": 11, "-": 6, "504": 4}


def test_public_excerpt_with_error_and_access_lines_counts_only_access_lines() -> None:
    """whatwedo/docker-base-images#38: two 502 access lines between nginx [crit] lines."""
    found = access(fixture("public/docker-socket-missing-access.log"))
    assert found["http.access_5xx"].data["total"] == 2
    assert found["http.access_5xx"].data["by_status"] == {502: 2}
