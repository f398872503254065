"""Make docs/demo-thread.svg, the README's picture of a real incident thread: run `incident-bot demo`
(the fault lab's 502, diagnosed over SSH by a real `serve`), keep its terminal output in colour and let
rich draw it as SVG. Run from the repository root: `.venv/bin/python docs/make_thread_picture.py`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

HERE = Path(__file__).resolve().parent
KEEP = 70  # lines: the opening of the thread, the host's findings, the probe and the cause


def main() -> int:
    env = {**os.environ, "FORCE_COLOR": "1", "COLUMNS": "120", "TERM": "xterm-256color"}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "demo"], capture_output=True, text=True, env=env, timeout=180, check=False
    )
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-2000:])
        return done.returncode
    lines = done.stderr.splitlines()
    start = next(n for n, line in enumerate(lines) if "incident #1" in Text.from_ansi(line).plain)
    shown = lines[start : start + KEEP]
    console = Console(record=True, width=120, file=open(os.devnull, "w"))  # noqa: SIM115 - only recorded
    for line in shown:
        console.print(Text.from_ansi(line), soft_wrap=False, overflow="ellipsis", no_wrap=True)
    (HERE / "demo-thread.svg").write_text(console.export_svg(title="incident-bot demo: a 502 diagnosed over SSH"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
