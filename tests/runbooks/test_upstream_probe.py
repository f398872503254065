"""upstream_probe on curl outputs recorded from the fault lab host, healthy and after upstream_down."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.core.commands import Command, CommandResult
from bot.core.models import Finding
from bot.testing import drive
from runbooks.upstream_probe import UpstreamProbe, parse_upstream
from tests.runbooks.record import replies

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runbooks" / "upstream_probe"
FACTS = json.loads((FIXTURES / "facts.json").read_text())


def test_upstream_down_direct_probe_is_refused_and_the_site_answers_502() -> None:
    """Hop ladder: the socket refuses the direct probe (upstream_down) while nginx answers 502."""
    findings = drive(UpstreamProbe, {}, replies(FIXTURES / "lab_upstream_down.json"), facts=FACTS)
    by = {(f.kind, f.data["hop"]) for f in findings}
    assert ("curl.connect_refused", "direct") in by
    assert ("curl.http_5xx", "proxy") in by
    refused = next(f for f in findings if f.kind == "curl.connect_refused")
    assert refused.summary.startswith("direct probe of unix:/tmp/rbcap/lab/run/gunicorn.sock")
    assert refused.data["probed"] == "unix:/tmp/rbcap/lab/run/gunicorn.sock"


def test_healthy_lab_both_hops_answer_200() -> None:
    """Near miss: a healthy upstream gives OK findings only, no refusal."""
    findings = drive(UpstreamProbe, {}, replies(FIXTURES / "lab_healthy.json"), facts=FACTS)
    assert {(f.kind, f.data["hop"]) for f in findings} == {("curl.http_ok", "direct"), ("curl.http_ok", "proxy")}


def _collect(facts: dict[str, str]) -> tuple[list[Command], list[Finding]]:
    """The probes the runbook asks for (all in one concurrent step) and its findings on 200 answers."""
    steps = UpstreamProbe(None, facts).steps()
    try:
        step = next(steps)
    except StopIteration as done:
        return [], list(done.value)
    seen = list(step) if isinstance(step, tuple) else [step]
    reply = tuple(CommandResult(command=c, host="h", exit_status=0, stdout="code=200 total=0.01\n") for c in seen)
    try:
        steps.send(reply)
    except StopIteration as done:
        return seen, list(done.value)
    raise AssertionError("the probe asked for a second step")


def test_unix_socket_and_tcp_probes_are_plain_argv() -> None:
    """The socket path and host:port are single curl arguments; https upstreams are probed with -k."""
    facts = {"upstreams": "127.0.0.1:8000,https://api.internal:8443,unix:/run/a b;$(id).sock"}
    seen, _ = _collect(facts)
    argvs = [c.argv for c in seen]
    assert any(a[-1] == "http://127.0.0.1:8000/" for a in argvs)
    assert any(a[-2:] == ("-k", "https://api.internal:8443/") for a in argvs)
    assert any(a[-3:] == ("--unix-socket", "/run/a b;$(id).sock", "http://localhost/") for a in argvs)


@pytest.mark.parametrize(
    "bad",
    [
        "$(id):80",
        "host;id:80",
        "`id`:80",
        "-oProxyCommand=x:22",
        "host:99999",
        "host:80\nid",
        "ftp://host:21",
        "unix:rel",
    ],
)
def test_hostile_upstream_facts_are_rejected_with_a_finding(bad: str) -> None:
    """Shell metacharacters, option-looking hosts, bad ports, newlines and odd schemes never reach curl."""
    assert parse_upstream(bad) is None
    seen, findings = _collect({"upstreams": bad, "site_url": "http://127.0.0.1:1/"})
    assert all(bad not in " ".join(c.argv) for c in seen)
    assert any(f.kind == "runbook.bad_fact" for f in findings)


def test_nothing_to_probe_is_said() -> None:
    assert [f.kind for f in drive(UpstreamProbe, {}, {})] == ["upstream_probe.nothing"]
