"""Process checks without an init system: ``ps`` tables, pid files, ``supervisorctl status``.

:class:`ProcessTable` reads what a person runs on a host with no systemd (a container, a VM started by
hand) to see whether the app server lives:

* ``ps -eo pid,ppid,stat,etimes,rss,args`` (any ``-o`` list whose header has ``PID`` and a final
  ``COMMAND``/``CMD``/``ARGS`` column): the web stack's programs it recognises (gunicorn, uWSGI, php-fpm,
  Node, Puma, nginx, Apache, HAProxy, PostgreSQL, MySQL, Redis…), how many of each, which are stopped
  (``STAT`` ``T``: SIGSTOPped or traced, holding their slot while serving nothing).
* ``cat /run/gunicorn.pid`` under a ``### $ cat …pid`` header (the pid it holds), or
  ``cat: /run/gunicorn.pid: No such file or directory`` anywhere: the app's pid file.
* ``ps -p PID -o pid,stat,args`` under a header naming the pid: procps prints only the column
  header when the pid is gone, which is how a dead process shows.

A pid file that names a pid no table has, or a missing pid file whose path no running process
mentions, means the program is not running (upstream_down; gunicorn deletes its pid file when it
exits). Lines of ``ps`` are quoted only for the programs it recognises, so the command lines of
unrelated processes (which may carry secrets) never become evidence.

:class:`SupervisorStatus` reads ``supervisorctl status`` rows (``web  FATAL  Exited too quickly (process
log may have details)``, ``web  BACKOFF  Exited too quickly``, ``web  STOPPED  Not started``, ``web
EXITED  Nov 30 05:02 AM``, ``web  RUNNING  pid 123, uptime 0:01:02``); supervisord's state names come
from ``supervisor/states.py``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal, quote_line
from bot.core.redact import redact
from bot.evidence.reader import Reader, Tally

#: Program label → pattern over the name a process runs as: its executable's base name, the script an
#: interpreter runs (``python /venv/bin/gunicorn``, ``python -m uvicorn``), or its process title's first
#: word (``nginx: master process``, ``postgres: checkpointer``, ``php-fpm: pool www``).
PROGRAMS: dict[str, re.Pattern[str]] = {
    name: re.compile(rx)
    for name, rx in (
        ("gunicorn", r"^gunicorn"),
        ("uwsgi", r"^uwsgi"),
        ("php-fpm", r"^php-fpm"),
        ("uvicorn", r"^uvicorn$"),
        ("hypercorn", r"^hypercorn$"),
        ("daphne", r"^daphne$"),
        ("puma", r"^puma$"),
        ("unicorn", r"^unicorn(?:_rails)?$"),
        ("passenger", r"^Passenger"),
        ("node", r"^(?:node|nodejs)$|^PM2$"),
        ("celery", r"^celery$"),
        ("nginx", r"^nginx$"),
        ("apache", r"^(?:apache2|httpd)$"),
        ("haproxy", r"^haproxy$"),
        ("postgres", r"^(?:postgres|postmaster)$"),
        ("mysql", r"^(?:mysqld|mariadbd)$"),
        ("redis", r"^redis-server$"),
        ("supervisord", r"^supervisord$"),
    )
}
_INTERPRETER = re.compile(r"^(?:python[\d.]*|ruby[\d.]*|perl|php[\d.]*|bun|deno)$")
_COMMAND_COLUMNS = ("COMMAND", "CMD", "ARGS")
_PID_FILE = re.compile(r"(?P<path>/\S*pid\S*)")
_MISSING = re.compile(r"(?P<path>/\S*pid\S*): No such file or directory")
_HEADER_PID = re.compile(r"\bps\b.*?(?:\s-p\s*|\s--pid\s+|\s-q\s*)(?P<pid>\d+)")
_CAT_PID_HEADER = re.compile(r"\bcat\s+(?:--\s+)?(?P<path>/\S*pid\S*)")
#: Evidence lines kept per program.
_KEEP = 3


def _names(args: str) -> list[str]:
    """The names a process may be known by (see :data:`PROGRAMS`)."""
    words = args.split()
    if not words or args.startswith("["):
        return []
    first = words[0].rstrip(":").rsplit("/", 1)[-1]
    names = [first]
    if _INTERPRETER.match(first):
        rest = words[1:]
        while rest and rest[0].startswith("-"):
            flag = rest.pop(0)
            if flag == "-m" and rest:
                names.append(rest[0])
                break
        if rest and not rest[0].startswith("-"):
            names.append(rest[0].rsplit("/", 1)[-1])
    return names


def program_of(args: str) -> str | None:
    """The recognised program a ``ps`` args column belongs to, or None."""
    for candidate in _names(args):
        for name, pattern in PROGRAMS.items():
            if pattern.search(candidate):
                return name
    return None


def name_of_pid_file(path: str) -> str:
    """``/run/gunicorn/gunicorn.pid`` → ``gunicorn``; ``/run/php/php8.2-fpm.pid`` → ``php-fpm``."""
    stem = path.rsplit("/", 1)[-1].removesuffix(".pid")
    bare = re.sub(r"\d[\d.]*", "", stem)
    for name, pattern in PROGRAMS.items():
        if pattern.search(stem) or pattern.search(bare) or stem.startswith(name):
            return name
    if stem in ("pid", "app", "server", "master"):
        stem = path.rstrip("/").rsplit("/", 2)[-2] if path.count("/") >= 2 else stem
    return re.sub(r"[-_.]?\d[\d.]*$", "", stem) or stem


@dataclass
class _Row:
    pid: int
    ppid: int | None
    stat: str
    args: str
    line: str
    header: str = ""


@dataclass
class _Program:
    rows: list[_Row] = field(default_factory=list)

    def masters(self) -> list[_Row]:
        pids = {r.pid for r in self.rows}
        return [r for r in self.rows if r.ppid not in pids]


class ProcessTable(Reader):
    """``ps`` tables, pid files and ``ps -p PID``: is the app server (or another known program) running."""

    name = "process.table"
    title = "process table (ps), pid files"
    triggers = (
        r"(?m:^[ \t]*PID[ \t]+(?:[A-Z%]+[ \t]+)*(?:COMMAND|CMD|ARGS)[ \t\r]*$)",
        r"/\S*pid\S*: No such file or directory",
    )
    header = r"\bps\b|\bcat\s+(?:--\s+)?/\S*pid"
    signals: ClassVar[dict[str, Signal]] = {
        "process.not_running": Signal(cause="upstream_down", weight=0.6),
        "process.pid_file_missing": Signal(cause="upstream_down", weight=0.3),
        "process.stopped": Signal(cause="worker_saturation", weight=0.45),
    }

    def __init__(self) -> None:
        self._columns: list[str] | None = None
        self._header_line = ""
        self._tables = 0
        self._rows: dict[int, _Row] = {}
        self._programs: dict[str, _Program] = {}
        #: pid → (pid file or None, the header that asked for it)
        self._asked: dict[int, tuple[str | None, str]] = {}
        self._pid_files: dict[str, tuple[int | None, str]] = {}
        self._missing: dict[str, str] = {}
        self._cat_path: str | None = None
        self._others: list[str] = []

    # -- blocks ---------------------------------------------------------------------------------
    def start_block(self, header: str) -> None:
        self._columns = None
        self._cat_path = None
        cat = _CAT_PID_HEADER.search(header)
        if cat:
            self._cat_path = cat.group("path")
            return
        asked = _HEADER_PID.search(header)
        if asked:
            pid_file = _PID_FILE.search(header.split("#", 1)[1]) if "#" in header else None
            path = pid_file.group("path") if pid_file else None
            if path is None:
                # "ps -p 123" right after "cat x.pid" printing 123: that pid file.
                path = next((p for p, (v, _) in self._pid_files.items() if v == int(asked.group("pid"))), None)
            self._asked[int(asked.group("pid"))] = (path, f"### {header}")

    def end_block(self) -> None:
        self._columns = None
        self._cat_path = None

    # -- lines ----------------------------------------------------------------------------------
    def feed(self, line: str) -> bool:
        missing = _MISSING.search(line)
        if missing:
            self._missing.setdefault(missing.group("path"), quote_line(line))
            return False
        if self._cat_path is not None:
            text = line.strip()
            if re.fullmatch(r"\d{1,10}", text):
                self._pid_files[self._cat_path] = (int(text), quote_line(line))
                self._cat_path = None
            return False
        cells = line.split()
        if cells and "PID" in cells and cells[-1] in _COMMAND_COLUMNS:
            self._columns = cells
            self._header_line = line
            self._tables += 1
            return True
        if self._columns is None:
            return False
        row = self._row(line)
        if row is None:
            self._columns = None
            return False
        seen = row.pid in self._rows
        self._rows[row.pid] = row
        program = program_of(row.args)
        if program is not None and not seen:
            self._programs.setdefault(program, _Program()).rows.append(row)
        return True

    def _row(self, line: str) -> _Row | None:
        assert self._columns is not None
        cells = line.split(None, len(self._columns) - 1)
        if len(cells) < len(self._columns) - 1:
            return None
        values = dict(zip(self._columns, cells, strict=False))
        try:
            pid = int(values["PID"])
            ppid = int(values["PPID"]) if "PPID" in values else None
        except (KeyError, ValueError):
            return None
        stat = values.get("STAT", values.get("S", ""))
        args = values.get(self._columns[-1], "")
        return _Row(pid=pid, ppid=ppid, stat=stat, args=args, line=line, header=self._header_line)

    # -- results --------------------------------------------------------------------------------
    def _mentions(self, path: str) -> list[_Row]:
        return [r for r in self._rows.values() if path in r.args]

    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        out.extend(self._pid_findings())
        out.extend(self._stopped())
        if self._programs:
            out.append(self._running())
        elif self._tables and not out:
            out.append(
                Finding(
                    kind="process.running",
                    severity=Severity.INFO,
                    summary="no web-stack program (app server, proxy, database) in the process table",
                    evidence=(redact(quote_line(self._header_line)),),
                    data={"programs": {}},
                    reader=self.name,
                )
            )
        return out

    def _pid_findings(self) -> list[Finding]:
        out: list[Finding] = []
        for path, line in self._missing.items():
            name = name_of_pid_file(path)
            holders = self._mentions(path)
            data: dict[str, Any] = {"pid_file": path, "program": name}
            if holders:
                out.append(
                    Finding(
                        kind="process.stale_pid_file",
                        severity=Severity.INFO,
                        summary=f"pid file {path} is missing, but {name} (pid {holders[0].pid}) runs with it "
                        "on its command line",
                        evidence=(line, redact(quote_line(holders[0].line))),
                        data={**data, "pid": holders[0].pid},
                        reader=self.name,
                    )
                )
            elif self._tables or name in PROGRAMS:
                same = len(self._programs.get(name, _Program()).rows)
                other = f"; {same} other {name} process(es) run, none of them with this pid file" if same else ""
                seen = f" and no process in the table mentions it{other}" if self._tables else ""
                out.append(
                    Finding(
                        kind="process.not_running",
                        severity=Severity.CRITICAL,
                        summary=f"{name} is not running: its pid file {path} is missing{seen}",
                        evidence=(line,),
                        data={**data, "others": same},
                        reader=self.name,
                    )
                )
            else:
                out.append(
                    Finding(
                        kind="process.pid_file_missing",
                        severity=Severity.WARNING,
                        summary=f"pid file {path} is missing: {name} is not running, or writes its pid elsewhere",
                        evidence=(line,),
                        data=data,
                        reader=self.name,
                    )
                )
        asked = dict(self._asked)
        for file, (value, _line) in self._pid_files.items():
            if value is not None and value not in asked and self._tables:
                asked[value] = (file, "")
        for pid, (pid_file, header) in asked.items():
            label_name = name_of_pid_file(pid_file) if pid_file else None
            where = f" from {pid_file}" if pid_file else ""
            cat_line = self._pid_files.get(pid_file, (None, ""))[1] if pid_file else ""
            evidence = tuple(x for x in (cat_line, header) if x)
            row = self._rows.get(pid)
            data = {"pid": pid, "pid_file": pid_file, "program": label_name}
            if row is None:
                label = label_name or "the process"
                out.append(
                    Finding(
                        kind="process.not_running",
                        severity=Severity.CRITICAL,
                        summary=f"{label} (pid {pid}{where}) is not running",
                        evidence=(*evidence, redact(quote_line(self._header_line))) if self._header_line else evidence,
                        data=data,
                        reader=self.name,
                    )
                )
            elif not row.stat.startswith(("T", "t", "Z")):
                out.append(
                    Finding(
                        kind="process.alive",
                        severity=Severity.OK,
                        summary=f"{label_name or program_of(row.args) or 'the process'} (pid {pid}{where}) is running "
                        f"(state {row.stat})",
                        evidence=(*evidence, redact(quote_line(row.line))),
                        data={**data, "stat": row.stat},
                        reader=self.name,
                    )
                )
            elif row.stat.startswith("Z"):
                out.append(
                    Finding(
                        kind="process.not_running",
                        severity=Severity.CRITICAL,
                        summary=f"{label_name or 'the process'} (pid {pid}{where}) is not running: it has exited "
                        f"(a zombie until its parent reaps it, state {row.stat})",
                        evidence=(*evidence, redact(quote_line(row.line))),
                        data={**data, "stat": row.stat},
                        reader=self.name,
                    )
                )
        return out

    def _stopped(self) -> list[Finding]:
        tally = Tally()
        for name, program in self._programs.items():
            for row in program.rows:
                if row.stat.startswith(("T", "t")):
                    tally.add("process.stopped", row.line, name, program=name)
        out = []
        for _kind, key, count, evidence, _data in tally.items():
            out.append(
                Finding(
                    kind="process.stopped",
                    severity=Severity.WARNING,
                    summary=f"{count} {key} process(es) are stopped (state T): they hold their slots and serve nothing",
                    evidence=evidence,
                    data={"program": key, "count": count},
                    reader=self.name,
                )
            )
        return out

    def _running(self) -> Finding:
        parts = []
        data: dict[str, Any] = {}
        evidence: list[str] = []
        for name, program in self._programs.items():
            masters = program.masters()
            workers = len(program.rows) - len(masters)
            pids = ", ".join(str(m.pid) for m in masters[:3])
            parts.append(f"{name} (pid {pids}" + (f", {workers} children)" if workers else ")"))
            data[name] = {"pids": [m.pid for m in masters[:8]], "children": workers, "processes": len(program.rows)}
            evidence.extend(redact(quote_line(m.line)) for m in masters[:1])
        first = next(iter(self._programs.values())).rows[0].header or self._header_line
        return Finding(
            kind="process.running",
            severity=Severity.INFO,
            summary="running: " + "; ".join(parts),
            evidence=tuple([redact(quote_line(first)), *evidence[: 2 * _KEEP]]),
            data={"programs": data},
            reader=self.name,
        )


_SUPERVISOR_ROW = re.compile(
    r"^\s*(?P<name>[\w.@:-]+)\s+(?P<state>RUNNING|STARTING|BACKOFF|FATAL|EXITED|STOPPED|STOPPING|UNKNOWN)"
    r"(?:\s+(?P<detail>.*))?$"
)
_SUPERVISOR_KIND = {
    "FATAL": ("supervisor.fatal", Severity.CRITICAL, "{name} is FATAL in supervisord ({detail}): it gave up"),
    "BACKOFF": ("supervisor.backoff", Severity.CRITICAL, "{name} keeps exiting: supervisord is in BACKOFF ({detail})"),
    "EXITED": ("supervisor.stopped", Severity.CRITICAL, "{name} has exited ({detail})"),
    "STOPPED": ("supervisor.stopped", Severity.CRITICAL, "{name} is STOPPED in supervisord ({detail})"),
    "UNKNOWN": ("supervisor.stopped", Severity.WARNING, "{name} is in state UNKNOWN in supervisord"),
}


class SupervisorStatus(Reader):
    """``supervisorctl status``: each program's state."""

    name = "supervisor.status"
    title = "supervisorctl status"
    triggers = (
        r"(?m:^[\w.@:-]+[ \t]+(?:RUNNING[ \t]+pid \d+, uptime|FATAL[ \t]|BACKOFF[ \t]|EXITED[ \t]|STOPPED[ \t]"
        r"|STARTING[ \t]*$|STOPPED[ \t]*$))",
    )
    header = r"\bsupervisorctl\b"
    signals: ClassVar[dict[str, Signal]] = {
        "supervisor.fatal": Signal(cause="upstream_down", weight=0.6),
        "supervisor.backoff": Signal(cause="upstream_crashed", weight=0.55),
        "supervisor.stopped": Signal(cause="upstream_down", weight=0.55),
    }

    def __init__(self) -> None:
        self.tally = Tally()
        self._running: list[str] = []

    def feed(self, line: str) -> bool:
        row = _SUPERVISOR_ROW.match(line)
        if row is None:
            return False
        state, name = row.group("state"), row.group("name")
        if state in ("RUNNING", "STARTING", "STOPPING"):
            if len(self._running) < 32:
                self._running.append(name)
            return False
        kind, _, _ = _SUPERVISOR_KIND[state]
        self.tally.add(kind, line, name, state=state, detail=(row.group("detail") or "").strip())
        return False

    def findings(self) -> list[Finding]:
        out = []
        templates = {kind: (sev, text) for kind, sev, text in _SUPERVISOR_KIND.values()}
        for kind, key, count, evidence, data in self.tally.items():
            severity, _ = templates[kind]
            text = _SUPERVISOR_KIND[data["state"]][2]
            out.append(
                Finding(
                    kind=kind,
                    severity=severity,
                    summary=text.format(name=key, detail=data.get("detail") or data["state"]),
                    evidence=evidence,
                    data={**data, "program": key, "count": count},
                    reader=self.name,
                )
            )
        if not out and self._running:
            out.append(
                Finding(
                    kind="supervisor.running",
                    severity=Severity.OK,
                    summary="supervisord: every program is running (" + ", ".join(self._running[:8]) + ")",
                    data={"programs": self._running},
                    reader=self.name,
                )
            )
        return out


