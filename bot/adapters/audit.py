"""An append-only JSON-lines audit log of every remote command (DESIGN §7).

One line per command: when, what triggered it, host, argv, exit status, duration, the SHA-256 of the
output and our error code. The file is opened in append mode for each entry and flushed, so a crash
loses at most the entry being written; it is created with mode 0600.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from bot.core.ports import AuditEntry


def default_audit_path() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "incident-bot" / "audit.jsonl"


class JsonlAuditor:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def record(self, entry: AuditEntry) -> None:
        line = json.dumps(entry.model_dump(mode="json"), ensure_ascii=False, sort_keys=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)
