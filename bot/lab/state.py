"""The lab's bookkeeping, ``<lab>/state.json``: ports, pids and the scenario in force.

It is what lets ``lab break``, ``lab status`` and ``lab down`` (separate processes) find what
``lab up`` started.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class LabState:
    user: str
    root: bool
    ports: dict[str, int] = field(default_factory=dict)  # ssh, http, postgres
    pids: dict[str, int] = field(default_factory=dict)  # sshd, nginx, gunicorn, postgres, holder
    scenario: str | None = None
    tmpfs: bool = False
    stopped_workers: list[int] = field(default_factory=list)
    socket_mode: int | None = None
    started_at: str = ""
    running: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabState:
        return cls(
            user=str(data["user"]),
            root=bool(data["root"]),
            ports={str(k): int(v) for k, v in dict(data.get("ports") or {}).items()},
            pids={str(k): int(v) for k, v in dict(data.get("pids") or {}).items()},
            scenario=data.get("scenario"),
            tmpfs=bool(data.get("tmpfs")),
            stopped_workers=[int(p) for p in data.get("stopped_workers") or []],
            socket_mode=data.get("socket_mode"),
            started_at=str(data.get("started_at") or ""),
            running=bool(data.get("running")),
        )


def load(path: Path) -> LabState | None:
    """The saved state, or None when there is none (or it is unreadable)."""
    try:
        return LabState.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        return None


def save(path: Path, state: LabState) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state.to_json(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
