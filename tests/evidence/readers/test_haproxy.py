"""HAProxy log reader: real HAProxy 2.6.12 logs captured on this machine (``log stdout format raw``).

Fixture origins: tests/fixtures/haproxy/SOURCES.md. Each backend of the lab configuration was broken in
one way; the tests pick that backend's lines out of the captured log.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.evidence.readers.haproxy import HaproxyLog
from bot.testing import explain, kinds, read

FIXTURES = Path(__file__).parents[2] / "fixtures" / "haproxy"
RUNS = ("26_run1_lab.log", "26_run2_maint_client_abort.log", "26_run3_sD_and_20_refused.log")


def _lines(*needles: str, runs: tuple[str, ...] = RUNS) -> str:
    """The captured lines containing any of ``needles``, in log order."""
    out = []
    for run in runs:
        out += [line for line in (FIXTURES / run).read_text().splitlines() if any(n in line for n in needles)]
    assert out, f"no fixture line contains {needles}"
    return "\n".join(out)


@pytest.mark.parametrize(
    ("needle", "kind", "status", "cause"),
    [
        ("b_refused/app1", "haproxy.server_refused", 503, "upstream_down"),
        ("b_sleep/slow1 0/0/0/-1/1000", "haproxy.server_timeout", 504, "upstream_timeout"),
        ("b_reset/rst1", "haproxy.server_aborted", 502, "upstream_crashed"),
        ("b_eof/eof1", "haproxy.server_aborted", 502, "upstream_crashed"),
        ("b_garbage/junk1", "haproxy.bad_response", 502, "upstream_bad_response"),
        ("b_ctimeout/stuck1", "haproxy.connect_timeout", 503, "upstream_connect_timeout"),
        ("sQ--", "haproxy.queue_timeout", 503, "worker_saturation"),
        ("b_checked", "haproxy.server_down", 503, "upstream_down"),
        ("b_checked", "haproxy.no_server", 503, "upstream_down"),
        ("b_checked", "haproxy.no_server_available", 503, "upstream_down"),
        ("b_rc", "haproxy.no_free_ports", 503, "port_exhaustion"),
        ("b_rc", "haproxy.resource_exhausted", 503, "port_exhaustion"),
        ("sD--", "haproxy.server_timeout_data", 200, "upstream_timeout"),
        ("/tarpit", "haproxy.tarpit", 500, "rate_limited"),
    ],
)
def test_real_haproxy_fault_is_recognised_and_ranks_its_cause_first(
    needle: str, kind: str, status: int, cause: str
) -> None:
    """Each broken backend's lines yield the expected kind, and explain ranks its cause first."""
    text = _lines(needle)
    assert kind in kinds(text, [HaproxyLog])
    top = explain(text, status if status >= 500 else None).causes[0]
    assert top.id == cause
    assert top.evidence


def test_twenty_sc_lines_become_one_finding_with_a_count() -> None:
    """Counting: 20 ``SC--`` lines for one backend/server are one finding with count 20 and few quotes."""
    text = _lines("b_refused/app1", runs=("26_run3_sD_and_20_refused.log",))
    (finding,) = [f for f in read(text, [HaproxyLog]) if f.kind == "haproxy.server_refused"]
    assert finding.data["count"] == 20
    assert finding.data["backend"] == "b_refused" and finding.data["server"] == "app1"
    assert finding.data["status"] == "503"
    assert len(finding.evidence) <= 4


def test_nosrv_after_maintenance_is_deliberate_not_an_outage() -> None:
    """``going DOWN for maintenance`` then ``<NOSRV>`` SC 503 on that backend ranks maintenance_mode first."""
    text = _lines("b_ok", runs=("26_run2_maint_client_abort.log",))
    found = kinds(text, [HaproxyLog])
    assert {"haproxy.server_maintenance", "haproxy.backend_in_maintenance", "haproxy.no_server_maintenance"} <= found
    assert "haproxy.no_server" not in found
    assert explain(text, 503).causes[0].id == "maintenance_mode"


def test_server_leaving_maintenance_ends_the_maintenance_window() -> None:
    """After ``UP/READY (leaving forced maintenance)``, a later NOSRV on that backend is an outage again."""
    text = _lines("b_ok", runs=("26_run2_maint_client_abort.log",))
    nosrv = next(line for line in text.splitlines() if "<NOSRV>" in line)
    assert "haproxy.no_server" in kinds(text + "\n" + nosrv, [HaproxyLog])


def test_layer7_check_failure_records_reason_and_code() -> None:
    """A Layer7 wrong-status check is its own kind, with the reason and the HTTP code parsed."""
    findings = [f for f in read(_lines("b_l7/w1"), [HaproxyLog]) if f.kind == "haproxy.server_down_l7"]
    assert findings and findings[0].data["reason"] == "Layer7 wrong status"
    assert findings[0].data["code"] == 200


@pytest.mark.parametrize("needle", ["CD--", "cR--"])
def test_client_side_terminations_point_at_no_cause(needle: str) -> None:
    """Near miss: a client abort (CD) or a client that sent no request (cR 408) blames no backend."""
    text = _lines(needle)
    assert kinds(text, [HaproxyLog]) == {"haproxy.client_abort"}
    assert explain(text).evidence_found is False


def test_normal_and_denied_requests_are_not_backend_faults() -> None:
    """Near miss: ``----`` lines are never selected, and a PR 403 deny rule points at no cause."""
    text = _lines("---- ", "PR--")
    assert kinds(text, [HaproxyLog]) == {"haproxy.request_denied"}
    assert explain(text).evidence_found is False


def test_server_coming_back_up_is_not_a_finding() -> None:
    """Near miss: ``is UP/READY (leaving forced maintenance)`` alone yields nothing."""
    assert read(_lines("leaving forced maintenance"), [HaproxyLog]) == []