_PM2_NAME = re.compile(r'"pid":(?P<pid>\d+),"name":"(?P<name>(?:[^"\\]|\\.)*)","pm2_env":\{')
_PM2_STATUS = re.compile(
    r'"status":"(?P<status>online|stopping|stopped|launching|errored|one-launch-status'
    r'|waiting restart)"'
)
_PM2_BAD = {"errored": Severity.CRITICAL, "stopped": Severity.CRITICAL, "waiting restart": Severity.CRITICAL}


class Pm2List(Reader):
    """``pm2 jlist``: each app's status and restart count (one JSON line; a cut line is read by pattern)."""

    name = "pm2.list"
    title = "pm2 jlist (process list)"
    triggers = (r'"name":"[^"]*","pm2_env":\{',)
    signals: ClassVar[dict[str, Signal]] = {
        "pm2.app_errored": Signal(cause="upstream_crashed", weight=0.55),
        "pm2.app_stopped": Signal(cause="upstream_down", weight=0.55),
    }

    def __init__(self) -> None:
        self._apps: list[dict[str, Any]] = []
        self._line = ""

    def feed(self, line: str) -> bool:
        text = line.strip()
        apps: list[dict[str, Any]] = []
        try:
            parsed = json.loads(text[text.index("[") :]) if "[" in text else None
        except ValueError:
            parsed = None
        if isinstance(parsed, list):
            for app in parsed:
                if not isinstance(app, dict):
                    continue
                raw = app.get("pm2_env")
                env: dict[str, Any] = raw if isinstance(raw, dict) else {}
                apps.append(
                    {
                        "name": str(app.get("name", "?")),
                        "pid": app.get("pid"),
                        "status": str(env.get("status", "?")),
                        "restarts": env.get("restart_time"),
                        "unstable_restarts": env.get("unstable_restarts"),
                    }
                )
        else:  # cut or wrapped: pair names and statuses in order
            names = list(_PM2_NAME.finditer(text))
            statuses = [m.group("status") for m in _PM2_STATUS.finditer(text)]
            for found, status in zip(names, statuses, strict=False):
                apps.append({"name": found.group("name"), "pid": int(found.group("pid")), "status": status})
        if apps:
            self._apps.extend(apps[: 64 - len(self._apps)])
            self._line = line
        return False

    def findings(self) -> list[Finding]:
        if not self._apps:
            return []
        out = []
        short = self._line if len(self._line) <= 300 else self._line[:300] + " …"
        for app in self._apps:
            status = app["status"]
            if status not in _PM2_BAD:
                continue
            kind = "pm2.app_errored" if status in ("errored", "waiting restart") else "pm2.app_stopped"
            restarts = f", {app['restarts']} restarts" if app.get("restarts") else ""
            out.append(
                Finding(
                    kind=kind,
                    severity=_PM2_BAD[status],
                    summary=f"pm2 app {app['name']} is {status}{restarts}",
                    evidence=(redact(short),),
                    data=app,
                    reader=self.name,
                )
            )
        if not out:
            names = ", ".join(f"{a['name']} ({a['status']})" for a in self._apps[:8])
            out.append(
                Finding(
                    kind="pm2.running",
                    severity=Severity.OK,
                    summary=f"pm2: {names}",
                    data={"apps": self._apps},
                    reader=self.name,
                )
            )
        return out


READERS = (ProcessTable, SupervisorStatus, Pm2List)
