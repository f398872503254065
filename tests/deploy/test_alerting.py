"""deploy/alerting/: the Prometheus rules, Alertmanager receiver, blackbox module and mtail program, each
checked by its own tool, then shown to produce alerts incident-bot reads as intended."""

from __future__ import annotations

import http.server
import re
import shutil
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot.adapters.intake.alertmanager import parse
from tests.e2e.test_alertmanager import ALERTMANAGER, TOKENS, Processes, healthy, incidents, wait_until
from tests.test_serve import free_port

ROOT = Path(__file__).resolve().parents[2]
ALERTING = ROOT / "deploy" / "alerting"
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"


def _tool(name: str, package: str) -> str:
    found = shutil.which(name) or (name if Path(name).exists() else None)
    if not found:
        pytest.fail(f"{name} is missing: apt-get install {package}")
    return found


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, cwd=ALERTING, timeout=60)


def test_promtool_accepts_the_rules_and_the_scrape_configuration() -> None:
    """`promtool check rules` and `promtool check config` (which loads rules.yml too) succeed."""
    promtool = _tool("promtool", "prometheus")
    rules = _run(promtool, "check", "rules", "rules.yml")
    assert rules.returncode == 0 and "SUCCESS: 3 rules found" in rules.stdout, rules.stdout + rules.stderr
    config = _run(promtool, "check", "config", "prometheus.yml")
    assert config.returncode == 0, config.stdout + config.stderr


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    """rules.test.yml: 502 from the probe, no answer at all, and a 5xx share in nginx's log each fire as expected."""
    done = _run(_tool("promtool", "prometheus"), "test", "rules", "rules.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_promtool_unit_tests_fail_when_the_rules_do_not_produce_the_status(tmp_path: Path) -> None:
    """The unit tests have teeth: rules whose alert lacks the http_status annotation fail them."""
    (tmp_path / "rules.yml").write_text((ALERTING / "rules.yml").read_text().replace('http_status: "{{ $value }}"', ""))
    shutil.copy(ALERTING / "rules.test.yml", tmp_path / "rules.test.yml")
    done = subprocess.run(
        [_tool("promtool", "prometheus"), "test", "rules", "rules.test.yml"],
        capture_output=True, text=True, check=False, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0 and "http_status" in done.stdout + done.stderr


def test_amtool_accepts_the_alertmanager_configuration() -> None:
    """`amtool check-config` succeeds and finds the incident-bot receiver."""
    done = _run(_tool("amtool", "prometheus-alertmanager"), "check-config", "alertmanager.yml")
    assert done.returncode == 0 and "1 receivers" in done.stdout, done.stdout + done.stderr


def test_the_blackbox_exporter_accepts_its_module() -> None:
    """`prometheus-blackbox-exporter --config.check` loads blackbox.yml."""
    done = _run(_tool(BLACKBOX, "prometheus-blackbox-exporter"), "--config.check", "--config.file=blackbox.yml")
    assert done.returncode == 0, done.stderr


def test_mtail_counts_nginx_responses_by_status_from_a_real_access_log(tmp_path: Path) -> None:
    """nginx.mtail over a captured nginx access log counts every response under its status."""
    mtail = _tool("mtail", "mtail")
    log = ROOT / "tests" / "fixtures" / "nginx" / "access-combined.log"
    shutil.copy(ALERTING / "nginx.mtail", tmp_path / "nginx.mtail")
    done = subprocess.run(
        [mtail, "--one_shot", "--one_shot_format", "prometheus", "--progs", str(tmp_path), "--logs", str(log)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    counted = {
        match.group(1): int(float(match.group(2)))
        for match in re.finditer(r'^nginx_http_responses_total\{[^}]*status="(\d{3})"[^}]*\} (\S+)', done.stdout, re.M)
    }
    expected = Counter(line.split('" ')[1].split()[0] for line in log.read_text().splitlines() if '" ' in line)
    assert counted == dict(expected)
    assert counted["502"] > 0


class _Answering(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        code = int(self.path.strip("/") or 200)
        body = f"{code}\n".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    """An HTTP server on 127.0.0.1 answering GET /502 with 502, /200 with 200."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    assert match, f"{name} not in the probe's output"
    return float(match.group(1))


def test_a_real_blackbox_probe_reports_the_sites_5xx_in_the_metrics_the_rules_read(tmp_path: Path, site: str) -> None:
    """The exporter with blackbox.yml probing a site that answers 502: probe_success 0, status code 502."""
    port = free_port()
    procs = Processes()
    try:
        procs.start(
            [_tool(BLACKBOX, "prometheus-blackbox-exporter"), f"--config.file={ALERTING / 'blackbox.yml'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            tmp_path / "blackbox.log",
        )  # fmt: skip
        wait_until(lambda: healthy(f"http://127.0.0.1:{port}/-/healthy"), 20, "the blackbox exporter")
        probe = f"http://127.0.0.1:{port}/probe"
        failing = httpx.get(probe, params={"module": "http_site", "target": f"{site}/502"}, timeout=15).text
        working = httpx.get(probe, params={"module": "http_site", "target": f"{site}/200"}, timeout=15).text
    finally:
        procs.stop()
    assert _metric(failing, "probe_success") == 0 and _metric(failing, "probe_http_status_code") == 502
    assert _metric(working, "probe_success") == 1 and _metric(working, "probe_http_status_code") == 200


def _expected_alerts() -> list[dict[str, Any]]:
    """The firing alerts rules.test.yml expects (and promtool has checked the rules produce)."""
    tests = yaml.safe_load((ALERTING / "rules.test.yml").read_text())["tests"]
    return [
        {"labels": alert["exp_labels"], "annotations": alert.get("exp_annotations", {})}
        for test in tests
        for case in test["alert_rule_test"]
        for alert in case["exp_alerts"]
    ]


def test_the_rules_alerts_read_as_the_status_url_service_and_host_the_bot_needs() -> None:
    """Each alert the rules fire, in an Alertmanager notification, parses to the intended status, URL, service."""
    alerts = _expected_alerts()
    payload = {
        "version": "4",
        "groupKey": "{}:{alertname=\"x\"}",
        "status": "firing",
        "receiver": "incident-bot",
        "alerts": [
            {"status": "firing", "labels": {k: str(v) for k, v in a["labels"].items()}, "annotations": a["annotations"],
             "startsAt": "2026-11-30T05:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "fingerprint": f"f{i}"}
            for i, a in enumerate(alerts)
        ],
    }  # fmt: skip
    read = {(alert.labels["alertname"], alert.service): alert for alert in parse(payload)}
    probe = read[("SiteHttp5xx", "shop")]
    assert (probe.status, probe.url, probe.host) == (502, "https://shop.example.com/healthz", "shop.example.com")
    down = read[("SiteUnreachable", "api")]
    assert (down.status, down.url) == (None, "https://api.example.com/")
    nginx = read[("Nginx5xxRate", "shop")]
    assert (nginx.status, nginx.url, nginx.host) == (502, None, "web-1")


def test_alertmanager_with_this_configuration_delivers_the_rules_alert_to_the_bot(tmp_path: Path) -> None:
    """The real Alertmanager on alertmanager.yml (URL and token file pointed here, group_wait shortened) posts
    the SiteHttp5xx alert to a real `incident-bot serve`, which opens a 502 incident for the service."""
    if not Path(ALERTMANAGER).exists():
        pytest.fail("prometheus-alertmanager is missing: apt-get install prometheus-alertmanager")
    amtool = _tool("amtool", "prometheus-alertmanager")
    bot_port, am_port = free_port(), free_port()
    token_file = tmp_path / "incident-bot-token"
    token_file.write_text(TOKENS["INCIDENT_BOT_WEBHOOK_TOKEN"] + "\n")
    config = (ALERTING / "alertmanager.yml").read_text()
    config = config.replace("https://bot.example.com", f"http://127.0.0.1:{bot_port}")
    config = config.replace("/etc/prometheus/incident-bot-token", str(token_file))
    config = config.replace("group_wait: 30s", "group_wait: 1s")
    (tmp_path / "alertmanager.yml").write_text(config)
    bot_config = tmp_path / "incident-bot.yaml"
    bot_config.write_text(
        f"database_url: sqlite+aiosqlite:///{tmp_path / 'bot.db'}\nlisten: 127.0.0.1:{bot_port}\n"
        "hosts: {web-1: {address: 127.0.0.1}}\n"
        "services: {shop: {match: {labels: {service: shop}}, hosts: [web-1]}}\n"
    )
    [alert] = [a for a in _expected_alerts() if a["labels"]["alertname"] == "SiteHttp5xx"]
    procs = Processes()
    try:
        serve = procs.start([sys.executable, "-m", "bot", "serve", "--config", str(bot_config)], tmp_path / "serve.log",
                            TOKENS)  # fmt: skip
        wait_until(lambda: healthy(f"http://127.0.0.1:{bot_port}/healthz") or serve.poll() is not None, 30, "serve")
        procs.start(
            [ALERTMANAGER, f"--config.file={tmp_path / 'alertmanager.yml'}", f"--storage.path={tmp_path / 'am'}",
             f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
            tmp_path / "alertmanager.log",
        )  # fmt: skip
        wait_until(lambda: healthy(f"http://127.0.0.1:{am_port}/-/ready"), 30, "alertmanager")
        labels = [f"{key}={value}" for key, value in alert["labels"].items()]
        notes = [f"--annotation={key}={value}" for key, value in alert["annotations"].items()]
        added = subprocess.run([amtool, f"--alertmanager.url=http://127.0.0.1:{am_port}", "alert", "add", *labels,
                                *notes], capture_output=True, text=True, check=False)  # fmt: skip
        assert added.returncode == 0, added.stderr
        wait_until(lambda: bool(incidents(f"http://127.0.0.1:{bot_port}")), 30, "the incident")
        [incident] = incidents(f"http://127.0.0.1:{bot_port}")
    finally:
        procs.stop()
    assert incident["service"] == "shop" and incident["status"] == 502
