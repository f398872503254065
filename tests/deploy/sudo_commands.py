"""Every command the installed runbooks may run under ``sudo -n``, as the SSH adapter sends it.

Each runbook is driven (a pure generator, no I/O) through the scenario that makes it reach for sudo:
every command it asks for is answered as if the bot's user were refused (``Permission denied``, files
listed as unreadable, a root-only supervisord socket), so each read-only fallback is walked, and the
commands it marks ``sudo=True`` are collected. Facts name the distributions' usual locations
(Debian/Ubuntu paths, a PostgreSQL on the local socket directory), because those are what the sudoers
snippet allows. The argv is then wrapped by :func:`bot.adapters.ssh.build_argv`, the one place that
builds remote command lines (``env … timeout -k 2 N sudo -n [-u ACCOUNT] ARGV``), so a change there or
in any runbook shows up here and in ``deploy/sudoers/incident-bot``'s tests.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from bot.adapters.ssh import build_argv
from bot.core.commands import Command, CommandResult
from bot.runbook.base import Reply, Runbook, Step
from bot.runbook.registry import load
from runbooks.service_status import PROBE

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

#: Facts a production host would have (from the configuration or from discovery).
FACTS: dict[str, str] = {
    "nginx_error_log": "/var/log/nginx/error.log",
    "nginx_access_log": "/var/log/nginx/access.log",
    "apache_error_log": "/var/log/apache2/error.log",
    "apache_access_log": "/var/log/apache2/access.log",
    "haproxy_log": "/var/log/haproxy.log",
    "app_log": "/var/log/gunicorn/error.log,/var/log/shop/app.log",
    "postgresql_log": "/var/log/postgresql/postgresql-15-main.log",
    "pg_host": "/var/run/postgresql",
    "pg_port": "5432",
    "units": "nginx.service,gunicorn.service",
    "cache_dirs": "thumbs=/var/cache/shop/thumbs",
}
#: Parameters of the runbooks that need some (the mutating ones: what an approved request carries).
PARAMS: dict[str, dict[str, str]] = {"restart_unit": {"unit": "gunicorn.service"}, "clear_cache": {"cache": "thumbs"}}
#: Programs clear_cache runs plainly first and through sudo after "Permission denied".
CACHE_PROGRAMS = ("stat", "du", "find")
#: The seconds a command gets when it names none (``ssh.command_timeout``'s default).
DEFAULT_TIMEOUT = 15.0
MAX_STEPS = 200


def lab_process_table() -> str:
    """``ps -eo pid,ppid,user,args`` captured on the fault lab, one nginx master moved to Debian's paths.

    The capture (tests/fixtures/runbooks/discovery/lab_healthy.json) holds several labs' masters under
    /tmp; one is kept and its prefix, configuration and log are renamed to /etc/nginx and /var/log/nginx,
    where a packaged nginx keeps them.
    """
    capture = json.loads((FIXTURES / "runbooks" / "discovery" / "lab_healthy.json").read_text())
    table: str = capture["ps -eo pid,ppid,user,args"]["stdout"]
    lines = table.splitlines()
    master = next(line for line in lines if "nginx: master process" in line and "/tmp/dscap/" in line)
    pid = master.split()[0]
    worker = next(line for line in lines if line.split()[1:2] == [pid])
    kept = "\n".join([lines[0], master, worker]) + "\n"
    return kept.replace("/tmp/dscap/lab/nginx/", "/etc/nginx/").replace("/tmp/dscap/lab/logs/nginx/", "/var/log/nginx/")


def refused(command: Command, host: str = "web-1") -> CommandResult:
    """What a command run as an unprivileged user gets when the file or log is not for it to read."""
    paths = [arg for arg in command.argv if arg.startswith("/var/log/")]
    unreadable = "".join(f"#unreadable {path}\n" for path in paths)
    return CommandResult(
        command=command,
        host=host,
        exit_status=1,
        stdout=unreadable,
        stderr="Permission denied\n",
    )


def pg_isready_accepting() -> CommandResult:
    """``pg_isready`` answering "accepting connections", as captured on the fault lab's PostgreSQL."""
    capture = json.loads((FIXTURES / "runbooks" / "postgres" / "after-repair.json").read_text())
    ready = next(entry for entry in capture if entry["argv"][0] == "pg_isready")
    command = Command(argv=tuple(ready["argv"]))
    return CommandResult(command=command, host="db-1", exit_status=ready["exit_status"], stdout=ready["stdout"])


