"""The forced-command gate (bot/gate.py, ``incident-bot gate``) without sshd: what passes and what does not.

The shapes the gate allows are the runbooks' own declarations (``Runbook.shapes``). The first tests keep
them honest: every runbook is driven through many scenarios (facts of all kinds, replies that succeed,
fail, are refused or missing, the captured Apache/HAProxy discovery) and every command it yields, as the
SSH adapter's ``build_argv`` wraps it, must pass the gate with only that runbook's shapes. The rest pin
refusals: shell syntax, other wrappers, other paths, extra arguments, sudo where no shape has it, a cache
root itself, and under ``--read-only`` every command only a mutating runbook sends.
tests/test_gate_sshd.py runs the same gate behind a real sshd against the fault lab.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bot import gate
from bot.adapters import ssh
from bot.adapters.ssh import build_argv
from bot.core.commands import Command, CommandResult
from bot.runbook.base import Reply, Runbook, Step
from bot.runbook.registry import load
from bot.runbook.shapes import Policy
from runbooks.service_status import PROBE
from tests.deploy.sudo_commands import FACTS, answer, params_of, pg_isready_accepting

ROOT = Path(__file__).resolve().parents[1]
DISCOVERY = ROOT / "tests" / "fixtures" / "runbooks" / "discovery"
INCIDENT_BOT = Path(sys.executable).parent / "incident-bot"
WRAP = "env LC_ALL=C SYSTEMD_PAGER=cat PAGER=cat SYSTEMD_COLORS=0 timeout -k 2 15"

#: Facts of every kind a host can have (config or discovery), two ways round.
RICH: list[dict[str, str]] = [
    {
        **FACTS,
        "pg_user": "app",
        "pg_database": "shop",
        "mysql_host": "127.0.0.1",
        "mysql_port": "3306",
        "redis_host": "/run/redis/redis-server.sock",
        "units": "nginx.service,gunicorn.service",
        "app_dir": "/srv/shop",
        "data_dir": "/var/lib/postgresql",
        "maintenance_flag": "/srv/shop/maintenance.on",
        "app_pid_file": "/run/gunicorn/gunicorn.pid",
        "app_socket": "/run/gunicorn.sock",
        "upstreams": "127.0.0.1:8000,https://api.internal:8443,unix:/run/php/php8.2-fpm.sock,[::1]:9000,backend:80",
        "tls_hosts": "shop.example.com:443,10.0.0.5:8443",
        "site_url": "https://shop.example.com/healthz",
        "cache_dirs": "thumbs=/var/cache/shop/thumbs,pages=/srv/shop/cache",
    },
    {
        "units": "gunicorn,php8.2-fpm.service",
        "cache_dirs": "thumbs=/var/www/shop/var/cache/",
        "pg_host": "db.internal",
        "pg_port": "6432",
        "mysql_host": "/run/mysqld/mysqld.sock",
        "redis_host": "cache.internal",
        "redis_port": "6380",
        "postgresql_log": "/var/log/postgresql/postgresql-16-main.log",
        "app_log": "/var/log/gunicorn/error.log",
    },
]
POLICY = Policy(resolve=False)


def _ok(command: Command, stdout: str = "", status: int = 0, stderr: str = "") -> CommandResult:
    return CommandResult(command=command, host="h", exit_status=status, stdout=stdout, stderr=stderr)


def healthy(command: Command) -> CommandResult:
    """Answers that send each runbook down its "the server answers" branches."""
    program, argv = command.argv[0], command.argv
    if program in ("mysqladmin", "mariadb-admin"):
        return _ok(command, "mysqld is alive\n")
    if program == "redis-cli":
        return _ok(command, "PONG\n" if argv[-1] == "ping" else "# Clients\nconnected_clients:1\n")
    if program == "pg_isready":
        return pg_isready_accepting().model_copy(update={"command": command})
    if argv[:3] == ("sh", "-c", PROBE):
        return _ok(command, "init=systemd\nhas=supervisorctl\nhas=pm2\n")
    if argv[:2] == ("systemctl", "is-active"):
        return _ok(command, "failed\nactive\n", status=3)
    if argv[:2] == ("cat", "--"):
        return _ok(command, "1234\n")
    if program == "stat":
        return _ok(command, "directory\n")
    if program == "du":
        return _ok(command, f"4\t{argv[-1]}\n")
    return _ok(command)


def missing(command: Command) -> CommandResult:
    """Nothing is installed: every program exits 127 (the fallbacks and other names are tried)."""
    return _ok(command, status=127, stderr=f"sh: 1: {command.argv[0]}: not found\n")


def no_sudo(command: Command) -> CommandResult:
    """Refused as the bot's user, and sudo not allowed on the host."""
    if command.sudo:
        return CommandResult(command=command, host="h", exit_status=None, error="sudo_not_allowed")
    return answer(command)


