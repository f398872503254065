"""The scenario table: for each cause of the catalog the lab reproduces, what ``break`` does, what
``repair`` undoes, the status nginx then answers and the line that proves it, and in which log.

The mechanics live in :class:`bot.lab.lab.Lab`; a scenario only names the moves, through the
:class:`Controls` protocol, so the table reads as a list of real-world faults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class Controls(Protocol):
    """The moves a scenario may make on a running lab."""

    def set_app_flag(self, flag: str | None) -> None: ...
    def stop_app_server(self) -> None: ...
    def kill_app_server(self) -> None: ...
    def start_app_server(self) -> None: ...
    def stop_database(self) -> None: ...
    def start_database(self) -> None: ...
    def exhaust_database(self) -> None: ...
    def release_database(self) -> None: ...
    def fill_disk(self) -> None: ...
    def free_disk(self) -> None: ...
    def set_rate_limit(self, on: bool) -> None: ...
    def set_maintenance(self, on: bool) -> None: ...
    def lock_app_socket(self) -> None: ...
    def unlock_app_socket(self) -> None: ...
    def saturate_workers(self) -> None: ...
    def release_workers(self) -> None: ...


Move = Callable[[Controls], None]


@dataclass(frozen=True)
class Scenario:
    name: str
    cause: str  # a cause id of the catalog (DESIGN §5)
    status: int  # what nginx answers for / while the scenario is in force
    does: str  # what `break` does, in a person's words
    log: str  # which log carries the signature: a key of LabPaths.log_files()
    signature: str  # a fragment of the line that proves it
    breaks: Move
    repairs: Move
    needs_root: bool = False


def _flag(flag: str) -> tuple[Move, Move]:
    return (lambda lab: lab.set_app_flag(flag)), (lambda lab: lab.set_app_flag(None))


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(
        "upstream_down", "upstream_down", 502,
        "kills gunicorn (SIGKILL, as a crash or the OOM killer would): its socket file stays, nothing listens",
        "nginx_error", "failed (111: Connection refused) while connecting to upstream",
        lambda lab: lab.kill_app_server(), lambda lab: lab.start_app_server()),
    Scenario(
        "upstream_crashed", "upstream_crashed", 502,
        "the app's worker dies mid-request (os._exit)",
        "nginx_error", "upstream prematurely closed connection while reading response header from upstream",
        *_flag("crash")),
    Scenario(
        "upstream_timeout", "upstream_timeout", 504,
        "the app answers after nginx's proxy_read_timeout (2 s)",
        "nginx_error", "upstream timed out (110: Connection timed out) while reading response header from upstream",
        *_flag("sleep")),
    Scenario(
        "app_exception", "app_exception", 500,
        "the app raises an unhandled exception (gunicorn logs the traceback)",
        "gunicorn", "ZeroDivisionError: division by zero",
        *_flag("exception")),
    Scenario(
        "upstream_bad_response", "upstream_bad_response", 502,
        "the app sends a 64 KiB response header",
        "nginx_error", "upstream sent too big header while reading response header from upstream",
        *_flag("big_header")),
    Scenario(
        "db_down", "db_down", 500,
        "stops PostgreSQL (pg_ctl stop -m fast)",
        "gunicorn", "Connection refused",
        lambda lab: lab.stop_database(), lambda lab: lab.start_database()),
    Scenario(
        "db_connections_exhausted", "db_connections_exhausted", 500,
        "a helper holds every PostgreSQL connection (max_connections = 12)",
        "gunicorn", "sorry, too many clients already",
        lambda lab: lab.exhaust_database(), lambda lab: lab.release_database()),
    Scenario(
        "disk_full", "disk_full", 500,
        "fills the app's 2 MB tmpfs data directory",
        "gunicorn", "OSError: [Errno 28] No space left on device",
        lambda lab: lab.fill_disk(), lambda lab: lab.free_disk(), needs_root=True),
    Scenario(
        "rate_limited", "rate_limited", 503,
        "nginx limit_req at 1 request per minute (reload)",
        "nginx_error", "limiting requests, excess:",
        lambda lab: lab.set_rate_limit(True), lambda lab: lab.set_rate_limit(False)),
    Scenario(
        "maintenance_mode", "maintenance_mode", 503,
        "creates the maintenance flag file: nginx answers 503 with a page and Retry-After",
        "nginx_access", '"GET / HTTP/1.1" 503',
        lambda lab: lab.set_maintenance(True), lambda lab: lab.set_maintenance(False)),
    Scenario(
        "permission_denied", "permission_denied", 502,
        "chmod 600 on the gunicorn socket: nginx's workers (nobody) may not connect",
        "nginx_error", "failed (13: Permission denied) while connecting to upstream",
        lambda lab: lab.lock_app_socket(), lambda lab: lab.unlock_app_socket()),
    Scenario(
        "worker_saturation", "worker_saturation", 502,
        "stops both gunicorn workers (SIGSTOP) and fills the socket's listen backlog",
        "nginx_error", "failed (11: Resource temporarily unavailable) while connecting to upstream",
        lambda lab: lab.saturate_workers(), lambda lab: lab.release_workers()),
)}
