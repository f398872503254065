"""What runs on a host, from its process table (``ps -eo pid,ppid,user,args``).

Read under a ``### $ ps ...`` header: each line is ``PID PPID USER ARGS``. Recognised programs and the
options that say where their configuration, sockets and logs are:

* nginx: the master's process title ``nginx: master process /usr/sbin/nginx -p P -c F -e E``
  (``src/os/unix/ngx_setproctitle.c``; ``-p`` prefix, ``-c`` config file, ``-e`` error log, nginx ≥ 1.19.5).
* Apache httpd: ``apache2``/``httpd`` (``-f`` config file, ``-d`` server root); the parent is the master.
* HAProxy: ``haproxy -f F [-f DIR] -p PIDFILE`` (the master-worker mode repeats it for each process).
* Application servers: gunicorn (``--bind``/``-b``, ``--pid``, ``--error-logfile``/``--log-file``,
  ``--chdir``), uWSGI (``--socket``/``-s``, ``--http-socket``, ``--http``), uvicorn (``--uds``,
  ``--host``/``--port``), ``php-fpm: master process (F)``, node.
* Databases: ``postgres -D DIR [-c config_file=F]``, ``mysqld``/``mariadbd``, ``redis-server ADDR``.

One finding of kind ``discovery.processes`` (INFO) whose data lists each program found, with its pid
and options; its evidence quotes the master lines. It is a description of the host, not a symptom,
so it declares no signal. The ps header line and kernel threads (``[kthreadd]``) are ignored.
Captured tables: tests/fixtures/runbooks/discovery/ (the fault lab on this machine).
"""

from __future__ import annotations

import os
import re
from typing import Any

from bot.core.models import Finding, Severity, quote_line
from bot.core.redact import redact
from bot.evidence.reader import Reader

_ROW = re.compile(r"^\s*(?P<pid>\d+)\s+(?P<ppid>\d+)\s+(?P<user>\S+)\s+(?P<args>\S.*?)\s*$")
_NGINX_MASTER = re.compile(r"^nginx: master process\s+(?P<cmd>.*)$")
_PHP_FPM = re.compile(r"^php-fpm[\d.]*: master process \((?P<conf>[^)]*)\)")
_REDIS_TITLE = re.compile(r"redis-server\s+(?P<addr>\S+:\d+)")
_GUNICORN_TITLE = re.compile(r"^gunicorn: master \[(?P<app>[^\]]*)\]")
#: Programs kept per family, so a huge process table stays a small finding.
MAX_PER_FAMILY = 8
MAX_EVIDENCE = 8

_APP_SERVERS = {"gunicorn", "uwsgi", "uvicorn", "node", "nodejs", "php-fpm", "hypercorn", "daphne", "puma", "unicorn"}
_DATABASES = {"postgres": "postgres", "postmaster": "postgres", "mysqld": "mysql", "mariadbd": "mysql"}


def options(tokens: list[str], *names: str) -> list[str]:
    """Values of command-line options ``-x V``, ``--name V`` and ``--name=V`` in ``tokens``, in order."""
    found: list[str] = []
    for i, token in enumerate(tokens):
        for name in names:
            if token == name and i + 1 < len(tokens):
                found.append(tokens[i + 1])
            elif name.startswith("--") and token.startswith(name + "="):
                found.append(token[len(name) + 1 :])
    return found


def _first(tokens: list[str], *names: str) -> str | None:
    values = options(tokens, *names)
    return values[0] if values else None


def _program(tokens: list[str]) -> str:
    """The program a command line runs: the script for interpreters (``python .../gunicorn``)."""
    first = os.path.basename(tokens[0]).rstrip(":")
    if re.match(r"^(?:python[\d.]*|pypy[\d.]*)$", first) and len(tokens) > 1:
        for token in tokens[1:]:
            if token == "-m":
                continue
            if not token.startswith("-"):
                return os.path.basename(token)
    return first


