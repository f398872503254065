"""The proxy-side runbooks over real SSH against the fault lab: break upstream_down, then repair.

One lab serves the module (a fresh directory under /tmp, as tests/lab does); it always goes ``down``.
The runbooks run through ``run_diagnose`` with the lab's own ``incident-bot.yaml`` (sshd on 127.0.0.1,
its generated key and known_hosts), and once with a copy of that file without ``facts`` to show that
discovery finds the logs and upstreams from the host itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bot.lab import Lab, probe
from bot.runbook.base import FACTS_KIND
from tests.labfixture import findings_of, run_runbooks, running_lab

pytestmark = [pytest.mark.usefixtures("audit_in_tmp")]


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab("ibl-rb-") as the_lab:
        yield the_lab


def test_upstream_down_then_repair_over_ssh(lab: Lab) -> None:
    """Broken: the nginx log names the socket, discovery sees no listener on it, the direct probe fails.
    Repaired: discovery sees gunicorn listening and both probes answer 200."""
    socket = f"unix:{lab.paths.gunicorn_socket}"
    lab.break_("upstream_down")
    try:
        assert probe(lab.url)[0] == 502
        broken = run_runbooks(lab.paths.config, ("discovery", "proxy_log", "upstream_probe"), status=502, url=lab.url)
    finally:
        lab.repair()
    refused = findings_of(broken, "nginx.upstream_socket_missing") + findings_of(broken, "nginx.upstream_refused")
    kinds = {f.kind for f in refused}
    assert kinds, [f.summary for f in broken.findings]
    line = next(f for f in broken.findings if f.kind in kinds).evidence[0]
    assert f"connect() to {socket} failed" in line
    facts = findings_of(broken, FACTS_KIND)[0].data
    assert str(lab.paths.nginx_error_log) in facts["nginx_error_log"].split(",")
    configs = [f for f in findings_of(broken, "proxy.config") if str(lab.paths.nginx_conf) in f.data["files"]]
    assert configs and socket in configs[0].data["upstreams"]
    assert [f for f in findings_of(broken, "proxy.upstream_no_listener") if f.data["upstream"] == socket]
    direct = [f for f in broken.findings if f.runbook == "upstream_probe" and f.data.get("probed") == socket]
    assert {f.kind for f in direct} >= {"curl.connect_refused"}
    assert broken.causes[0].id == "upstream_down"

    healthy = run_runbooks(lab.paths.config, ("discovery", "upstream_probe"), url=lab.url)
    listening = [f for f in findings_of(healthy, "proxy.upstream_listening") if f.data["upstream"] == socket]
    assert listening and "gunicorn" in listening[0].summary
    # only this lab's hops: another lab running on the machine is discovered too, with its own upstreams
    ours = (socket, lab.url, lab.url.rstrip("/"))
    probes = {
        (f.kind, f.data.get("hop"))
        for f in healthy.findings
        if f.runbook == "upstream_probe" and f.data.get("probed") in ours
    }
    assert probes == {("curl.http_ok", "direct"), ("curl.http_ok", "proxy")}


def test_discovery_without_facts_finds_the_logs_from_the_host(lab: Lab, tmp_path: Path) -> None:
    """With no `facts:` in the config, discovery reads the running nginx master and ss, and proxy_log
    then tails the error log it found."""
    document = yaml.safe_load(lab.paths.config.read_text())
    del document["hosts"]["lab"]["facts"]
    bare = tmp_path / "incident-bot.yaml"
    bare.write_text(yaml.safe_dump(document))
    result = run_runbooks(bare, ("discovery", "proxy_log"))
    facts = findings_of(result, FACTS_KIND)[0].data
    assert str(lab.paths.nginx_error_log) in facts["nginx_error_log"].split(",")
    assert f"unix:{lab.paths.gunicorn_socket}" in facts["upstreams"].split(",")
    read = [f for f in findings_of(result, "proxy_log.read") if f.data["path"] == str(lab.paths.nginx_error_log)]
    assert read, [f.summary for f in result.findings]
