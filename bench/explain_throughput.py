"""explain throughput and memory on a large nginx error log, side by side with grep.

Generates (once, cached in bench/out/) a nginx error log of the requested size whose lines are the real
lines captured from nginx in tests/fixtures/nginx/ with fresh timestamps and connection numbers, mixed
with the everyday noise of a busy server (404s, client closes, buffering warnings). Then runs, on the
same file, each three times, keeping the best:

- ``incident-bot explain --json --status 502`` (the whole pipeline: scan, readers, rules);
- ``grep -c -E`` over the same signatures the nginx reader triggers on.

Prints wall time, throughput, peak RSS and the ratio to grep. Exits 0.

    .venv/bin/python bench/explain_throughput.py --size-mb 1024
"""

from __future__ import annotations

import argparse
import os
import random
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

from bot.evidence.readers.nginx import NginxErrorLog

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
FIXTURES = ROOT / "tests" / "fixtures" / "nginx"
NGINX_LINE = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d \[(\w+)\] \d+#\d+: (?:\*\d+ )?")

# Everyday noise of a busy nginx (layout of src/core/ngx_log.c; texts from the lines nginx 1.22 wrote in
# the fixture captures, see tests/fixtures/nginx/SOURCES.md). Weighted far above the failures.
NOISE = (
    '[error] {pid}#{pid}: *{cid} open() "/var/www/html/favicon.ico" failed (2: No such file or directory), '
    'client: 203.0.113.{a}, server: shop.example.com, request: "GET /favicon.ico HTTP/1.1", host: "shop.example.com"',
    "[info] {pid}#{pid}: *{cid} client closed connection while waiting for request, client: 198.51.100.{a}, "
    "server: 0.0.0.0:443",
    "[warn] {pid}#{pid}: *{cid} an upstream response is buffered to a temporary file "
    "/var/cache/nginx/proxy_temp/1/00/00000000{a} while reading upstream, client: 203.0.113.{a}, "
    'server: shop.example.com, request: "GET /export.csv HTTP/1.1", upstream: "http://127.0.0.1:8000/export.csv", '
    'host: "shop.example.com"',
    "[info] {pid}#{pid}: *{cid} client 198.51.100.{a} closed keepalive connection",
)


def failure_templates() -> list[str]:
    """Real failure lines from the nginx fixtures, with their timestamp prefix removed."""
    out: list[str] = []
    for path in sorted(FIXTURES.glob("*.log")):
        for line in path.read_text(errors="replace").splitlines():
            match = NGINX_LINE.match(line)
            if match and match.group(1) in {"error", "crit", "alert", "warn"}:
                out.append(line[len("2026/11/30 03:25:13 ") :])
    return out


def generate(path: Path, size_mb: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    failures = failure_templates() or [t for t in NOISE]
    target = size_mb * 1024 * 1024
    written = 0
    cid = 0
    with path.open("w") as out:
        while written < target:
            lines = []
            for _ in range(2000):
                cid += 1
                template = rng.choice(failures) if rng.random() < 0.08 else rng.choice(NOISE)
                second = cid // 40
                stamp = f"2026/11/30 {second // 3600 % 24:02d}:{second // 60 % 60:02d}:{second % 60:02d} "
                body = template.format(pid=4942, cid=cid, a=cid % 250) if "{" in template else template
                lines.append(stamp + body + "\n")
            chunk = "".join(lines)
            out.write(chunk)
            written += len(chunk)


def grep_pattern() -> str:
    return "|".join(t.replace("(?:", "(") for t in NginxErrorLog.triggers)


def timed(argv: list[str]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (KiB) of the child and its stdout; best of three runs."""
    best: tuple[float, int, str] | None = None
    for _ in range(3):
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if proc.returncode not in (0, 1):
            raise SystemExit(f"{argv[0]} failed: {proc.stderr.strip()}")
        result = (wall, max(peak, before), proc.stdout)
        if best is None or wall < best[0]:
            best = result
    assert best is not None
    return best


def peak_rss(argv: list[str]) -> int:
    """Peak RSS of one run measured alone (RUSAGE_CHILDREN keeps the maximum over all children)."""
    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / f"nginx-error-{args.size_mb}mb.log"
    if not log.exists() or log.stat().st_size < args.size_mb * 1024 * 1024:
        print(f"generating {log} ...", file=sys.stderr)
        generate(log, args.size_mb)
    size_mb = log.stat().st_size / (1024 * 1024)
    bot = [str(ROOT / ".venv" / "bin" / "incident-bot"), "explain", "--json", "--status", "502", str(log)]
    grep = ["grep", "-c", "-E", grep_pattern(), str(log)]
    # Warm the page cache so both read from memory.
    subprocess.run(["cat", str(log)], stdout=subprocess.DEVNULL, check=True)
    rows = []
    for name, argv in (("grep -c -E (same signatures)", grep), ("incident-bot explain --json", bot)):
        wall, _, _ = timed(argv)
        rows.append((name, wall, size_mb / wall, peak_rss(argv)))
    grep_wall = rows[0][1]
    print(f"input: {log.name}, {size_mb:.0f} MiB, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    print(f"{'tool':<32} {'wall s':>8} {'MiB/s':>8} {'peak RSS MiB':>13} {'× grep':>7}")
    for name, wall, rate, peak in rows:
        print(f"{name:<32} {wall:>8.2f} {rate:>8.0f} {peak / 1024:>13.1f} {wall / grep_wall:>7.2f}")


if __name__ == "__main__":
    main()
