"""`incident-bot demo`, run for real as a command: the fault lab, serve on SQLite with the console chat,
the alert through the Alertmanager webhook, the thread shown live, then everything stopped.

One full run is shared by the module: it exits 0 in under a minute; its output shows the thread opened,
the cause upstream_down with nginx's own `(111: Connection refused)` line, and the resolution, in that
order; afterwards its directory is gone, no process mentions it and none of its ports listens. Ctrl-C
(SIGINT to the process group, as a terminal sends it) while the lab starts and while the diagnosis runs
leaves nothing either. A missing Debian package is named with the command that installs it, and the
demo falls back to `explain` on captured evidence, saying so, with exit 1. An unknown scenario is one
line and exit 2.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from tests.labfixture import LAB_NEEDS, missing

DEMO = [sys.executable, "-m", "bot", "demo"]
BUDGET = 60.0  # seconds, the bound for the whole run
ROOT = re.compile(r"/tmp/incident-bot-demo-[A-Za-z0-9_]+")
PORT = re.compile(r"(?:127\.0\.0\.1:|PostgreSQL on port )(\d+)")


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def root(self) -> Path:
        found = ROOT.search(self.stderr)
        assert found, self.stderr
        return Path(found.group(0))

    @property
    def ports(self) -> set[int]:
        """The ports the demo's own narration names (the lab's site, SSH and PostgreSQL, serve's listener);
        the thread's findings also list other listeners of this machine, which are not the demo's."""
        narration = [line for line in self.stderr.splitlines() if re.match(r"\[ *[0-9.]+s\] demo: ", line)]
        return {int(p) for line in narration for p in PORT.findall(line)}


def needs_the_lab() -> None:
    absent = missing(LAB_NEEDS)
    if absent:
        pytest.fail(f"the demo needs {', '.join(absent)}: run ./dev setup")


def env() -> dict[str, str]:
    # No configuration of the caller's may leak in: the demo must need none.
    drop = ("INCIDENT_BOT_CONFIG", "DATABASE_URL", "INCIDENT_BOT_WEBHOOK_TOKEN", "INCIDENT_BOT_API_TOKEN")
    return {k: v for k, v in os.environ.items() if k not in drop}


def still_running(root: Path) -> list[str]:
    """Processes whose command line mentions the demo's directory."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(root) in line and state not in ("Z", "X"):
            found.append(f"{entry.name}: {line[:200]}")
    return found


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def assert_nothing_left(run: Run) -> None:
    assert not run.root.exists(), f"{run.root} was not removed"
    assert still_running(run.root) == []
    assert [p for p in sorted(run.ports) if listening(p)] == []


@pytest.fixture(scope="module")
def demo_run() -> Run:
    needs_the_lab()
    began = time.monotonic()
    done = subprocess.run(DEMO, capture_output=True, text=True, timeout=180, env=env(), check=False)
    return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - began)


def test_demo_runs_the_main_job_end_to_end_in_under_a_minute(demo_run: Run) -> None:
    assert demo_run.returncode == 0, demo_run.stderr
    assert demo_run.seconds < BUDGET, f"{demo_run.seconds:.1f} s\n{demo_run.stderr}"
    assert demo_run.stdout.startswith("demo ok"), demo_run.stdout
    assert "POST /alerts/alertmanager, HTTP5xx firing" in demo_run.stderr


REFUSED = re.compile(r"connect\(\) to unix:\S+ failed \(111: Connection refused\) while connecting to upstream")


def test_the_thread_shows_opened_then_upstream_down_with_nginx_line_then_the_resolution(demo_run: Run) -> None:
    lines = demo_run.stderr.splitlines()
    [header] = [i for i, line in enumerate(lines) if re.match(r"━━ incident #\d+ · lab · 502", line)]
    opened = next(i for i, line in enumerate(lines) if "↳ opened the thread" in line)
    resolved = next(i for i, line in enumerate(lines) if line.startswith("  ↳ resolved"))
    assert header < opened < resolved, demo_run.stderr
    thread = [line for line in lines[opened:resolved] if line.startswith("  │ ")]  # what was posted meanwhile
    assert any("upstream_down" in line for line in thread), demo_run.stderr
    assert any(REFUSED.search(line) for line in thread), demo_run.stderr  # nginx's own line, as evidence
    incident = re.search(r"incident #(\d+)", lines[header])
    assert incident and f"incident #{incident.group(1)} resolved" in demo_run.stdout
    assert "suggested cause upstream_down (as expected)" in demo_run.stdout


