"""Application tracebacks: Python ``Traceback (most recent call last):`` blocks and Java stack traces.

A Python traceback is followed from its header through the ``File "...", line N, in f`` frames and the
source/caret lines to the final ``SomeError: message`` line, which is quoted as the evidence. A prefix
in front of the header (Docker ``web_1  | ``, journald ``host app[123]: ``, Heroku ``app[web.1]: ``, a
pasted indentation) is stripped from the lines that follow, with its digits allowed to change
(timestamps, pids); JSON-wrapped lines (``{"log": "...", ...}``) are unwrapped. Chained tracebacks
(``During handling of the above exception ...``) are read one after the other.

What the final exception says decides the kind:

* ``app.config_exception`` → config_error: Django ``ImproperlyConfigured``, python-decouple
  ``UndefinedValueError``, environs ``EnvError``, and a ``KeyError: 'DATABASE_URL'``-style missing
  environment variable (an upper-case key raised from ``os.environ``).
* ``app.python_exception`` → app_exception, with a moderate weight: the final line is often a failing
  dependency (a refused database connection, an outside API timing out) that the database and
  outbound readers recognise on the same line and rank above it.
* ``SystemExit`` (gunicorn aborting a timed-out worker), ``KeyboardInterrupt`` and uWSGI's
  ``OSError: write error`` (the client went away) are not application failures and are skipped.

Java: ``Exception in thread "main" java.lang.IllegalStateException: ...`` and Spring/Tomcat's
``Servlet.service() ... threw exception`` are app exceptions; ``java.lang.OutOfMemoryError`` is the JVM
running out of heap. Django's ``Internal Server Error: /path`` log line marks a request that answered 500.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal
from bot.evidence.reader import Reader, Tally, tally_findings

_HEADER = "Traceback (most recent call last):"
_EXCEPTION = re.compile(r"^((?:[A-Za-z_]\w*\.)*[A-Za-z_]\w*)(?:: ?(.*))?$")
_EXCEPTION_NAME = re.compile(r"(?:Error|Exception|Exit|Interrupt|Timeout|Warning|Failure|Refused|NotFound|Denied)$")
_NEW_RECORD = re.compile(r"^\[?\d{4}-\d{2}-\d{2}[ T]\d|^\[\d{2}-\w{3}-\d{4} ")
_ENV_KEY = re.compile(r"^'[A-Z][A-Z0-9_]{2,}'$")
_ENV_FRAME = re.compile(r"<frozen os>|[/\\]os\.py\"|os\.environ\[|environ\[|getenv")
_CONFIG_TYPES = re.compile(r"(?:^|\.)(?:ImproperlyConfigured|UndefinedValueError|EnvError|MissingEnvironmentVariable)$")
_SKIPPED_TYPES = re.compile(r"(?:^|\.)(?:SystemExit|KeyboardInterrupt|GeneratorExit)$")
_JAVA_THREAD = re.compile(r'Exception in thread "[^"]*" ([\w.$]+)(?:: (.*))?')
_JAVA_CAUSED = re.compile(r"Caused by: ([\w.$]+)(?:: (.*))?")
_DJANGO_500 = re.compile(r"Internal Server Error: (/\S*)")
_CONFIG_LINE = re.compile(r"((?:[A-Za-z_]\w*\.)*(?:ImproperlyConfigured|UndefinedValueError)): ?(.*)$")
#: A traceback longer than this (frames + source lines) is abandoned: it was not a traceback after all.
_MAX_TRACEBACK_LINES = 400
_MAX_TYPES = 32


def _describe(kind: str, _key: str, count: int, data: dict[str, Any]) -> tuple[str, Severity]:
    types: dict[str, int] = data["exceptions"]
    names = ", ".join(sorted(types, key=lambda t: -types[t])[:3])
    if kind == "app.config_exception":
        summary = f"{count}× the app stopped on missing/invalid configuration: {data['exception']}: {data['message']}"
    elif kind == "app.django_500":
        summary = f"{count}× Django answered 500 (Internal Server Error), e.g. {data['message']}"
    elif kind == "app.java_out_of_memory":
        summary = f"{count}× the JVM ran out of memory: {data['message']}"
    else:
        summary = f"{count} unhandled exceptions in the app ({names})"
    return summary, Severity.WARNING if kind == "app.django_500" else Severity.CRITICAL


def _unwrap(line: str) -> str:
    """The log text of a JSON-wrapped line (Docker json-file, structured loggers), else the line."""
    text = line.strip()
    if text.startswith("{") and text.endswith("}"):
        try:
            record = json.loads(text)
        except ValueError:
            return line
        if isinstance(record, dict):
            for key in ("log", "message", "msg", "MESSAGE"):
                value = record.get(key)
                if isinstance(value, str):
                    return value.rstrip("\r\n")
    return line


class AppTraceback(Reader):
    name = "app.traceback"
    title = "Application tracebacks (Python, Java)"
    triggers = (
        r"Traceback \(most recent call last\):",
        r'Exception in thread "[^"]*" [\w.$]+',
        r"Caused by: [a-z]\w*(?:\.\w+)+\.[\w$]*(?:Exception|Error)",
        r"Servlet\.service\(\) for servlet \[",
        r"Internal Server Error: /",
        r"ImproperlyConfigured: |UndefinedValueError: ",
    )
    signals: ClassVar[dict[str, Signal]] = {
        "app.python_exception": Signal(cause="app_exception", weight=0.6),
        "app.config_exception": Signal(cause="config_error", weight=0.8),
        "app.java_exception": Signal(cause="app_exception", weight=0.6),
        "app.java_out_of_memory": Signal(cause="oom_kill", weight=0.6),
        "app.django_500": Signal(cause="app_exception", weight=0.5),
    }

    def __init__(self) -> None:
        self.tally = Tally()
        self._types: dict[str, dict[str, int]] = {}
        self._active = False
        self._prefix = ""
        self._prefix_rx: re.Pattern[str] | None = None
        self._seen = 0
        self._env_frame = False

    # -- reading --------------------------------------------------------------------------------------
    def feed(self, line: str) -> bool:
        text = _unwrap(line)
        if _HEADER in text:
            self._start(text)
            return True
        if self._active:
            return self._follow(line, text)
        self._single_line(line, text)
        return False

    def end_block(self) -> None:
        self._active = False

    def _start(self, text: str) -> None:
        self._active = True
        self._seen = 0
        self._env_frame = False
        self._prefix = text[: text.index(_HEADER)]
        self._prefix_rx = None
        if self._prefix.strip():
            generalised = re.sub(r"\d+", r"\\d+", re.escape(self._prefix))
            self._prefix_rx = re.compile(generalised.replace(r"\ ", r"\s*"))

    def _content(self, text: str) -> str:
        if self._prefix and text.startswith(self._prefix):
            return text[len(self._prefix) :]
        if self._prefix_rx is not None:
            found = self._prefix_rx.match(text)
            if found:
                return text[found.end() :]
        return text

    def _follow(self, line: str, text: str) -> bool:
        self._seen += 1
        if self._seen > _MAX_TRACEBACK_LINES:
            self._active = False
            return False
        content = self._content(text)
        stripped = content.strip()
        if not stripped or content[:1].isspace() or stripped.startswith('File "') or stripped == "...":
            if _ENV_FRAME.search(content):
                self._env_frame = True
            return True
        if _NEW_RECORD.match(stripped):
            self._active = False
            return False
        found = _EXCEPTION.match(stripped)
        if found and ("." in found.group(1) or _EXCEPTION_NAME.search(found.group(1))):
            self._active = False
            self._record(line, found.group(1), (found.group(2) or "").strip())
            return False
        # An unindented source line (journald and Heroku drop the indentation): keep reading.
        if _ENV_FRAME.search(content):
            self._env_frame = True
        return True

    def _record(self, line: str, exc_type: str, message: str) -> None:
        if _SKIPPED_TYPES.search(exc_type):
            return
        short = exc_type.rsplit(".", 1)[-1]
        if short in ("OSError", "IOError") and message == "write error":
            return
        is_config = bool(_CONFIG_TYPES.search(exc_type)) or (
            short == "KeyError" and self._env_frame and bool(_ENV_KEY.match(message))
        )
        kind = "app.config_exception" if is_config else "app.python_exception"
        self._add(kind, line, exc_type, message)

    def _single_line(self, line: str, text: str) -> None:
        java = _JAVA_THREAD.search(text) or _JAVA_CAUSED.search(text)
        if java:
            exc_type, message = java.group(1), (java.group(2) or "").strip()
            kind = "app.java_out_of_memory" if exc_type.endswith("OutOfMemoryError") else "app.java_exception"
            self._add(kind, line, exc_type, message)
            return
        if "Servlet.service()" in text:
            self._add("app.java_exception", line, "Servlet.service() exception", "")
            return
        config = _CONFIG_LINE.search(text)
        if config:
            # Outside a traceback (the line was quoted alone, or its traceback was cut off).
            self._add("app.config_exception", line, config.group(1), config.group(2).strip())
            return
        django = _DJANGO_500.search(text)
        if django:
            self._add("app.django_500", line, "Internal Server Error", django.group(1))

    def _add(self, kind: str, line: str, exc_type: str, message: str) -> None:
        self.tally.add(kind, line, exception=exc_type, message=message[:300])
        types = self._types.setdefault(kind, {})
        if exc_type in types or len(types) < _MAX_TYPES:
            types[exc_type] = types.get(exc_type, 0) + 1

    # -- results --------------------------------------------------------------------------------------
    def findings(self) -> list[Finding]:
        items = [
            (kind, key, count, evidence, {**data, "exceptions": dict(self._types.get(kind, {}))})
            for kind, key, count, evidence, data in self.tally.items()
        ]
        return tally_findings(self.name, items, _describe)


READERS = (AppTraceback,)