def captured_discovery(command: Command) -> CommandResult:
    """The Apache + HAProxy discovery captured on this machine (tests/fixtures/runbooks/discovery/)."""
    capture = json.loads((DISCOVERY / "apache_haproxy.json").read_text())
    found = capture.get(command.display)
    if found is None:
        return _ok(command, status=1)
    return _ok(command, found["stdout"], found["exit_status"], found["stderr"])


Replier = Callable[[Command], CommandResult]


def driven(runbook: type[Runbook], facts: dict[str, str], reply: Replier) -> Iterator[Command]:
    """Every command ``runbook`` yields with these facts and replies."""
    steps = runbook(params_of(runbook), facts).steps()
    try:
        step: Step = next(steps)
        for _ in range(200):
            commands = step if isinstance(step, tuple) else (step,)
            yield from commands
            results = tuple(reply(c) for c in commands)
            sent: Reply = results if isinstance(step, tuple) else results[0]
            step = steps.send(sent)
        raise AssertionError(f"{runbook.name} asked for more than 200 steps")
    except StopIteration:
        return


def _line(command: Command) -> str:
    return shlex.join(build_argv(command, command.timeout or 15.0, sudo=command.sudo))


def _scenarios() -> list[tuple[dict[str, str], Replier, Policy]]:
    replies = (healthy, answer, missing, no_sudo)
    wider = Policy(resolve=False).with_roots(["/tmp"])
    return [
        *((facts, reply, POLICY) for facts in [*RICH, {}] for reply in replies),
        ({}, captured_discovery, wider),
    ]


@pytest.mark.parametrize("name", sorted(load().runbooks))
def test_every_command_a_runbook_sends_passes_the_gate_with_that_runbooks_own_shapes(name: str) -> None:
    """The shapes are declared beside the code that builds the commands; this keeps them in step."""
    runbook = load().runbooks[name]
    entries = [gate.Entry(name, shape) for shape in runbook.shapes]
    seen = 0
    for facts, reply, policy in _scenarios():
        for command in driven(runbook, facts, reply):
            seen += 1
            verdict = gate.check(_line(command), entries, policy)
            assert verdict.allowed, f"{name}: {verdict.reason}: {command.argv} (sudo={command.sudo})"
    assert seen > 0


def test_every_built_in_runbook_declares_shapes() -> None:
    """A runbook without shapes could run nowhere behind the gate."""
    catalog = load()
    assert not catalog.broken
    assert [name for name, runbook in catalog.runbooks.items() if not runbook.shapes] == []


def test_the_gate_expects_the_adapters_kill_after() -> None:
    assert str(ssh.KILL_AFTER) == gate.KILL_AFTER


