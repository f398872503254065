"""sockets reader: ss -s summaries (current and pre-4.17 layouts) and the TIME-WAIT pile-up rule."""

from __future__ import annotations

import subprocess

from bot.evidence.readers.sockets import SsSummaryReader
from bot.testing import explain, read
from tests.evidence.readers._host_fixtures import fixture


def test_real_ss_s_with_5000_timewait_sockets_is_measured() -> None:
    (finding,) = read(fixture("sockets", "ss-s-timewait.txt"), [SsSummaryReader])
    assert finding.kind == "host.sockets"
    assert finding.data["timewait"] == 5024
    assert finding.data["estab"] == 4
    assert finding.data["orphaned"] == 1
    assert finding.data["closed"] == 5024
    assert finding.data["total"] == 5059
    assert finding.data["all_sockets"] == 63


def test_five_thousand_timewait_sockets_is_not_port_exhaustion() -> None:
    """Near miss: a few thousand TIME-WAIT sockets are normal; the rule needs tens of thousands."""
    diagnosis = explain(fixture("sockets", "ss-s-timewait.txt"), 502)
    assert all(c.id != "port_exhaustion" for c in diagnosis.causes if c.evidence)


def test_pre_4_17_layout_with_synrecv_and_ports_is_read() -> None:
    findings = read(fixture("sockets", "mattias-ss-s-pre-4.17.txt"), [SsSummaryReader])
    assert findings[0].data["timewait"] == 48611
    assert findings[0].data["synrecv"] == 0
    assert findings[0].data["ports"] == 35279
    assert findings[0].data["all_sockets"] == 3130
    assert findings[0].severity.value == "warning"


def test_timewait_pileup_with_errno_99_ranks_port_exhaustion_first() -> None:
    assert explain(fixture("sockets", "mattias-ss-s-pre-4.17.txt"), 502).causes[0].id == "port_exhaustion"


def test_timewait_pileup_alone_supports_port_exhaustion() -> None:
    """Only the ss -s lines of the public excerpt, without nginx's errno 99 line."""
    text = "\n".join(
        x for x in fixture("sockets", "mattias-ss-s-pre-4.17.txt").splitlines() if "TCP:" in x or "Total:" in x
    )
    assert explain(text + "\n", 502).causes[0].id == "port_exhaustion"


def test_free_total_row_is_not_mistaken_for_ss_total() -> None:
    assert read(fixture("memory", "free-tm.txt"), [SsSummaryReader]) == []


def test_live_ss_s_on_this_machine_is_a_healthy_measurement() -> None:
    out = subprocess.run(["ss", "-s"], capture_output=True, text=True, check=True).stdout
    (finding,) = read(out, [SsSummaryReader])
    assert finding.kind == "host.sockets"
    assert finding.data["timewait"] >= 0
