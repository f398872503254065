"""Is the 503 deliberate? Maintenance flag files on the host and the page the site serves.

Checks the flags that maintenance modes leave behind (the ``maintenance_flag`` fact; under ``app_dir``:
WordPress ``.maintenance``, Laravel ``storage/framework/down``, Magento ``var/.maintenance.flag``, a
plain ``maintenance.flag``/``maintenance.html``) with ``ls -l``, and fetches the site from the host
(``site_url``) with its headers, so the maintenance page and its ``Retry-After`` are read as they are
served. Both outputs go to the maintenance reader; nothing is changed on the host. Needs no sudo.
"""

from __future__ import annotations

import posixpath
import re

from bot.evidence.readers.curl import CurlError, CurlResponse
from bot.evidence.readers.maintenance import MaintenanceMode
from bot.runbook.api import Command, Finding, PathArg, Repeat, Runbook, Severity, Shape, Steps, Url

#: Lists each flag that exists; a missing one prints nothing. Paths arrive as "$@", never as script text.
FLAG_SCRIPT = 'for f in "$@"; do if [ -e "$f" ]; then ls -ld -- "$f"; fi; done; true'
_URL = re.compile(r"^https?://[^\s\x00-\x1f\x7f/?#@]+(?:[/?#][^\s\x00-\x1f\x7f]*)?$")
_UNDER_APP_DIR = (
    ".maintenance",
    "storage/framework/down",
    "var/.maintenance.flag",
    "maintenance.flag",
    "maintenance.html",
)
MAX_PAGE = "65536"


def _absolute(path: str) -> bool:
    return path.startswith("/") and not re.search(r"[\x00-\x1f\x7f]", path)


class Maintenance(Runbook):
    name = "maintenance"
    title = "Deliberate maintenance: flag files and the page the site serves"
    statuses = frozenset({503})
    readers = (MaintenanceMode, CurlResponse, CurlError)
    shapes = (
        Shape("sh", "-c", FLAG_SCRIPT, "sh", Repeat(PathArg("app", "config"), 1, 64)),
        Shape("curl", "-sS", "-i", "-m", "5", "--max-filesize", MAX_PAGE, "--", Url()),
    )

    def steps(self) -> Steps:
        flags: list[str] = []
        skipped: list[str] = []
        configured = [p.strip() for p in (self.facts.get("maintenance_flag") or "").split(",") if p.strip()]
        app_dir = (self.facts.get("app_dir") or "").strip()
        candidates = configured + ([posixpath.join(app_dir, rel) for rel in _UNDER_APP_DIR] if app_dir else [])
        for path in candidates:
            (flags if _absolute(path) else skipped).append(path)
        site = (self.facts.get("site_url") or "").strip()
        if site and not _URL.match(site):
            skipped.append(site)
            site = ""
        findings = [
            Finding(
                kind="runbook.bad_fact",
                severity=Severity.WARNING,
                summary=f"maintenance: ignored an unsafe or relative value {value[:80]!r}",
                runbook=self.name,
            )
            for value in skipped
        ]
        commands: list[Command] = []
        if flags:
            commands.append(Command.pipeline(FLAG_SCRIPT, *flags, timeout=10, label="ls -ld -- " + " ".join(flags)))
        if site:
            commands.append(
                Command.of("curl", "-sS", "-i", "-m", "5", "--max-filesize", MAX_PAGE, "--", site, timeout=10)
            )
        if not commands:
            findings.append(
                Finding(
                    kind="maintenance.nothing_to_check",
                    severity=Severity.INFO,
                    summary="no maintenance flag or site URL known (facts maintenance_flag, app_dir, site_url)",
                    runbook=self.name,
                )
            )
            return findings
        results = yield tuple(commands)
        assert isinstance(results, tuple)
        for result in results:
            findings.extend(self.read(result))
        return findings
