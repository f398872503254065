"""Configuration tests: ``nginx -t``, ``apachectl configtest``/``apache2 -t``, ``php-fpm -t``, ``haproxy -c``.

Only the *framing* lines each test prints are matched here, so a failure is one finding of kind
``config_test.<program>_failed`` and a pass one ``config_test.<program>_ok``:

* nginx (``src/core/nginx.c``): ``nginx: the configuration file F syntax is ok`` and ``nginx:
  configuration file F test is successful`` / ``... test failed``. The ``[emerg]`` line that explains
  a failure is the nginx error-log reader's (``nginx.config_emerg``); under a ``### $ nginx -t``
  header this reader copies its text into the finding's data instead of emitting a second kind.
* Apache httpd (``server/config.c``, ``support/apachectl``): ``AH00526: Syntax error on line N of F:``
  followed by the reason on the next line, ``httpd: Syntax error on line N of F: ...`` (one line,
  from an ``Include``), ``Action 'configtest' failed.``, and ``Syntax OK``.
* PHP-FPM (``sapi/fpm/fpm/fpm_conf.c``): ``ERROR: failed to load configuration file 'F'``,
  ``ERROR: failed to post process the configuration`` and ``NOTICE: configuration file F test is
  successful``. ``FPM initialization failed`` is also printed when a normal start fails (a busy
  port), so it is left to the PHP-FPM log reader.
* HAProxy (``src/haproxy.c``, ``src/cfgparse.c``): ``Fatal errors found in configuration.``,
  ``Error(s) found in configuration file : F`` and ``Configuration file is valid``.

Captured outputs (nginx 1.22, Apache 2.4, PHP-FPM 8.2, HAProxy 2.6): tests/fixtures/probes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import ClassVar

from bot.core.models import Finding, Severity, Signal, quote_line
from bot.core.redact import redact
from bot.evidence.reader import Reader

MAX_DETAILS = 3


@dataclass(frozen=True)
class _Frame:
    program: str
    ok: bool
    trigger: str

    def compiled(self) -> re.Pattern[str]:
        return re.compile(self.trigger)


_FRAMES = (
    _Frame("nginx", False, r"nginx: [^\n]*configuration file \S+ test failed"),
    _Frame("nginx", True, r"nginx: [^\n]*configuration file \S+ (?:test is successful|syntax is ok)"),
    _Frame("php_fpm", False, r"ERROR: failed to (?:load configuration file|post process the configuration)"),
    _Frame("php_fpm", True, r"NOTICE: configuration file \S+ test is successful"),
    _Frame("apache", False, r"AH00526: Syntax error on line \d+"),
    _Frame("apache", False, r"\b(?:httpd|apache2?): Syntax error on line \d+ of "),
    _Frame("apache", False, r"Action '(?:configtest|graceful|restart|start)' failed"),
    _Frame("apache", True, r"(?m:^[ \t]*Syntax OK[ \t\r]*$)"),
    _Frame("haproxy", False, r"Fatal errors found in configuration|Error\(s\) found in configuration file"),
    _Frame("haproxy", True, r"Configuration file is valid"),
)


@dataclass
class _Result:
    lines: list[str] = field(default_factory=list)
    count: int = 0
    files: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)


_COMPILED = tuple((frame, frame.compiled()) for frame in _FRAMES)
#: Lines that explain a failure, read only inside a config-test block or right after an AH00526 line.
_DETAIL = re.compile(
    r"\[emerg\]|\[ALERT\]|\bALERT: |\bERROR: |Invalid command|Syntax error|not closed|"
    r"unknown (?:directive|entry|keyword)|Cannot load|could not|failed",
    re.I,
)
_FILE = re.compile(r"(?:configuration file|of|file\s*:)\s+'?(?P<file>/[^\s:']+)")
_PROGRAM_TITLES = {"nginx": "nginx -t", "apache": "Apache configtest", "php_fpm": "php-fpm -t", "haproxy": "haproxy -c"}


class ConfigTest(Reader):
    """Pass/fail of the configuration tests of nginx, Apache httpd, PHP-FPM and HAProxy."""

    name = "config_test.check"
    title = "Configuration tests (nginx -t, apachectl configtest, php-fpm -t, haproxy -c)"
    triggers = tuple(frame.trigger for frame in _FRAMES)
    header = (
        r"nginx\s+-[tT]\b|apache(?:2|2ctl|ctl)?\s+(?:-t\b|configtest)|httpd\s+-t\b"
        r"|php-fpm[\d.]*\s+-t\b|haproxy\s+.*-c\b"
    )
    signals: ClassVar[dict[str, Signal]] = {
        "config_test.nginx_failed": Signal(cause="config_error", weight=0.7),
        "config_test.apache_failed": Signal(cause="config_error", weight=0.75),
        "config_test.php_fpm_failed": Signal(cause="config_error", weight=0.75),
        "config_test.haproxy_failed": Signal(cause="config_error", weight=0.75),
    }

    def __init__(self) -> None:
        self._results: dict[tuple[str, bool], _Result] = {}
        self._details: list[str] = []
        self._in_block = False
        self._want_reason = False

    def start_block(self, header: str) -> None:
        self._in_block = True
        self._details = []

    def end_block(self) -> None:
        self._attach_details()
        self._in_block = False
        self._want_reason = False
        self._details = []

    def feed(self, line: str) -> bool:
        for frame, pattern in _COMPILED:
            if not pattern.search(line):
                continue
            slot = self._results.setdefault((frame.program, frame.ok), _Result())
            slot.count += 1
            if len(slot.lines) < 3:
                slot.lines.append(quote_line(line))
            found = _FILE.search(line)
            if found and found.group("file") not in slot.files:
                slot.files.append(found.group("file"))
            if not frame.ok:
                self._attach_details(frame.program)
            # Apache names the failing directive on the line after AH00526 / "Syntax error on line".
            self._want_reason = frame.program == "apache" and not frame.ok and line.rstrip().endswith(":")
            return self._want_reason
        if self._want_reason:
            self._want_reason = False
            apache = self._results.get(("apache", False))
            if apache is not None and line.strip() and len(apache.details) < MAX_DETAILS:
                apache.details.append(line.strip()[:300])
            return False
        if self._in_block and _DETAIL.search(line) and len(self._details) < MAX_DETAILS:
            self._details.append(line.strip()[:300])
        return False

    def _attach_details(self, program: str | None = None) -> None:
        """Give the explanatory lines seen in this block to its failure (the last one when unknown)."""
        if not self._details:
            return
        targets = [key for key in self._results if not key[1] and (program is None or key[0] == program)]
        if not targets:
            return
        details = self._results[targets[-1]].details
        for text in self._details:
            if text not in details and len(details) < MAX_DETAILS:
                details.append(text)
        self._details = []

    def findings(self) -> list[Finding]:
        self._attach_details()
        out: list[Finding] = []
        for (program, ok), slot in self._results.items():
            if ok and (program, False) in self._results:
                continue  # one block may print both (nginx "syntax is ok" then a later failure)
            title = _PROGRAM_TITLES[program]
            details, files = list(slot.details), list(slot.files)
            where = f" ({', '.join(files)})" if files else ""
            if ok:
                kind, severity = f"config_test.{program}_ok", Severity.OK
                summary = f"{title}: configuration is valid{where}"
            else:
                kind, severity = f"config_test.{program}_failed", Severity.CRITICAL
                summary = f"{title}: configuration test failed{where}"
                if details:
                    summary += ": " + details[0]
            out.append(
                Finding(
                    kind=kind,
                    severity=severity,
                    summary=summary,
                    evidence=tuple(redact(x) for x in slot.lines),
                    data={"program": program, "files": files, "details": details, "count": slot.count},
                    reader=self.name,
                )
            )
        return out


READERS = (ConfigTest,)
