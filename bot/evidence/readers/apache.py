"""Apache httpd 2.2 and 2.4 error log: mod_proxy, mod_proxy_fcgi, mod_fcgid/mod_fastcgi, CGI, core, MPM.

Lines are recognised by their message text (``AHnnnnn`` numbers where 2.4 has them, the 2.2 texts
such as ``proxy: HTTP: attempt to connect to ... failed`` otherwise) anywhere in the line, so both
layouts (2.4 ``[module:level] [pid N:tid N] (errno)...: AHnnnnn:`` and 2.2 ``[level] [client IP]
(errno)...: proxy: ...``), journald/Docker prefixes and redacted addresses all work. The APR status in
parentheses is matched by number: ``(111)`` refused, ``(110)``/``(70007)`` timeout, ``(104)`` reset,
``(70014)``/``(20014)`` end of file, ``(13)`` permission, ``(EAI n)`` resolver.

Apache's statuses differ from nginx's: a failed connect is a **503** (AH01114/AH01079), a backend read
timeout in mod_proxy_http is a **502** (AH01102 + ``Error reading from remote server``), mod_proxy_fcgi
answers 504 only for a poll timeout (AH01075 with ``(70007)``). Message texts and statuses:
shared/reference/error-messages.md §2; real lines in tests/fixtures/apache/.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from bot.core.models import Severity, Signal
from bot.evidence.reader import LinePattern, PatternReader

#: A connect attempt: 2.4 ``AH00957: HTTP: attempt to connect to``, ``AH02454: FCGI: attempt to connect
#: to Unix domain socket``, 2.2 ``proxy: HTTP: attempt to connect to``.
_CONNECT = r"(?:AH00957: |AH02454: |proxy: )[A-Za-z]+: attempt to connect to "
#: An APR status prefix ``(111)Connection refused: `` (2.4 puts it before ``[client ...]``).
_TIMEOUT_ERR = r"\((?:70007|110|10060)\)"
_EOF_ERR = r"\((?:104|70014|20014|32|10054)\)"

#: A line cut right after its APR status (``... (70007)The timeout specified has expired:``).
_DANGLING = re.compile(r"\((?:\d+|EAI -?\d+|OS \d+)\)[^():\n]{3,80}:\s*$")
_ERRNO = re.compile(r"\((\d+|EAI -?\d+|OS \d+)\)")
_TARGET_RES = (
    re.compile(r"attempt to connect to (?:Unix domain socket )?(\S+)"),
    re.compile(r"remote server ([^\s,]+:\d+)"),
    re.compile(r"failed to make connection to backend: (\S+)"),
    re.compile(r"(?:disabling worker|disabled connection|failed to acquire connection) for \(([^)\s]+)"),
    re.compile(r"Error dispatching request to (\S+?):?(?:\s|$)"),
    re.compile(r"(balancer://[^:\s]+)"),
    re.compile(r"DNS lookup failure for: (\S+)"),
    re.compile(r"pass request body failed to (\S+)"),
    re.compile(r"\[remote ([^\]]+)\]"),
)
_RETURNED_BY = re.compile(r"returned by (\S+?)(?:,|$|\s)")
_INVALID_COMMAND = re.compile(r"Invalid command '([^']*)'")
_HTACCESS = re.compile(r"(\S*\.htaccess):? ")
_SCRIPT = re.compile(r"(?:before headers: |returning headers: |from script '|CGI script )([^',\s]+)")
_MODULE = re.compile(r"\[([a-z_0-9]+):(?:emerg|alert|crit|error|warn|notice|info)\]")


def _p(kind: str, trigger: str, summary: str, severity: Severity = Severity.CRITICAL, **kw: Any) -> LinePattern:
    return LinePattern(f"apache.{kind}", trigger, summary, severity, **kw)


class ApacheErrorLog(PatternReader):
    """Apache httpd error_log lines that explain a 5xx (or a 403 from file permissions)."""

    name = "apache.error"
    title = "Apache httpd error log (2.2 and 2.4)"
    # Ordered: the first matching pattern wins, so errno-specific forms come before general texts.
    patterns = (
        # -- connecting to the backend ---------------------------------------------------------
        _p(
            "backend_permission_denied",
            r"\((?:13|10013)\)[^\n]*?" + _CONNECT,
            "{count}× permission denied connecting to backend {target}",
            key="target",
        ),
        _p(
            "port_exhaustion",
            r"\(99\)[^\n]*?" + _CONNECT,
            "{count}× no free local port to reach {target} (EADDRNOTAVAIL)",
            key="target",
        ),
        _p(
            "backend_connect_timeout",
            _TIMEOUT_ERR + r"[^\n]*?" + _CONNECT,
            "{count}× connect to backend {target} timed out",
            key="target",
        ),
        _p(
            "backend_unreachable",
            r"\((?:101|112|113|10051|10065)\)[^\n]*?" + _CONNECT,
            "{count}× backend {target} unreachable (no route / network down)",
            key="target",
        ),
        _p(
            "backend_refused",
            _CONNECT,  # logged only when the attempt failed; "failed" may be wrapped onto the next line
            "{count}× connection to backend {target} failed (refused or socket missing)",
            key="target",
        ),
        _p(
            "backend_connect_failed",
            r"failed to make connection to backend|AH0(?:1114|1079|0896): failed to make",
            "{count}× could not connect to backend {target} (503)",
            key="target",
        ),
        _p(
            "worker_disabled",
            r"ap_proxy_connect_backend disabling worker|AH00940: |proxy: [A-Za-z]+: disabled connection for",
            "{count}× proxy worker for {target} put in error state (503 until retry= expires)",
            key="target",
        ),
        _p(
            "balancer_all_down",
            r"All workers are in error state",
            "{count}× every balancer member of {target} is in error state",
            key="target",
        ),
        _p(
            "connection_pool_exhausted",
            r"AH00941: |failed to acquire connection for \(",
            "{count}× no free connection in the proxy pool for {target} (max= reached)",
            key="target",
        ),
        # -- reading the backend's answer -----------------------------------------------------
        _p(
            "backend_timeout",
            _TIMEOUT_ERR + r"[^\n]*(?:error reading status line|AH01102|AH01075|Error dispatching request"
            r"|read response failed|can't receive header|pass request body failed|AH01084)",
            "{count}× backend {target} did not answer within the proxy timeout",
            key="target",
        ),
        _p(
            "backend_reset",
            _EOF_ERR + r"[^\n]*(?:error reading status line|AH01102|AH01075|Error dispatching request"
            r"|read response failed)",
            "{count}× backend {target} closed or reset the connection before answering",
            key="target",
        ),
        _p(
            "backend_invalid_status_line",
            r"\(22\)[^\n]*(?:error reading status line|AH01102)",
            "{count}× backend {target} answered with something that is not an HTTP status line",
            key="target",
        ),
        _p(
            "backend_read_error",
            r"error reading status line from remote server|AH01102: |AH01075: ",
            "{count}× could not read a response from backend {target}",
            key="target",
        ),
        _p("dns_failure", r"DNS lookup failure for", "{count}× cannot resolve backend host {target}", key="target"),
        _p(
            "backend_tls",
            r"Error during SSL Handshake with remote server|AH02003: |SSL Proxy connect failed"
            r"|SSL Proxy: Peer certificate|AH0200[45]: |Certificate Verification: Error[^\n]*\[remote "
            r"|\[remote [^\n]*Certificate Verification: Error",
            "{count}× TLS handshake with backend {target} failed",
            key="target",
        ),
        _p(
            "ssl_proxy_not_enabled",
            r"AH01961: |SSL Proxy requested for[^\n]*but not enabled",
            "{count}× https:// backend configured but SSLProxyEngine is off",
        ),
        _p(
            "proxy_error_reason",
            r"AH00898: |proxy: Error reading from remote server returned by",
            "{count}× proxy error page sent for {path}",
            Severity.WARNING,
            key="path",
        ),
        _p(
            "no_protocol_handler",
            r"AH01144: |No protocol handler was valid for the URL",
            "{count}× no proxy module loaded for the backend URL scheme",
        ),
        # -- FastCGI --------------------------------------------------------------------------
        _p(
            "php_fatal",
            r"(?:Got error '|mod_fcgid: stderr: |FastCGI: server [^\n]*stderr: )[^\n]*"
            r"(?:PHP (?:Fatal|Parse) error|Uncaught |Allowed memory size)",
            "{count}× PHP fatal error reported through FastCGI",
        ),
        _p(
            "primary_script_unknown",
            r"Got error 'Primary script unknown",
            "{count}× php-fpm: Primary script unknown (SCRIPT_FILENAME/DocumentRoot wrong)",
            Severity.WARNING,
        ),
        _p(
            "fcgi_stderr",
            r"AH01071: |Got error 'PHP message",
            "{count}× FastCGI backend wrote to stderr (warnings or notices)",
            Severity.WARNING,
        ),
        _p(
            "fcgi_header_read_failed",
            r"AH01067: |Failed to read FastCGI header",
            "{count}× FastCGI backend closed before sending a header",
        ),
        _p(
            "fcgi_bad_response",
            r"AH01068: |Got bogus version|AH01070: |Error parsing script headers",
            "{count}× FastCGI backend sent an invalid response",
        ),
        _p(
            "fcgid_no_slot",
            r"mod_fcgid: can't apply process slot",
            "{count}× mod_fcgid has no free process slot (FcgidMaxProcesses reached)",
        ),
        _p(
            "fcgi_read_timeout",
            r"mod_fcgid: read data timeout|took longer than busy timeout|FastCGI: comm with server[^\n]*idle timeout",
            "{count}× FastCGI application did not answer in time",
        ),
        _p(
            "fcgi_connection_closed",
            r"mod_fcgid: error reading data|FastCGI: incomplete headers|mod_fcgid: process [^\n]*exit\([^\n]*signal",
            "{count}× FastCGI application closed the connection or died mid-request",
        ),
        _p(
            "fcgi_connect_failed",
            r"FastCGI: failed to connect to server|mod_fcgid: can't connect",
            "{count}× cannot connect to the FastCGI application",
        ),
        # -- CGI / script output ----------------------------------------------------------------
        _p(
            "script_timeout",
            r"Script timed out before returning headers|Timeout waiting for output from CGI",
            "{count}× script {script} did not return headers in time",
            key="script",
        ),
        _p(
            "malformed_header",
            r"malformed header from script",
            "{count}× script {script} sent a malformed header",
            key="script",
        ),
        _p(
            "script_no_headers",
            r"End of script output before headers|Premature end of script headers",
            "{count}× script {script} ended before sending headers",
            key="script",
        ),
        # -- configuration --------------------------------------------------------------------
        _p(
            "htaccess_unreadable",
            r"pcfg_openfile: unable to check htaccess file|AH00529: ",
            "{count}× .htaccess not readable by the server (permissions)",
        ),
        _p(
            "invalid_command",
            r"Invalid command '[^']*', perhaps misspelled",
            "{count}× unknown directive '{command}' (module not loaded or typo)",
            key="command",
        ),
        _p("htaccess_error", r"/\.htaccess: ", "{count}× .htaccess rejected: {htaccess}", key="htaccess"),
        _p(
            "redirect_limit",
            r"AH00124: |exceeded the limit of \d+ internal redirects",
            "{count}× request exceeded the internal redirect limit (rewrite loop)",
        ),
        _p(
            "config_syntax_error",
            r"AH00526: |Syntax error on line \d+ of ",
            "Apache refused its configuration (syntax error)",
        ),
        # -- permissions and resources ----------------------------------------------------------
        _p(
            "search_permission_missing",
            r"AH00035: |because search permissions are missing on a component of the path",
            "{count}× a directory on the path is not searchable by the server user",
        ),
        _p(
            "file_permission_denied",
            r"AH00132: |file permissions deny server access",
            "{count}× file permissions deny the server user",
        ),
        _p(
            "max_request_workers",
            r"server reached Max(?:RequestWorkers|Clients) setting|scoreboard is full, not at MaxRequestWorkers",
            "Apache reached MaxRequestWorkers/MaxClients: new connections wait in the listen queue",
        ),
        _p(
            "fd_exhaustion",
            r"\((?:23|24)\)Too many open files",
            "{count}× out of file descriptors (Too many open files)",
        ),
        _p("disk_full", r"\(28\)No space left on device", "{count}× write failed: no space left on device"),
        _p(
            "child_crashed",
            r"exit signal Segmentation fault|exit signal Bus error|exit signal Aborted",
            "{count}× Apache child process crashed",
        ),
    )
    signals: ClassVar[dict[str, Signal]] = {
        "apache.backend_permission_denied": Signal(cause="permission_denied", weight=0.9),
        "apache.port_exhaustion": Signal(cause="port_exhaustion", weight=0.9),
        "apache.backend_connect_timeout": Signal(cause="upstream_connect_timeout", weight=0.85),
        "apache.backend_unreachable": Signal(cause="upstream_down", weight=0.7),
        "apache.backend_refused": Signal(cause="upstream_down", weight=0.85),
        # The companion line of a failed connect says no reason: weaker than the line that does.
        "apache.backend_connect_failed": Signal(cause="upstream_down", weight=0.5),
        "apache.worker_disabled": Signal(cause="upstream_down", weight=0.6),
        "apache.balancer_all_down": Signal(cause="upstream_down", weight=0.75),
        "apache.connection_pool_exhausted": Signal(cause="worker_saturation", weight=0.75),
        "apache.backend_timeout": Signal(cause="upstream_timeout", weight=0.85),
        "apache.backend_reset": Signal(cause="upstream_crashed", weight=0.8),
        "apache.backend_invalid_status_line": Signal(cause="upstream_bad_response", weight=0.6),
        "apache.backend_read_error": Signal(cause="upstream_crashed", weight=0.5),
        "apache.dns_failure": Signal(cause="dns_failure", weight=0.9),
        "apache.backend_tls": Signal(cause="upstream_tls_error", weight=0.88),
        "apache.ssl_proxy_not_enabled": Signal(cause="config_error", weight=0.8),
        "apache.proxy_error_reason": Signal(cause="upstream_crashed", weight=0.3),
        "apache.no_protocol_handler": Signal(cause="config_error", weight=0.8),
        "apache.php_fatal": Signal(cause="app_exception", weight=0.85),
        "apache.primary_script_unknown": Signal(cause="config_error", weight=0.6),
        "apache.fcgi_header_read_failed": Signal(cause="upstream_crashed", weight=0.8),
        "apache.fcgi_bad_response": Signal(cause="upstream_bad_response", weight=0.75),
        "apache.fcgid_no_slot": Signal(cause="worker_saturation", weight=0.85),
        "apache.fcgi_read_timeout": Signal(cause="upstream_timeout", weight=0.8),
        "apache.fcgi_connection_closed": Signal(cause="upstream_crashed", weight=0.75),
        "apache.fcgi_connect_failed": Signal(cause="upstream_down", weight=0.8),
        "apache.script_timeout": Signal(cause="upstream_timeout", weight=0.85),
        "apache.malformed_header": Signal(cause="upstream_bad_response", weight=0.8),
        "apache.script_no_headers": Signal(cause="app_exception", weight=0.5),
        "apache.htaccess_unreadable": Signal(cause="permission_denied", weight=0.85),
        "apache.invalid_command": Signal(cause="config_error", weight=0.88),
        "apache.htaccess_error": Signal(cause="config_error", weight=0.85),
        "apache.redirect_limit": Signal(cause="config_error", weight=0.85),
        "apache.config_syntax_error": Signal(cause="config_error", weight=0.7),
        "apache.search_permission_missing": Signal(cause="permission_denied", weight=0.85),
        "apache.file_permission_denied": Signal(cause="permission_denied", weight=0.85),
        "apache.max_request_workers": Signal(cause="worker_saturation", weight=0.8),
        "apache.fd_exhaustion": Signal(cause="fd_exhaustion", weight=0.9),
        "apache.disk_full": Signal(cause="disk_full", weight=0.9),
        "apache.child_crashed": Signal(cause="upstream_crashed", weight=0.5),
    }

    def __init__(self) -> None:
        super().__init__()
        self._dangling: str | None = None

    def feed(self, line: str) -> bool:
        """Read a line; a line that ends right after its APR status is read together with the next one.

        Pasted logs are often wrapped after ``(70007)The timeout specified has expired:``; the message
        that says what timed out is then on the next line. The two are matched as one text, and the
        first of them (timestamp and status, verbatim) is quoted as evidence.
        """
        if self._dangling is not None:
            first, self._dangling = self._dangling, None
            if not self._read(f"{first} {line.strip()}", first):
                return self.feed(line)
            return False
        if _DANGLING.search(line):
            self._dangling = line
            return True
        self._read(line, line)
        return False

    def end_block(self) -> None:
        if self._dangling is not None:
            line, self._dangling = self._dangling, None
            self._read(line, line)

    def _read(self, text: str, evidence: str) -> bool:
        """Tally the first pattern matching ``text``, quoting ``evidence``; False when none matches."""
        return self.tally_first(text, evidence) is not None

    def extract(self, pattern: LinePattern, detail: re.Pattern[str] | None, line: str) -> dict[str, Any]:
        data: dict[str, Any] = {}
        errno = _ERRNO.search(line)
        if errno:
            data["apr_status"] = errno.group(1)
        module = _MODULE.search(line)
        if module:
            data["module"] = module.group(1)
        for rx in _TARGET_RES:
            found = rx.search(line)
            if found:
                data["target"] = found.group(1).rstrip(",:")
                break
        returned = _RETURNED_BY.search(line)
        if returned:
            data["path"] = returned.group(1)
        kind = pattern.kind
        if kind == "apache.invalid_command":
            found = _INVALID_COMMAND.search(line)
            if found:
                data["command"] = found.group(1)
        elif kind == "apache.htaccess_error":
            found = _HTACCESS.search(line)
            if found:
                data["htaccess"] = found.group(1)
        elif kind in {"apache.script_timeout", "apache.malformed_header", "apache.script_no_headers"}:
            found = _SCRIPT.search(line)
            if found:
                data["script"] = found.group(1)
        return data


#: Also select lines cut right after their APR status, so :meth:`ApacheErrorLog.feed` can join them.
ApacheErrorLog.triggers = (*ApacheErrorLog.triggers, r"(?m:\((?:\d+|EAI -?\d+)\)[A-Za-z ,.'-]{3,80}:[ \t]*$)")

READERS = (ApacheErrorLog,)
