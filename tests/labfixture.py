"""The fault lab for the live tests: what it needs on this machine, one running lab a module shares,
and running runbooks against it as ``incident-bot diagnose`` does.

The lab lives in a fresh directory under /tmp with mode 0755, not under pytest's tmp_path: its parent
is 0700, and nginx's workers (nobody) and PostgreSQL (postgres) must reach the lab directory.
:func:`running_lab` always takes the lab ``down`` and removes that directory, whatever the tests did.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bot.app import DiagnoseRequest, run_diagnose
from bot.config import load_settings
from bot.core.models import Diagnosis, Finding
from bot.lab import Lab
from bot.lab import postgres as lab_postgres


def missing(needed: Iterable[str]) -> list[str]:
    """The programs (absolute paths, or names on PATH) and PostgreSQL server binaries not installed here."""
    found = [n for n in needed if not (Path(n).exists() if n.startswith("/") else shutil.which(n))]
    try:
        lab_postgres.bin_dir()
    except Exception:
        found.append("PostgreSQL server binaries")
    return found


#: What every lab needs; `./dev setup` installs it, so a missing one fails the tests rather than skipping them.
LAB_NEEDS = ("/usr/sbin/sshd", "/usr/sbin/nginx", "ssh", "ssh-keygen", "curl")


def new_lab_dir(prefix: str = "ibl-") -> Path:
    """``lab`` inside a fresh 0755 directory under /tmp (the caller removes its parent)."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    base.chmod(0o755)
    return base / "lab"


@contextmanager
def running_lab(prefix: str = "ibl-") -> Iterator[Lab]:
    """A lab that is up in a new directory; on leaving it always goes ``down`` and the directory is removed."""
    absent = missing(LAB_NEEDS)
    if absent:
        pytest.fail(f"the fault lab needs {', '.join(absent)}: run ./dev setup")
    lab_dir = new_lab_dir(prefix)
    the_lab = Lab(lab_dir)
    try:
        the_lab.up()
        yield the_lab
    finally:
        the_lab.down()
        shutil.rmtree(lab_dir.parent, ignore_errors=True)


def run_runbooks(
    config: Path, runbooks: tuple[str, ...], status: int | None = None, url: str | None = None
) -> Diagnosis:
    """``diagnose`` of the host ``lab`` with these runbooks, under the configuration file ``config``."""
    request = DiagnoseRequest(target="lab", status=status, url=url, runbooks=runbooks)
    return asyncio.run(run_diagnose(request, load_settings(str(config))))


def findings_of(diagnosis: Diagnosis, kind: str, runbook: str | None = None) -> list[Finding]:
    """The findings of this kind (from this runbook, when one is named)."""
    return [f for f in diagnosis.findings if f.kind == kind and (runbook is None or f.runbook == runbook)]