def _check(line: str, policy: Policy = POLICY) -> gate.Verdict:
    return gate.check(line, gate.installed(), policy)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (f"{WRAP} df -hP; id", "plain words"),
        (f"{WRAP} df -hP && id", "plain words"),
        (f"{WRAP} df -hP $(id)", "plain words"),
        (f"{WRAP} df -hP `id`", "plain words"),
        (f"{WRAP} df -hP | sh", "plain words"),
        (f"{WRAP} df -hP\nid", "plain words"),
        (f"{WRAP} df -hP > /etc/motd", "plain words"),
        (f"{WRAP} df -hP 'unbalanced", "unbalanced"),
        (f"{WRAP} tail -n 10 -- /etc/shadow", "no installed runbook"),
        (f"{WRAP} tail -n 10 -- /var/log/../../etc/shadow", "no installed runbook"),
        (f"{WRAP} df -hP -x", "no installed runbook"),
        (f"{WRAP} sh -c id", "no installed runbook"),
        (f"{WRAP} /tmp/nginx -T", "no installed runbook"),
        (f"{WRAP} curl -sS -i -m 5 --max-filesize 65536 -- http://169.254.169.254/latest/meta-data/", "no installed"),
        (f"{WRAP} sudo -n df -hP", "with sudo as root"),
        (f"{WRAP} sudo -n -u postgres dmesg -T", "with sudo as postgres"),
        (f"{WRAP} sudo -n -u 'x y' dmesg -T", "sudo -u needs an account"),
        (f"{WRAP} sudo -n", "no command after"),
        ("df -hP", "not the bot's wrapper"),
        ("env LC_ALL=C LD_PRELOAD=/tmp/x.so timeout -k 2 15 df -hP", "not the bot's wrapper"),
        ("env LC_ALL=C SYSTEMD_PAGER=cat PAGER=cat SYSTEMD_COLORS=0 timeout -k 2 0 df -hP", "timeout must be"),
        ("env LC_ALL=C SYSTEMD_PAGER=cat PAGER=cat SYSTEMD_COLORS=0 timeout -k 2 1e9 df -hP", "timeout must be"),
        ("", "no command asked"),
    ],
)
def test_refused_lines_say_why(line: str, why: str) -> None:
    verdict = _check(line)
    assert not verdict.allowed and why in verdict.reason, verdict


def test_a_plain_runbook_command_and_its_sudo_form_pass() -> None:
    """What the bot sends passes, with sudo only where a shape names the account."""
    assert _check(f"{WRAP} df -hP").argv == tuple(shlex.split(f"{WRAP} df -hP"))
    assert _check(f"{WRAP} sudo -n dmesg -T").allowed
    assert _check(f"{WRAP} sudo -n tail -v -n 2000 -- /var/log/nginx/error.log /var/log/haproxy.log").allowed
    assert not _check(f"{WRAP} sudo -n -u postgres dmesg -T").allowed


def test_a_root_never_lends_its_programs(tmp_path: Path) -> None:
    """--root widens where paths may point, not where programs come from: /tmp/x/nginx stays refused."""
    policy = Policy().with_roots([str(tmp_path)])
    assert _check(f"{WRAP} /usr/sbin/nginx -T -c {tmp_path}/nginx.conf", policy).allowed
    assert not _check(f"{WRAP} {tmp_path}/nginx -T -c {tmp_path}/nginx.conf", policy).allowed


def test_paths_must_stay_under_their_roots_after_symlinks(tmp_path: Path) -> None:
    """A link inside an allowed root that leads out of it is refused when the policy resolves paths."""
    root = tmp_path / "logs"
    root.mkdir()
    (root / "app.log").write_text("x\n")
    (root / "shadow.log").symlink_to("/etc/shadow")
    policy = Policy().with_roots([str(root)])
    assert _check(f"{WRAP} tail -n 10 -- {root}/app.log", policy).allowed
    assert not _check(f"{WRAP} tail -n 10 -- {root}/shadow.log", policy).allowed
    assert not _check(f"{WRAP} tail -n 10 -- {tmp_path}/other.log", policy).allowed


