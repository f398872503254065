"""Deliberate maintenance: the pages, commands and flag files of planned downtime (a 503 on purpose).

Recognised texts and where they come from:

* WordPress core ``wp_maintenance()`` (``wp-includes/load.php``): the 503 page ``Briefly unavailable for
  scheduled maintenance. Check back in a minute.``, served while ``ABSPATH/.maintenance`` exists
  (left behind by an interrupted update, the site stays "stuck" in maintenance).
* Laravel: ``php artisan down`` prints ``Application is now in maintenance mode.`` and writes
  ``storage/framework/down``; Laravel 5.x logs ``MaintenanceModeException``.
* Magento 2: ``bin/magento maintenance:status`` → ``Status: maintenance mode is active``;
  ``maintenance:enable`` → ``Enabled maintenance mode``; the flag is ``var/.maintenance.flag``
  (Magento 1: ``maintenance.flag`` in the web root). WP-CLI: ``Maintenance mode is active.``
* Drupal: ``@site is currently under maintenance. We should be back shortly. Thank you for your patience.``
* Generic maintenance pages (``Down for maintenance``, ``under maintenance``, ``in maintenance mode``)
  count strongly only when a 503 was seen in the same input; ``Retry-After`` on a 503 response is
  the HTTP way to announce planned downtime (RFC 9110 §10.2.3), so it counts too, weakly.
* ``ls -l`` lines (or a ``### $ ls ...maintenance...`` block) listing a flag file: ``.maintenance``,
  ``.maintenance.flag``, ``maintenance.flag``, ``storage/framework/down``, ``maintenance.html``/``.on``.

Not maintenance: the word in other contexts (PostgreSQL ``maintenance_work_mem``, a cron job named
``db-maintenance``, systemd's ``Active: maintenance`` state), Apache's stock 503 text ("due to maintenance
downtime or capacity problems", printed for any unavailable backend), ``Maintenance mode is not active``.
HAProxy's ``MAINT`` server state is the HAProxy reader's.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal
from bot.evidence.reader import Reader, Tally, tally_findings

_FLAG_NAMES = (
    r"(?:\.maintenance(?:\.flag)?|maintenance\.(?:flag|html?|on|enable|lock|php)|storage/framework/down"
    r"|framework/down)"
)

_SPECIFIC = (
    ("maintenance.wordpress", re.compile(r"Briefly unavailable for scheduled maintenance", re.I)),
    (
        "maintenance.laravel",
        re.compile(
            r"Application is (?:now )?in maintenance mode|MaintenanceModeException|\bartisan down\b"
            r"|CheckForMaintenanceMode|PreventRequestsDuringMaintenance|isDownForMaintenance"
        ),
    ),
    ("maintenance.drupal", re.compile(r"is currently under maintenance\. We should be back shortly")),
    (
        "maintenance.cli_active",
        re.compile(
            r"maintenance mode is active|Enabled maintenance mode|Maintenance mode (?:is )?(?:on|enabled)\b", re.I
        ),
    ),
)
_NOT_ACTIVE = re.compile(r"maintenance mode is not active|Disabled maintenance mode|Maintenance mode is off", re.I)
_GENERIC = re.compile(
    r"down for (?:scheduled )?maintenance|(?:is|are|site|currently|temporarily) under maintenance"
    r"|undergoing (?:scheduled )?maintenance|in maintenance mode|scheduled maintenance in progress"
    r"|maintenance in progress",
    re.I,
)
#: Apache's canned 503 body: says "maintenance downtime or capacity problems" for any missing backend.
_APACHE_STOCK = re.compile(r"maintenance downtime or capacity problems", re.I)
_LS_FLAG = re.compile(r"^\s*[-l][-rwxsStT]{9}[.+@]?\s+\d+\s.*?(?P<path>\S*" + _FLAG_NAMES + r")\s*$")
_MISSING = re.compile(r"No such file or directory|cannot access|cannot stat|not found", re.I)
_STATUS_503 = re.compile(r"HTTP/[0-9.]+ 503\b|\b(?:http_code|code|status)[\"']?\s*[=:]\s*[\"']?503\b|^\s*503\s*$")
_RETRY_AFTER = re.compile(r"^\s*<?\s*Retry-After:\s*(?P<value>\S[^\r\n]*)", re.I)

_SUMMARY = {
    "maintenance.wordpress": "WordPress maintenance page: the site is in (or stuck in) maintenance mode; "
    "remove ABSPATH/.maintenance if no update is running",
    "maintenance.laravel": "Laravel application is in maintenance mode (php artisan down); `php artisan up` ends it",
    "maintenance.drupal": "Drupal site is in maintenance mode",
    "maintenance.cli_active": "maintenance mode reported active",
    "maintenance.flag_present": "maintenance flag file present: {path}",
    "maintenance.page": "a maintenance page was served with 503",
    "maintenance.mention": "maintenance wording seen (no 503 seen with it)",
    "maintenance.retry_after": "503 with Retry-After: {value}: the server announces a planned, temporary outage",
    "maintenance.inactive": "maintenance mode reported inactive",
}


class MaintenanceMode(Reader):
    """Signs that a 503 is deliberate: maintenance pages, maintenance commands and flag files."""

    name = "maintenance.signals"
    title = "Maintenance mode (WordPress, Laravel, Magento, Drupal, flag files, 503 + Retry-After)"
    triggers = (
        r"(?i:briefly unavailable for scheduled maintenance)",
        r"Application is (?:now )?in maintenance mode|MaintenanceModeException|\bartisan down\b"
        r"|CheckForMaintenanceMode|PreventRequestsDuringMaintenance|isDownForMaintenance",
        r"is currently under maintenance\. We should be back shortly",
        r"(?i:maintenance mode is (?:not )?active|(?:en|dis)abled maintenance mode"
        r"|maintenance mode (?:is )?(?:on|off|enabled)\b)",
        r"(?i:down for (?:scheduled )?maintenance|(?:is|are|site|currently|temporarily) under maintenance"
        r"|undergoing (?:scheduled )?maintenance|in maintenance mode|maintenance in progress)",
        r"(?m:^[ \t]*[-l][-rwxsStT]{9}[.+@]?[ \t]+\d+[ \t][^\n]*(?:maintenance[^\n/]*|framework/down)[ \t\r]*$)",
        r"(?m:^[ \t]*<?[ \t]*HTTP/[0-9.]+ 503\b)",
        r"(?m:^[ \t]*<?[ \t]*(?i:retry-after):[ \t]*\S)",
    )
    header = r"\b(?:ls|stat|test|find)\b[^\n]*(?:maintenance|framework/down)"
    signals: ClassVar[dict[str, Signal]] = {
        "maintenance.wordpress": Signal(cause="maintenance_mode", weight=0.85),
        "maintenance.laravel": Signal(cause="maintenance_mode", weight=0.8),
        "maintenance.drupal": Signal(cause="maintenance_mode", weight=0.8),
        "maintenance.cli_active": Signal(cause="maintenance_mode", weight=0.75),
        "maintenance.flag_present": Signal(cause="maintenance_mode", weight=0.7),
        "maintenance.page": Signal(cause="maintenance_mode", weight=0.7),
        "maintenance.mention": Signal(cause="maintenance_mode", weight=0.3),
        "maintenance.retry_after": Signal(cause="maintenance_mode", weight=0.4),
    }

    def __init__(self) -> None:
        self.tally = Tally()
        self._generic = Tally()
        self._seen_503 = False
        self._status: int | None = None
        self._flag_block = False

    def start_block(self, header: str) -> None:
        self._flag_block = True
        self._status = None

    def end_block(self) -> None:
        self._flag_block = False
        self._status = None

    def feed(self, line: str) -> bool:
        status = re.match(r"^\s*<?\s*HTTP/[0-9.]+ (\d{3})\b", line)
        if status:
            self._status = int(status.group(1))
            self._seen_503 = self._seen_503 or self._status == 503
            return False
        if _STATUS_503.search(line):
            self._seen_503 = True
        retry = _RETRY_AFTER.match(line)
        if retry:
            if self._status == 503:
                value = retry.group("value").strip()
                self.tally.add("maintenance.retry_after", line, value=value)
            return False
        if _NOT_ACTIVE.search(line):
            self.tally.add("maintenance.inactive", line)
            return False
        for kind, pattern in _SPECIFIC:
            if pattern.search(line):
                self.tally.add(kind, line)
                return False
        listed = _LS_FLAG.match(line)
        if listed:
            self.tally.add("maintenance.flag_present", line, listed.group("path"), path=listed.group("path"))
            return False
        if self._flag_block and line.strip() and not _MISSING.search(line):
            path = re.search(r"\S*" + _FLAG_NAMES, line)
            if path:
                self.tally.add("maintenance.flag_present", line, path.group(0), path=path.group(0))
                return False
        if _GENERIC.search(line) and not _APACHE_STOCK.search(line):
            self._generic.add("maintenance.generic", line)
        return False

    def findings(self) -> list[Finding]:
        items = self.tally.items()
        for _kind, key, count, evidence, data in self._generic.items():
            kind = "maintenance.page" if self._seen_503 else "maintenance.mention"
            items.append((kind, key, count, evidence, data))
        kinds = {kind for kind, *_ in items}

        def describe(kind: str, _key: str, _count: int, data: dict[str, Any]) -> tuple[str, Severity] | None:
            if kind == "maintenance.inactive" and len(kinds) > 1:
                return None
            summary = _SUMMARY[kind].format_map({"path": "?", "value": "?", **data})
            if kind == "maintenance.inactive":
                return summary, Severity.OK
            if kind in {"maintenance.mention", "maintenance.retry_after"}:
                return summary, Severity.INFO
            return summary, Severity.WARNING

        return tally_findings(self.name, items, describe)


READERS = (MaintenanceMode,)