class ProcessTable(Reader):
    """``ps -eo pid,ppid,user,args``: the proxies, application servers and databases that run."""

    name = "discovery.processes"
    title = "process table (ps -eo pid,ppid,user,args): proxies, app servers, databases"
    header = r"(?:^|[\s$])ps\s+(?:-\S*e|aux|ax)"

    def __init__(self) -> None:
        self.found: dict[str, list[dict[str, Any]]] = {}
        self.evidence: list[str] = []
        self._pids: dict[str, set[int]] = {}

    def feed(self, line: str) -> bool:
        row = _ROW.match(line)
        if row is None or row.group("args").startswith("["):
            return False
        pid, ppid, user, args = int(row.group("pid")), int(row.group("ppid")), row.group("user"), row.group("args")
        entry = self._classify(args)
        if entry is None:
            return False
        family = str(entry.pop("family"))
        pids = self._pids.setdefault(family + ":" + str(entry["program"]), set())
        pids.add(pid)
        if ppid in pids:
            return False  # a worker of a master already seen
        items = self.found.setdefault(family, [])
        if len(items) >= MAX_PER_FAMILY:
            return False
        items.append({"pid": pid, "ppid": ppid, "user": user, **entry})
        if len(self.evidence) < MAX_EVIDENCE:
            self.evidence.append(redact(quote_line(line)))
        return False

    def _classify(self, args: str) -> dict[str, Any] | None:
        master = _NGINX_MASTER.match(args)
        if master:
            tokens = master.group("cmd").split()
            return {
                "family": "proxies",
                "program": "nginx",
                "binary": tokens[0] if tokens else "nginx",
                "conf": _first(tokens, "-c"),
                "prefix": _first(tokens, "-p"),
                "error_log": _first(tokens, "-e"),
            }
        fpm = _PHP_FPM.match(args)
        if fpm:
            return {"family": "app_servers", "program": "php-fpm", "conf": fpm.group("conf")}
        title = _GUNICORN_TITLE.match(args)
        if title:
            return {"family": "app_servers", "program": "gunicorn", "app": title.group("app")}
        tokens = args.split()
        program = _program(tokens)
        if program in {"apache2", "httpd"}:
            return {
                "family": "proxies",
                "program": "apache",
                "binary": tokens[0],
                "conf": _first(tokens, "-f"),
                "server_root": _first(tokens, "-d"),
            }
        if program == "haproxy":
            return {"family": "proxies", "program": "haproxy", "binary": tokens[0], "conf": options(tokens, "-f")}
        if program in _APP_SERVERS:
            return {"family": "app_servers", **self._app(program, tokens)}
        if program in _DATABASES:
            kind = _DATABASES[program]
            data: dict[str, Any] = {"family": "databases", "program": kind}
            if kind == "postgres":
                data["data_dir"] = _first(tokens, "-D")
                conf = [v.split("=", 1)[1] for v in options(tokens, "-c") if v.startswith("config_file=")]
                data["config_file"] = conf[0] if conf else None
            return data
        if program.startswith("redis-server"):
            addr = _REDIS_TITLE.search(args)
            return {"family": "databases", "program": "redis", "listen": addr.group("addr") if addr else None}
        return None

    @staticmethod
    def _app(program: str, tokens: list[str]) -> dict[str, Any]:
        if program == "gunicorn":
            return {
                "program": program,
                "bind": options(tokens, "--bind", "-b"),
                "pid_file": _first(tokens, "--pid", "-p"),
                "log": _first(tokens, "--error-logfile", "--log-file"),
                "chdir": _first(tokens, "--chdir"),
            }
        if program == "uwsgi":
            return {
                "program": program,
                "bind": options(tokens, "--socket", "-s", "--uwsgi-socket", "--http-socket", "--http"),
                "chdir": _first(tokens, "--chdir"),
            }
        if program == "uvicorn":
            uds = options(tokens, "--uds")
            host, port = _first(tokens, "--host") or "127.0.0.1", _first(tokens, "--port") or "8000"
            return {"program": program, "bind": [f"unix:{u}" for u in uds] or [f"{host}:{port}"]}
        return {"program": program}

    def findings(self) -> list[Finding]:
        if not self.found:
            return []
        names = [f"{item['program']} (pid {item['pid']})" for items in self.found.values() for item in items]
        return [
            Finding(
                kind="discovery.processes",
                severity=Severity.INFO,
                summary="running: " + ", ".join(names),
                evidence=tuple(self.evidence),
                data={k: list(v) for k, v in self.found.items()},
                reader=self.name,
            )
        ]


READERS = (ProcessTable,)
