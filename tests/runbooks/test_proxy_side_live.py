"""The proxy-side runbooks over real SSH against the fault lab: break upstream_down, then repair.

One lab serves the module (a fresh directory under /tmp, as tests/lab does); it always goes ``down``.
The runbooks run through ``run_diagnose`` with the lab's own ``incident-bot.yaml`` (sshd on 127.0.0.1,
its generated key and known_hosts), and once with a copy of that file without ``facts`` to show that
discovery finds the logs and upstreams from the host itself.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bot.app import DiagnoseRequest, run_diagnose
from bot.config import load_settings
from bot.core.models import Diagnosis, Finding
from bot.lab import Lab, probe
from bot.lab import postgres as lab_postgres
from bot.runbook.base import FACTS_KIND

NEEDED = ("/usr/sbin/sshd", "/usr/sbin/nginx", "ssh-keygen", "curl")


def _missing() -> list[str]:
    found = [n for n in NEEDED if not (Path(n).exists() if n.startswith("/") else shutil.which(n))]
    try:
        lab_postgres.bin_dir()
    except Exception:
        found.append("PostgreSQL server binaries")
    return found


pytestmark = pytest.mark.skipif(bool(_missing()), reason=f"fault lab needs {', '.join(_missing())}")


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    base = Path(tempfile.mkdtemp(prefix="ibl-rb-", dir="/tmp"))
    base.chmod(0o755)
    the_lab = Lab(base / "lab")
    try:
        the_lab.up()
        yield the_lab
    finally:
        the_lab.down()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def _audit_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))


def _diagnose(config: Path, runbooks: tuple[str, ...], status: int | None = None, url: str | None = None) -> Diagnosis:
    request = DiagnoseRequest(target="lab", status=status, url=url, runbooks=runbooks)
    return asyncio.run(run_diagnose(request, load_settings(str(config))))


def _of(diagnosis: Diagnosis, kind: str, runbook: str | None = None) -> list[Finding]:
    return [f for f in diagnosis.findings if f.kind == kind and (runbook is None or f.runbook == runbook)]


def test_upstream_down_then_repair_over_ssh(lab: Lab) -> None:
    """Broken: the nginx log names the socket, discovery sees no listener on it, the direct probe fails.
    Repaired: discovery sees gunicorn listening and both probes answer 200."""
    socket = f"unix:{lab.paths.gunicorn_socket}"
    lab.break_("upstream_down")
    try:
        assert probe(lab.url)[0] == 502
        broken = _diagnose(lab.paths.config, ("discovery", "proxy_log", "upstream_probe"), status=502, url=lab.url)
    finally:
        lab.repair()
    kinds = {f.kind for f in _of(broken, "nginx.upstream_socket_missing") + _of(broken, "nginx.upstream_refused")}
    assert kinds, [f.summary for f in broken.findings]
    line = next(f for f in broken.findings if f.kind in kinds).evidence[0]
    assert f"connect() to {socket} failed" in line
    facts = _of(broken, FACTS_KIND)[0].data
    assert str(lab.paths.nginx_error_log) in facts["nginx_error_log"].split(",")
    configs = [f for f in _of(broken, "proxy.config") if str(lab.paths.nginx_conf) in f.data["files"]]
    assert configs and socket in configs[0].data["upstreams"]
    assert [f for f in _of(broken, "proxy.upstream_no_listener") if f.data["upstream"] == socket]
    direct = [f for f in broken.findings if f.runbook == "upstream_probe" and f.data.get("probed") == socket]
    assert {f.kind for f in direct} >= {"curl.connect_refused"}
    assert broken.causes[0].id == "upstream_down"

    healthy = _diagnose(lab.paths.config, ("discovery", "upstream_probe"), url=lab.url)
    listening = [f for f in _of(healthy, "proxy.upstream_listening") if f.data["upstream"] == socket]
    assert listening and "gunicorn" in listening[0].summary
    probes = {(f.kind, f.data.get("hop")) for f in healthy.findings if f.runbook == "upstream_probe"}
    assert probes == {("curl.http_ok", "direct"), ("curl.http_ok", "proxy")}


def test_discovery_without_facts_finds_the_logs_from_the_host(lab: Lab, tmp_path: Path) -> None:
    """With no `facts:` in the config, discovery reads the running nginx master and ss, and proxy_log
    then tails the error log it found."""
    document = yaml.safe_load(lab.paths.config.read_text())
    del document["hosts"]["lab"]["facts"]
    bare = tmp_path / "incident-bot.yaml"
    bare.write_text(yaml.safe_dump(document))
    result = _diagnose(bare, ("discovery", "proxy_log"))
    facts = _of(result, FACTS_KIND)[0].data
    assert str(lab.paths.nginx_error_log) in facts["nginx_error_log"].split(",")
    assert f"unix:{lab.paths.gunicorn_socket}" in facts["upstreams"].split(",")
    read = [f for f in _of(result, "proxy_log.read") if f.data["path"] == str(lab.paths.nginx_error_log)]
    assert read, [f.summary for f in result.findings]