def test_the_demo_leaves_nothing_running_and_removes_its_directory(demo_run: Run) -> None:
    assert len(demo_run.ports) >= 4, demo_run.stderr  # the lab's site, SSH, PostgreSQL and serve's listener
    assert_nothing_left(demo_run)
    assert "nothing left running" in demo_run.stdout


def lines_of(stream: IO[str], into: queue.Queue[str | None]) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


@pytest.mark.parametrize(
    "when", ["starting the fault lab", "opened the thread"], ids=["while-the-lab-starts", "while-diagnosing"]
)
def test_ctrl_c_at_any_moment_still_stops_everything(when: str) -> None:
    needs_the_lab()
    err: list[str] = []
    seen: queue.Queue[str | None] = queue.Queue()
    with subprocess.Popen(
        DEMO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env(), start_new_session=True
    ) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        reader = threading.Thread(target=lines_of, args=(proc.stderr, seen), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + BUDGET
            while not any(when in line for line in err):
                line = seen.get(timeout=max(0.1, deadline - time.monotonic()))
                assert line is not None, "".join(err)
                err.append(line)
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground group
            stdout = proc.stdout.read()
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        reader.join(timeout=10)
    while (line := seen.get_nowait() if not seen.empty() else None) is not None:
        err.append(line)
    run = Run(proc.returncode, stdout, "".join(err), 0.0)
    assert run.returncode == 130, run.stderr
    assert "interrupted; everything the demo started was stopped" in run.stderr
    assert "Traceback" not in run.stderr
    if when == "opened the thread":
        assert len(run.ports) >= 4, run.stderr
    assert_nothing_left(run)


def test_a_reader_that_goes_away_mid_run_still_leaves_nothing_running() -> None:
    """``incident-bot demo 2>&1 | head``: the pipe closes early, the demo keeps going and cleans up."""
    needs_the_lab()
    with subprocess.Popen(
        DEMO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env(), start_new_session=True
    ) as proc:
        assert proc.stdout is not None
        head: list[str] = []
        while not head or "opened the thread" not in head[-1]:  # the serve's console chat is printing now
            head.append(proc.stdout.readline())
            assert head[-1], "".join(head)
        proc.stdout.close()  # what `head` does once it has its lines
        proc.wait(timeout=BUDGET + 30)
    run = Run(proc.returncode, "", "".join(head), 0.0)
    assert run.root  # the narration named the directory before the pipe closed
    assert_nothing_left(run)


def test_a_missing_debian_package_is_named_with_how_to_install_it_and_explain_runs_instead(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # every program the demo needs except curl
    bin_dir.mkdir()
    for program in ("ssh-keygen", "ss"):
        found = shutil.which(program)
        assert found, f"{program} is not installed: run ./dev setup"
        (bin_dir / program).symlink_to(found)
    before = set(Path("/tmp").glob("incident-bot-demo-*"))
    done = subprocess.run(
        DEMO, capture_output=True, text=True, timeout=60, env={**env(), "PATH": str(bin_dir)}, check=False
    )
    assert done.returncode == 1, done.stderr
    assert "curl (Debian package curl)" in done.stderr
    assert "apt-get install curl" in done.stderr
    assert "Not the live demo" in done.stderr
    assert "upstream_down" in done.stdout and "(111: Connection refused)" in done.stdout  # the captured 502
    assert set(Path("/tmp").glob("incident-bot-demo-*")) == before  # nothing was started


def test_an_unknown_scenario_is_one_line_and_exit_2() -> None:
    done = subprocess.run([*DEMO, "--scenario", "nope"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("incident-bot: error: unknown scenario 'nope'; valid scenarios: ")
    assert done.stderr.count("\n") == 1 and "upstream_down" in done.stderr
