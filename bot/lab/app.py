"""The lab's upstream application: a tiny WSGI app that gunicorn serves behind nginx.

``GET /`` walks the whole hop chain a real request would: a ``SELECT 1`` on the lab's PostgreSQL (a new
connection each time, short connect timeout, so a stopped or full database fails the request), then a
write to the data directory (a small tmpfs, so a full disk fails the request), and answers ``200 ok``.
Errors are not caught: gunicorn logs the traceback and answers 500, as an unguarded app would.

The misbehaviour for a scenario is switched by the flag file ``<lab>/app.flag``, read on every request:

* ``crash``       the worker dies mid-request (``os._exit``): nginx sees the connection close early
* ``sleep``       the worker answers after nginx's ``proxy_read_timeout``
* ``exception``   a bug raises in the handler
* ``big_header``  the response carries a header larger than nginx's ``proxy_buffer_size``

Configured by the environment gunicorn is started with: ``INCIDENT_BOT_LAB_DIR`` and
``INCIDENT_BOT_LAB_PG`` (a libpq conninfo string).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

StartResponse = Callable[[str, list[tuple[str, str]]], Any]

SLEEP_SECONDS = 5.0  # longer than nginx's proxy_read_timeout (2 s) in the lab
BIG_HEADER_BYTES = 64 * 1024  # larger than nginx's proxy_buffer_size (one memory page)
FLAGS = ("crash", "sleep", "exception", "big_header")


def _lab_dir() -> Path:
    return Path(os.environ.get("INCIDENT_BOT_LAB_DIR", "."))


def _flag() -> str:
    try:
        return (_lab_dir() / "app.flag").read_text().strip()
    except FileNotFoundError:
        return ""


def _query_database() -> None:
    conninfo = os.environ.get("INCIDENT_BOT_LAB_PG", "host=127.0.0.1 dbname=postgres connect_timeout=2")
    with psycopg.connect(conninfo) as conn:
        conn.execute("SELECT 1").fetchone()


def _record_visit(path: str) -> None:
    """Write the last-visit record atomically (temp file + rename), then append to the visit log."""
    data = _lab_dir() / "data"
    line = f"{datetime.now(UTC).isoformat()} pid={os.getpid()} GET {path}\n"
    tmp = data / f".last-visit.{os.getpid()}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(line)
        os.replace(tmp, data / "last-visit")
    finally:
        tmp.unlink(missing_ok=True)
    with open(data / "visits.log", "a", encoding="utf-8") as handle:
        handle.write(line)


def _basket_summary(basket: dict[str, int]) -> str:
    average = basket["total_cents"] / basket["items"]  # the bug: an empty basket divides by zero
    return f"{basket['items']} items, {average:.0f} cents each on average"


def application(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    path = str(environ.get("PATH_INFO") or "/")
    flag = _flag()
    if flag == "crash":
        os._exit(1)
    if flag == "sleep":
        time.sleep(SLEEP_SECONDS)
    if flag == "exception":
        _basket_summary({"total_cents": 0, "items": 0})
    _query_database()
    try:
        _record_visit(path)
    except OSError as exc:
        # Re-raised with context: a bare OSError escaping a WSGI app is taken by gunicorn's sync worker
        # for a socket error, and it drops the connection (nginx: 502) instead of answering 500.
        raise RuntimeError(f"cannot record the visit in {_lab_dir() / 'data'}") from exc
    body = b"ok\n"
    headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
    if flag == "big_header":
        headers.append(("X-Debug-Trace", "t" * BIG_HEADER_BYTES))
    start_response("200 OK", headers)
    return [body]
