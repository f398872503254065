"""Fixtures shared across the test tree (request them by name, or with ``pytest.mark.usefixtures``)."""

from __future__ import annotations

import inspect
import logging
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from bot.adapters.log_redaction import install_log_redaction
from bot.lab import postgres
from bot.lab.errors import LabError
from bot.lab.paths import LabPaths
from bot.lab.process import free_port
from bot.testing.secrets import MIN_LENGTH, found_in, registered


@pytest.fixture
def audit_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit log (under ``$XDG_STATE_HOME``) goes to this test's own temporary directory."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))


@dataclass(frozen=True)
class Cluster:
    port: int

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(postgres.conninfo(self.port), autocommit=True)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{postgres.superuser()}@127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    try:
        postgres.bin_dir()
    except LabError as exc:
        pytest.fail(f"PostgreSQL server binaries are needed for the store tests: {exc}")
    root = Path(tempfile.mkdtemp(prefix="incident-bot-dbtest-"))
    root.chmod(0o755)  # the server runs as ``postgres`` and must reach its data dir below
    paths = LabPaths(root)
    paths.logs.mkdir()
    port = free_port()
    try:
        postgres.init(paths, port)
        with (paths.pg_data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("max_connections = 60\n")  # the lab keeps 12; concurrency tests open more
        postgres.start(paths)
        yield Cluster(port)
    finally:
        postgres.stop(paths)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_database_url(request: pytest.FixtureRequest) -> Iterator[Callable[[], str]]:
    """Makes empty databases on the session's throwaway PostgreSQL; each is dropped at the end of the test."""
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    made: list[str] = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with cluster.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return cluster.url(name)

    yield make
    for name in made:
        with cluster.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ------------------------------------------------------------------ no secret in any log (issue #9)

#: Module-level constants of tests and fakes that hold configured secrets (``TOKEN``, ``TOKENS``,
#: ``API_TOKEN``, ``SECRET``, ``WEBHOOK_SECRET``, ``PASSWORD``…): scanned for even where no fixture
#: registered them.
_SECRET_NAME = re.compile(r"^[A-Z0-9_]*(?:TOKEN|SECRET|PASSWORD|PASSPHRASE|ROUTING_KEY|API_KEY)S?$")
_SECRET_PARAMETER = re.compile(r"token|secret|password|passphrase|routing_key")
#: Files the end-to-end tests write the output of ``serve`` subprocesses to.
SUBPROCESS_LOGS = "serve*.log"


def _secret_values(value: object) -> list[str]:
    values = list(value.values()) if isinstance(value, dict) else [value]
    return [v for v in values if isinstance(v, str) and len(v) >= MIN_LENGTH and not re.search(r"\s", v)]


def well_known_test_secrets() -> dict[str, str]:
    """Secrets the loaded test modules and fakes configure: their secret-named constants (a dict's
    values too) and the defaults of the fakes' token/secret parameters (``FakeSlack(token=...)``)."""
    found: dict[str, str] = {}
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(("tests.", "bot.testing.")):
            continue
        for attr, value in list(vars(module).items()):
            if _SECRET_NAME.match(attr):
                found.update(dict.fromkeys(_secret_values(value), f"{name}.{attr}"))
            if name.startswith("bot.testing.") and inspect.isclass(value) and value.__module__ == name:
                for param in inspect.signature(value.__init__).parameters.values():
                    if _SECRET_PARAMETER.search(param.name):
                        found.update(dict.fromkeys(_secret_values(param.default), f"{attr}({param.name}=...)"))
    return found


def leaks_in(path: Path, secrets: dict[str, str], chunk_size: int = 1 << 22) -> list[str]:
    """The secrets found in the file at ``path``, read in overlapping chunks (logs can be large)."""
    overlap = max((len(s) for s in secrets), default=0)
    found: set[str] = set()
    with path.open(encoding="utf-8", errors="replace") as log:
        tail = ""
        while chunk := log.read(chunk_size):
            window = tail + chunk
            found.update(found_in(window, secrets))
            tail = window[-overlap:]
    return sorted(found)


@pytest.fixture(scope="session", autouse=True)
def logs_hold_no_secrets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The whole run logs at DEBUG to a file through the bot's log redaction; at the end of the session
    no configured secret (registered with :func:`bot.testing.secrets.register`, or a well-known test
    constant) may be in it, nor in the output of the ``serve`` subprocesses the end-to-end tests kept
    (``serve*.log`` under the run's temporary directory; those processes log at their own level)."""
    path = tmp_path_factory.mktemp("debug-log") / "debug.log"
    # Mode "a": uvicorn's logging.config.dictConfig closes every handler; a closed one reopens to append.
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    install_log_redaction()
    try:
        yield path
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(level)
    secrets = {**well_known_test_secrets(), **registered()}
    logs = [path, *sorted(tmp_path_factory.getbasetemp().rglob(SUBPROCESS_LOGS))]
    leaks = [f"{log}: {', '.join(found)}" for log in logs if log.is_file() and (found := leaks_in(log, secrets))]
    if leaks:
        pytest.fail("configured secrets reached a log:\n" + "\n".join(leaks), pytrace=False)
