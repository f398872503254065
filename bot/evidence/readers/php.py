"""PHP: the php-fpm master log, the php-fpm slowlog and PHP's own error messages.

* :class:`PhpFpmLog` reads the master's log (``[30-Nov-2026 05:02:50] WARNING: [pool www] ...``, or the
  same text after a journald/Docker prefix): workers exhausted (``server reached pm.max_children
  setting`` for pm=dynamic/static, ``server reached max_children setting`` for pm=ondemand, ``seems
  busy``), requests killed by ``request_terminate_timeout`` (``execution timed out``), slow requests
  (``executing too slow``), children that died on a signal, and start-up failures (``unable to bind
  listening socket``, ``FPM initialization failed``). A child that ``exited on signal 9`` is an OOM-kill
  candidate unless php-fpm itself had just terminated that pid for running too long; SIGSEGV/SIGBUS/
  SIGABRT are crashes.
* :class:`PhpFpmSlowlog` reads the slowlog's stacks (``script_filename = ...`` then
  ``[0x...] curl_exec() /path:line`` frames, innermost first). The innermost frame that waits on
  something names what the slow request waited on: ``curl_exec()`` and friends → an outside service,
  ``PDOStatement->execute()``/``mysqli_query()``/``pg_query()`` (printed as ``execute()``/``query()`` by
  PHP 7+) → the database.
* :class:`PhpErrors` reads PHP's fatal errors wherever they are relayed: the PHP error_log, nginx
  ``FastCGI sent in stderr: "PHP message: ..."``, Apache ``AH01071: Got error 'PHP message: ...'``,
  php-fpm ``child N said into stderr``, the CLI. An ``Uncaught SomeException`` is weighted below a plain
  fatal error because its message often names the real cause (a refused database connection, an
  outside API timing out) that the database and outbound readers recognise on the same line.

Message texts: shared/reference/error-messages.md §4.1 (php-src ``sapi/fpm``); fixtures captured from
php-fpm 8.2.36 and the php 8.2 CLI on this machine, see tests/fixtures/apps/SOURCES.md.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal
from bot.evidence.reader import LinePattern, PatternReader, Reader, Tally, tally_findings

_POOL = re.compile(r"\[pool ([^\]\s]+)\]")
_CHILD = re.compile(r"child (\d+)")
_SIGNAL = re.compile(r"exited on signal (\d+)(?: \((\w+))?")
_SCRIPT = re.compile(r"script '([^']*)'")
_LIMIT = re.compile(r"max_children setting \((\d+)\)")
_BIND_ADDRESS = re.compile(r"(?:for address|listen on) '?([^':\s]+(?::\d+)?)'?")
#: Pids php-fpm terminated for running too long, remembered so their signal exit is not called a crash.
_MAX_TIMED_OUT_PIDS = 512


def _fpm(kind: str, trigger: str, summary: str, severity: Severity = Severity.CRITICAL, **kw: Any) -> LinePattern:
    return LinePattern(f"php_fpm.{kind}", trigger, summary, severity, **kw)


class PhpFpmLog(PatternReader):
    name = "php_fpm.log"
    title = "php-fpm master log"
    patterns = (
        _fpm(
            "max_children",
            r"server reached (?:pm\.)?max_children setting",
            "{count}× php-fpm pool {pool} reached max_children ({limit}): every worker busy",
        ),
        _fpm(
            "max_processes",
            r"maximum number of processes has been reached",
            "{count}× php-fpm reached process.max: no worker could be started",
        ),
        _fpm(
            "seems_busy",
            r"seems busy \(you may need to increase pm\.start_servers",
            "{count}× php-fpm pool {pool} seems busy (no idle workers, spawning more)",
            Severity.WARNING,
        ),
        _fpm(
            "execution_timed_out",
            r"\) execution timed out \(",
            "{count}× php-fpm killed a request after request_terminate_timeout (e.g. {script})",
        ),
        _fpm(
            "slow_request",
            r"\) executing too slow \(",
            "{count}× requests slower than request_slowlog_timeout (e.g. {script})",
            Severity.WARNING,
        ),
        _fpm(
            "child_killed",
            r"exited on signal 9\b",
            "{count}× php-fpm worker killed by SIGKILL (OOM killer or an operator)",
        ),
        _fpm(
            "child_crashed",
            r"exited on signal (?:4|6|7|8|11)\b",
            "{count}× php-fpm worker crashed on signal {signal} ({signal_name})",
        ),
        _fpm(
            "child_signalled",
            r"exited on signal \d+",
            "{count}× php-fpm worker ended by signal {signal} ({signal_name})",
            Severity.INFO,
        ),
        _fpm(
            "child_exit_error",
            r"exited with code [1-9]\d*",
            "{count}× php-fpm worker exited with an error code",
            Severity.WARNING,
        ),
        _fpm(
            "failed_threshold",
            r"failed processes threshold \(",
            "php-fpm restarted itself after too many crashed workers (emergency_restart_threshold)",
        ),
        _fpm(
            "bind_failed",
            r"unable to bind listening socket for address|bind\(\) for address \S+ failed",
            "php-fpm cannot listen on {address}: the address is in use or its directory is missing",
        ),
        _fpm(
            "already_listening",
            r"FPM instance seems to already listen on",
            "another php-fpm already listens on {address}",
        ),
        _fpm(
            "socket_permission",
            r"failed to chown\(\) the socket",
            "php-fpm could not set the owner of its socket",
            Severity.WARNING,
        ),
        _fpm(
            "config_invalid",
            r"failed to post process the configuration|failed to (?:load|open) configuration file"
            r"|\[pool [^\]]+\] (?:user|group) has not been defined|child failed to initialize",
            "php-fpm rejected its configuration",
        ),
        _fpm("init_failed", r"FPM initialization failed", "php-fpm failed to start (FPM initialization failed)"),
    )
    signals: ClassVar[dict[str, Signal]] = {
        "php_fpm.max_children": Signal(cause="worker_saturation", weight=0.85),
        "php_fpm.max_processes": Signal(cause="worker_saturation", weight=0.8),
        "php_fpm.seems_busy": Signal(cause="worker_saturation", weight=0.4),
        "php_fpm.execution_timed_out": Signal(cause="upstream_timeout", weight=0.8),
        "php_fpm.slow_request": Signal(cause="upstream_timeout", weight=0.3),
        "php_fpm.child_killed": Signal(cause="oom_kill", weight=0.6),
        "php_fpm.child_crashed": Signal(cause="upstream_crashed", weight=0.8),
        "php_fpm.child_exit_error": Signal(cause="upstream_crashed", weight=0.35),
        "php_fpm.failed_threshold": Signal(cause="upstream_crashed", weight=0.75),
        "php_fpm.bind_failed": Signal(cause="config_error", weight=0.8),
        "php_fpm.already_listening": Signal(cause="config_error", weight=0.75),
        "php_fpm.socket_permission": Signal(cause="permission_denied", weight=0.5),
        "php_fpm.config_invalid": Signal(cause="config_error", weight=0.75),
        "php_fpm.init_failed": Signal(cause="config_error", weight=0.5),
    }

    def __init__(self) -> None:
        super().__init__()
        self._timed_out: OrderedDict[str, None] = OrderedDict()

    def feed(self, line: str) -> bool:
        if "exited on signal" in line:
            child = _CHILD.search(line)
            if child and child.group(1) in self._timed_out:
                # php-fpm's own request_terminate_timeout kill: already counted as execution_timed_out.
                self._timed_out.pop(child.group(1), None)
                return False
        return super().feed(line)

    def extract(self, pattern: LinePattern, detail: re.Pattern[str] | None, line: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        pool = _POOL.search(line)
        if pool:
            data["pool"] = pool.group(1)
        script = _SCRIPT.search(line)
        if script:
            data["script"] = script.group(1)
        limit = _LIMIT.search(line)
        if limit:
            data["limit"] = int(limit.group(1))
        signal = _SIGNAL.search(line)
        if signal:
            data["signal"] = int(signal.group(1))
            data["signal_name"] = signal.group(2)
        address = _BIND_ADDRESS.search(line)
        if address and pattern.kind in ("php_fpm.bind_failed", "php_fpm.already_listening"):
            data["address"] = address.group(1)
        return data

    def on_match(self, pattern: LinePattern, line: str, data: dict[str, Any]) -> None:
        if pattern.kind == "php_fpm.execution_timed_out":
            child = _CHILD.search(line)
            if child:
                self._timed_out[child.group(1)] = None
                while len(self._timed_out) > _MAX_TIMED_OUT_PIDS:
                    self._timed_out.popitem(last=False)


# -- slowlog -----------------------------------------------------------------------------------------

_FRAME = re.compile(r"\[0x[0-9a-fA-F]{6,16}\] ([\w\\:>{}-]+)\(\) ")
#: Functions that wait on another host over HTTP or a raw socket.
_EXTERNAL_CALLS = frozenset(
    {
        "curl_exec",
        "curl_multi_exec",
        "curl_multi_select",
        "curl_multi_info_read",
        "fsockopen",
        "pfsockopen",
        "stream_socket_client",
        "stream_select",
        "file_get_contents",
        "__doRequest",
        "__soapCall",
        "SoapClient->__call",
        "get_headers",
        "gethostbyname",
        "dns_get_record",
    }
)
#: Functions that wait on a database (PHP 7+ prints methods without their class: ``execute()``).
_DATABASE_CALLS = frozenset(
    {
        "execute",
        "query",
        "exec",
        "prepare",
        "fetch",
        "fetchAll",
        "mysqli_query",
        "mysqli_real_query",
        "mysqli_stmt_execute",
        "mysqli_multi_query",
        "mysql_query",
        "mysql_unbuffered_query",
        "pg_query",
        "pg_query_params",
        "pg_execute",
        "pg_prepare",
        "pg_get_result",
        "oci_execute",
        "sqlsrv_query",
        "sqlsrv_execute",
        "PDOStatement->execute",
        "PDO->query",
        "PDO->exec",
        "mysqli->query",
        "runQueryCallback",
    }
)


def _describe_slowlog(kind: str, _key: str, count: int, data: dict[str, Any]) -> tuple[str, Severity]:
    if kind == "php_fpm.slowlog_stack":
        return f"{count} slow-request stacks in the php-fpm slowlog", Severity.INFO
    waited_on = "an outside service" if kind == "php_fpm.slowlog_external" else "the database"
    return f"{count} slow requests were waiting in {data.get('function')}() on {waited_on}", Severity.CRITICAL


class PhpFpmSlowlog(Reader):
    """Stacks of the php-fpm slowlog: what the slow requests were waiting on."""

    name = "php_fpm.slowlog"
    title = "php-fpm slowlog stacks"
    triggers = (r"script_filename = ", r"\[0x[0-9a-fA-F]{6,16}\] [\w\\:>{}-]+\(\) ")
    signals: ClassVar[dict[str, Signal]] = {
        "php_fpm.slowlog_external": Signal(cause="external_dependency", weight=0.75),
        "php_fpm.slowlog_db": Signal(cause="db_slow_query", weight=0.75),
    }

    def __init__(self) -> None:
        self.tally = Tally()
        self._decided = True
        self._script: str | None = None

    def feed(self, line: str) -> bool:
        if "script_filename = " in line:
            self._decided = False
            self._script = line.split("script_filename = ", 1)[1].strip()
            self.tally.add("php_fpm.slowlog_stack", line)
            return False
        frame = _FRAME.search(line)
        if frame is None or self._decided:
            return False
        function = frame.group(1).rsplit("::", 1)[-1]
        if function in _EXTERNAL_CALLS:
            self._decided = True
            self.tally.add("php_fpm.slowlog_external", line, function=function, script=self._script)
        elif function in _DATABASE_CALLS or function.rsplit("->", 1)[-1] in _DATABASE_CALLS:
            self._decided = True
            self.tally.add("php_fpm.slowlog_db", line, function=function, script=self._script)
        return False

    def findings(self) -> list[Finding]:
        items = [
            (kind, key, count, evidence, {k: v for k, v in data.items() if v is not None})
            for kind, key, count, evidence, data in self.tally.items()
        ]
        return tally_findings(self.name, items, _describe_slowlog)


# -- PHP errors --------------------------------------------------------------------------------------

_ERROR_CLASS = re.compile(r"Uncaught ([\w\\]+)")
_MESSAGE = re.compile(r"(?:PHP )?(?:Fatal|Parse) error:\s+(.{0,200})")
#: Engine errors that mean the code itself is broken (not a failing dependency).
_ENGINE_ERRORS = (
    r"Error|TypeError|ArgumentCountError|ParseError|ValueError|DivisionByZeroError|ArithmeticError"
    r"|UnhandledMatchError|CompileError"
)


def _php(kind: str, trigger: str, summary: str, severity: Severity = Severity.CRITICAL, **kw: Any) -> LinePattern:
    return LinePattern(f"php.{kind}", trigger, summary, severity, **kw)


class PhpErrors(PatternReader):
    name = "php.error"
    title = "PHP fatal errors (error_log, FastCGI stderr, CLI)"
    patterns = (
        _php("memory_exhausted", r"Allowed memory size of \d+ bytes exhausted", "{count}× PHP memory_limit exhausted"),
        _php(
            "max_execution_time",
            r"Maximum execution time of \d+(?:\.\d+)? seconds? exceeded",
            "{count}× PHP max_execution_time exceeded",
        ),
        _php(
            "parse_error",
            r"PHP Parse error:|Parse error:\s+syntax error|<b>Parse error</b>",
            "{count}× PHP parse error: {message}",
        ),
        _php(
            "fatal_error",
            r"Fatal error:\s+Uncaught (?:" + _ENGINE_ERRORS + r"):",
            "{count}× PHP fatal error: {message}",
        ),
        _php(
            "uncaught_exception",
            r"Fatal error:\s+Uncaught [\w\\]+",
            "{count}× uncaught PHP exception {exception}: {message}",
        ),
        _php(
            "fatal_error",
            r"PHP Fatal error:|<b>Fatal error</b>:|Fatal error:\s+(?:Call to|Class ['\"]?\S+ not found"
            r"|Cannot redeclare|Interface ['\"]?\S+ not found|Trait ['\"]?\S+ not found|Failed opening required)",
            "{count}× PHP fatal error: {message}",
        ),
    )
    signals: ClassVar[dict[str, Signal]] = {
        "php.memory_exhausted": Signal(cause="app_exception", weight=0.8),
        "php.max_execution_time": Signal(cause="upstream_timeout", weight=0.7),
        "php.parse_error": Signal(cause="app_exception", weight=0.85),
        "php.fatal_error": Signal(cause="app_exception", weight=0.8),
        "php.uncaught_exception": Signal(cause="app_exception", weight=0.6),
    }

    def extract(self, pattern: LinePattern, detail: re.Pattern[str] | None, line: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        found = _ERROR_CLASS.search(line)
        if found:
            data["exception"] = found.group(1).lstrip("\\")
        message = _MESSAGE.search(line)
        if message:
            data["message"] = message.group(1).strip().rstrip('"\\')
        return data


READERS = (PhpFpmLog, PhpFpmSlowlog, PhpErrors)
