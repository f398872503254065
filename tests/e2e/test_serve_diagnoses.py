"""`incident-bot serve` diagnoses what it is alerted about: a real server process on SQLite with the fault
lab as the service's host. The lab's upstream is killed, a generic alert is posted, and the incident
read back over the API gains a diagnosis made by the serve's own worker over real SSH: the top cause is
upstream_down, quoting nginx's `connect() … failed (111: Connection refused)` line. Every command the
job ran is in the store's audit table, and `incidents show` prints the cause with its evidence."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot.lab import Lab
from tests.labfixture import running_lab
from tests.test_serve import TOKENS, free_port


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab("ibl-sd-") as the_lab:
        yield the_lab


def healthy(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_serve_diagnoses_an_alerted_incident_and_names_upstream_down_with_the_111_line(
    lab: Lab, tmp_path: Path
) -> None:
    lab.rotate_logs()
    lab.break_("upstream_down")
    port = free_port()
    document: dict[str, Any] = yaml.safe_load((lab.paths.root / "incident-bot.yaml").read_text())
    document["database_url"] = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    document["listen"] = f"127.0.0.1:{port}"
    config = tmp_path / "incident-bot.yaml"
    config.write_text(yaml.safe_dump(document))
    env = {**os.environ, **TOKENS, "XDG_STATE_HOME": str(tmp_path / "state")}
    log_path = tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    api = {"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_API_TOKEN']}"}
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--config", str(config)], env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 20
        while not healthy(base):
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "serve did not become healthy"
            time.sleep(0.2)
        alert = {"id": "x", "state": "firing", "status": 502, "service": "lab", "url": lab.url}
        posted = httpx.post(
            f"{base}/alerts/generic",
            json=alert,
            headers={"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_WEBHOOK_TOKEN']}"},
            timeout=5,
        )
        assert posted.status_code == 202, posted.text
        [result] = posted.json()["results"]
        assert result["outcome"] == "opened"
        incident_id = result["incident"]

        body: dict[str, Any] = {}
        deadline = time.monotonic() + 120
        while "diagnosis" not in body:
            assert proc.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, f"no diagnosis: {body}\n{log_path.read_text()}"
            time.sleep(0.5)
            answer = httpx.get(f"{base}/api/incidents/{incident_id}", headers=api, timeout=5)
            assert answer.status_code == 200, answer.text
            body = answer.json()
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        lab.repair()
    assert proc.returncode == 0, log_path.read_text()

    diagnosis = body["diagnosis"]
    causes = diagnosis["causes"]
    assert causes[0]["id"] == "upstream_down", [(c["id"], c["confidence"], c["supported_by"]) for c in causes[:3]]
    refused = [line for line in causes[0]["evidence"] if "connect() to" in line and "(111: Connection refused)" in line]
    assert refused, causes[0]["evidence"]
    assert any(f["kind"].startswith("probe.") for f in diagnosis["findings"])  # the probe joined the diagnosis
    kinds = [e["kind"] for e in body["timeline"]]
    assert kinds.index("diagnosis_queued") < kinds.index("diagnosis_done")
    done = next(e for e in body["timeline"] if e["kind"] == "diagnosis_done")
    assert done["data"]["cause"] == "upstream_down"

    shown = subprocess.run(
        [sys.executable, "-m", "bot", "incidents", "show", incident_id, "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False, env=env,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "upstream_down" in shown.stdout and refused[0] in shown.stdout

    with closing(sqlite3.connect(tmp_path / "bot.db")) as db:
        audited = db.execute("SELECT count(*) FROM audit WHERE trigger = ?", (f"incident:{incident_id}",)).fetchone()
    assert audited[0] > 0  # the job's SSH commands are in the store's audit table