def _gate(command: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    assert INCIDENT_BOT.exists(), f"{INCIDENT_BOT} is missing: pip install -e . in the venv (./dev setup)"
    env = {k: v for k, v in os.environ.items() if k != "SSH_ORIGINAL_COMMAND"}
    if command is not None:
        env["SSH_ORIGINAL_COMMAND"] = command
    env["SSH_CONNECTION"] = "192.0.2.7 51234 127.0.0.1 22"
    argv = [str(INCIDENT_BOT), "gate", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)


def test_the_gate_executes_an_allowed_command_with_no_shell() -> None:
    """`incident-bot gate` runs the asked line itself: `nproc` prints the core count, exit 0."""
    done = _gate(f"{WRAP} nproc")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(len(os.sched_getaffinity(0)))


def test_a_refused_command_runs_nothing_exits_126_and_logs_one_line(tmp_path: Path) -> None:
    """The injected `touch` never runs; stderr has one line naming the reason and the client."""
    marker = tmp_path / "pwned"
    done = _gate(f"{WRAP} df -hP; touch {marker}")
    assert done.returncode == 126
    assert not marker.exists()
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("incident-bot gate: refused a command from 192.0.2.7: not plain words")
    assert json.dumps(f"{WRAP} df -hP; touch {marker}") in line


def test_a_login_without_a_command_is_refused() -> None:
    done = _gate(None)
    assert done.returncode == 126
    assert "no command asked" in done.stderr


def test_list_prints_every_runbooks_shapes_and_the_roots() -> None:
    """`--list` is the allowed set in words; `--json` the same for tools (the sudoers check uses it)."""
    text = _gate(None, "--list", "--root", "/srv/shop")
    assert text.returncode == 0, text.stderr
    assert "dmesg -T" in text.stdout and "sudo:root" in text.stdout
    assert "/srv/shop" in next(line for line in text.stdout.splitlines() if line.startswith("# <log path>"))
    listed = json.loads(_gate(None, "--list", "--json").stdout)
    assert {s["runbook"] for s in listed["shapes"]} == set(load().runbooks)
    assert listed["roots"]["log"] == ["/var/log"]


@pytest.mark.parametrize("bad", ["relative/dir", "/srv/../etc", "/"])
def test_a_bad_root_is_a_usage_error(bad: str) -> None:
    done = _gate(None, "--list", "--root", bad)
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 1 and "--root" in done.stderr


# -- mutating runbooks: cache paths strictly below a root, and --read-only ----------------------------

MUTATING = sorted(name for name, runbook in load().runbooks.items() if runbook.mutating)


def _sent_by(name: str) -> dict[str, Policy]:
    """Every command line runbook ``name`` sends in the scenarios, as the adapter wraps it, and the
    scenario's policy."""
    runbook = load().runbooks[name]
    return {_line(c): policy for facts, reply, policy in _scenarios() for c in driven(runbook, facts, reply)}


def test_the_mutating_runbooks_are_the_two_of_issue_9() -> None:
    assert MUTATING == ["clear_cache", "restart_unit"]


@pytest.mark.parametrize(
    "path",
    ["/var/cache", "/var/cache/", "/srv", "/var/lib", "/", "/var/cache/../lib/postgresql", "/var/cachex/y", "/etc/x"],
)
def test_find_delete_is_refused_on_a_cache_root_itself_and_outside_them(path: str) -> None:
    verdict = _check(f"{WRAP} sudo -n find {path} -xdev -mindepth 1 -delete")
    assert not verdict.allowed and "no installed runbook" in verdict.reason, verdict


def test_find_delete_passes_strictly_below_a_cache_root_and_resolved_links_must_stay_below(tmp_path: Path) -> None:
    """`--root DIR` makes DIR a cache root too (never deletable itself); a link below it that resolves to the
    root itself, or out of it, is refused when the policy resolves paths."""
    assert _check(f"{WRAP} sudo -n find /var/cache/shop/thumbs -xdev -mindepth 1 -delete").allowed
    assert _check(f"{WRAP} du -sk -- /srv/shop/cache").allowed
    policy = Policy().with_roots([str(tmp_path)])
    (tmp_path / "cache").mkdir()
    (tmp_path / "to-root").symlink_to(tmp_path)
    (tmp_path / "to-etc").symlink_to("/etc")
    delete = "-xdev -mindepth 1 -delete"
    assert _check(f"{WRAP} find {tmp_path}/cache {delete}", policy).allowed
    assert not _check(f"{WRAP} find {tmp_path} {delete}", policy).allowed
    assert not _check(f"{WRAP} find {tmp_path}/to-root {delete}", policy).allowed
    assert not _check(f"{WRAP} find {tmp_path}/to-etc {delete}", policy).allowed
    assert not _check(f"{WRAP} find {tmp_path}/to-etc/ssh {delete}", policy).allowed


@pytest.mark.parametrize("name", MUTATING)
def test_read_only_refuses_every_command_only_a_mutating_runbook_sends(name: str) -> None:
    """Under --read-only a mutating runbook's commands are refused, each with the reason, unless a read-only
    runbook sends the very same command (restart_unit's `systemctl is-active` is service_status's too)."""
    entries = gate.installed()
    reading = [e for e in entries if not e.mutating]
    refused = 0
    for line, policy in _sent_by(name).items():
        assert gate.check(line, entries, policy).allowed, line
        verdict = gate.check(line, entries, policy, read_only=True)
        if gate.check(line, reading, policy).allowed:
            assert verdict.allowed, line
        else:
            refused += 1
            assert not verdict.allowed and verdict.reason.startswith("read-only gate: only a runbook that changes"), (
                line,
                verdict,
            )
            assert name in verdict.reason
    assert refused > 0


def test_read_only_refuses_the_restart_and_the_delete_themselves() -> None:
    for line in (
        f"{WRAP} sudo -n systemctl restart -- gunicorn.service",
        f"{WRAP} systemctl restart -- gunicorn.service",
        f"{WRAP} sudo -n find /var/cache/shop/thumbs -xdev -mindepth 1 -delete",
        f"{WRAP} find /var/cache/shop/thumbs -xdev -mindepth 1 -delete",
    ):
        assert _check(line).allowed, line
        verdict = gate.check(line, gate.installed(), POLICY, read_only=True)
        assert not verdict.allowed and "read-only gate" in verdict.reason, line


@pytest.mark.parametrize("name", sorted(n for n, rb in load().runbooks.items() if not rb.mutating))
def test_read_only_passes_every_command_of_the_read_only_runbooks(name: str) -> None:
    entries = gate.installed()
    lines = _sent_by(name)
    assert lines
    for line, policy in lines.items():
        verdict = gate.check(line, entries, policy, read_only=True)
        assert verdict.allowed, (line, verdict.reason)


def test_read_only_refuses_for_real_with_126_and_deletes_nothing() -> None:
    """`incident-bot gate --read-only` given clear_cache's find and restart_unit's restart: 126 and one line
    each, the cache's files still there; the same find through the plain gate really empties the cache."""
    base = Path(tempfile.mkdtemp(prefix="incident-bot-gate-test-", dir="/var/cache"))
    try:
        cache = base / "thumbs"
        (cache / "sub").mkdir(parents=True)
        (cache / "a.bin").write_bytes(b"x" * 4096)
        (cache / "sub" / "b.bin").write_bytes(b"y")
        find = f"{WRAP} find {cache} -xdev -mindepth 1 -delete"
        for line in (find, f"{WRAP} sudo -n systemctl restart -- gunicorn.service"):
            done = _gate(line, "--read-only")
            assert done.returncode == 126, done
            [said] = done.stderr.splitlines()
            assert said.startswith("incident-bot gate: refused a command from 192.0.2.7: read-only gate: only a")
        assert sorted(p.name for p in cache.rglob("*")) == ["a.bin", "b.bin", "sub"]
        done = _gate(find)
        assert done.returncode == 0, done.stderr
        assert cache.is_dir() and list(cache.iterdir()) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_list_marks_the_mutating_runbooks_and_read_only_leaves_them_out() -> None:
    text = _gate(None, "--list").stdout
    assert "# clear_cache, restart_unit change the host (after an approval in chat); --read-only refuses them" in text
    restart = next(line for line in text.splitlines() if "systemctl restart" in line)
    assert restart.startswith("restart_unit") and "sudo:root" in restart and restart.endswith("(mutating runbook)")
    assert "find <cache path below a root> -xdev -mindepth 1 -delete" in text
    assert "# <cache path> under: /var/cache /srv /var/www /opt /var/lib" in text
    listed = json.loads(_gate(None, "--list", "--json").stdout)
    assert listed["read_only"] is False
    assert {s["runbook"] for s in listed["shapes"] if s["mutating"]} == {"clear_cache", "restart_unit"}
    narrow = _gate(None, "--list", "--read-only")
    assert narrow.returncode == 0, narrow.stderr
    assert "# read-only: the commands of clear_cache, restart_unit (they change the host) are refused" in narrow.stdout
    assert "systemctl restart" not in narrow.stdout and "-delete" not in narrow.stdout
    assert "systemctl is-active -- (<unit>){1,8}" in narrow.stdout  # service_status's, still allowed
    strict = json.loads(_gate(None, "--list", "--json", "--read-only").stdout)
    assert strict["read_only"] is True and not [s for s in strict["shapes"] if s["mutating"]]
    assert {s["runbook"] for s in strict["shapes"]} == set(load().runbooks) - {"clear_cache", "restart_unit"}