def params_of(runbook: type[Runbook]) -> BaseModel:
    """The runbook's parameters for these scenarios (:data:`PARAMS`; none for the others)."""
    return runbook.Params.model_validate(PARAMS.get(runbook.name, {}))


def answer(command: Command) -> CommandResult:
    """Refused, except what must succeed for a runbook to go on to its sudo step: the process table
    (discovery then finds the nginx master whose ``-T`` it retries), ``pg_isready`` (the postgres
    runbook then asks ``psql`` as the ``postgres`` user), systemd being there (restart_unit then restarts
    through sudo) and clear_cache's commands once they run through sudo (a root-owned cache)."""
    if command.argv[:2] == ("test", "-d"):
        return CommandResult(command=command, host="web-1", exit_status=0)
    if command.sudo and command.argv[0] in CACHE_PROGRAMS:
        printed = {"stat": "directory\n", "du": f"4\t{command.argv[-1]}\n"}.get(command.argv[0], "")
        return CommandResult(command=command, host="web-1", exit_status=0, stdout=printed)
    if command.argv[:2] == ("ps", "-eo"):
        return CommandResult(command=command, host="web-1", exit_status=0, stdout=lab_process_table())
    if command.argv[0] == "pg_isready":
        return pg_isready_accepting().model_copy(update={"command": command})
    if command.argv[:3] == ("sh", "-c", PROBE):
        return CommandResult(command=command, host="web-1", exit_status=0, stdout="has=supervisorctl\n")
    if command.argv[0] == "supervisorctl":
        # supervisorctl's own words when the socket is root-only (supervisor 4.2, Debian 12)
        denied = "error: <class 'PermissionError'>, [Errno 13] Permission denied: file: /usr/lib/python3/dist-packages"
        return CommandResult(command=command, host="web-1", exit_status=2, stdout=denied + "\n")
    return refused(command)


def sudo_commands_of(runbook: type[Runbook], reply: Callable[[Command], CommandResult] = answer) -> list[Command]:
    """The commands ``runbook`` marks ``sudo=True`` when everything it asks for is refused."""
    steps = runbook(params_of(runbook), FACTS).steps()
    wanted: list[Command] = []
    try:
        step: Step = next(steps)
        for _ in range(MAX_STEPS):
            commands = step if isinstance(step, tuple) else (step,)
            wanted.extend(c for c in commands if c.sudo)
            results = tuple(reply(c) for c in commands)
            sent: Reply = results if isinstance(step, tuple) else results[0]
            step = steps.send(sent)
        raise AssertionError(f"{runbook.name} asked for more than {MAX_STEPS} steps")
    except StopIteration:
        return wanted


def sudo_lines() -> dict[str, list[tuple[str, ...]]]:
    """Per runbook, the whole command line (``env … timeout … sudo -n …``) of each of its sudo commands."""
    catalog = load()
    if catalog.broken:
        raise AssertionError(f"broken runbooks: {catalog.broken}")
    found: dict[str, list[tuple[str, ...]]] = {}
    for name, runbook in sorted(catalog.runbooks.items()):
        lines = [
            tuple(build_argv(command, command.timeout or DEFAULT_TIMEOUT, sudo=True))
            for command in sudo_commands_of(runbook)
        ]
        if lines:
            found[name] = list(dict.fromkeys(lines))
    return found


def after_sudo(line: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """The account (``root`` unless ``-u``) and the argv sudo is asked to run, from a whole command line."""
    at = line.index("sudo")
    assert line[at + 1] == "-n", line
    if line[at + 2] == "-u":
        return line[at + 3], line[at + 4 :]
    return "root", line[at + 2 :]


def sudo_argvs() -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """Per runbook, ``(account, argv)`` of each sudo command: what ``sudo -l -U incident-bot -u ACCOUNT``
    is asked about."""
    return {name: [after_sudo(line) for line in lines] for name, lines in sudo_lines().items()}
