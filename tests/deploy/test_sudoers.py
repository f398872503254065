"""deploy/sudoers/incident-bot against the real sudo, in a private mount namespace (tests/deploy/sudo_sandbox.py).

The commands come from the installed runbooks (tests/deploy/sudo_commands.py) wrapped by the SSH adapter's
own ``build_argv``: a runbook or adapter change that the snippet does not allow fails here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bot.adapters.ssh import build_argv
from runbooks.proxy_log import TAIL_SCRIPT, tail_command
from tests.deploy.sudo_commands import sudo_argvs
from tests.deploy.sudo_sandbox import USER, run_in_sandbox

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = ROOT / "deploy" / "sudoers" / "incident-bot"
FIXTURES = ROOT / "tests" / "fixtures"
ENV = ["env", "LC_ALL=C", "SYSTEMD_PAGER=cat", "PAGER=cat", "SYSTEMD_COLORS=0"]
USER_SPEC = re.compile(r"^incident-bot ALL=\(root\) NOPASSWD: (?P<aliases>.+)$", re.MULTILINE)


def _snippet() -> str:
    return SNIPPET.read_text()


def _aliases() -> list[str]:
    match = USER_SPEC.search(_snippet())
    assert match, "the snippet grants nothing to incident-bot"
    return [name.strip() for name in match.group("aliases").split(",")]


def _derived() -> list[tuple[str, ...]]:
    return [argv for argvs in sudo_argvs().values() for argv in argvs]


def _allowed(snippet: str, argvs: list[tuple[str, ...]]) -> list[bool]:
    results = run_in_sandbox(snippet, [{"kind": "list", "argv": list(argv)} for argv in argvs])
    assert "visudo" not in results[0], results[0]
    return [result["rc"] == 0 for result in results]


def _wrapped(*argv: str, seconds: str = "20") -> tuple[str, ...]:
    return (*ENV, "timeout", "-k", "2", seconds, *argv)


def test_visudo_accepts_the_snippet() -> None:
    """The file parses as sudoers (what `visudo -c` checks before anyone installs it)."""
    assert shutil.which("visudo"), "visudo is missing: apt-get install sudo"
    done = subprocess.run(["visudo", "-c", "-f", str(SNIPPET)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_runbooks_ask_sudo_for_each_kind_of_read_the_snippet_covers() -> None:
    """The derivation reaches every runbook that uses sudo (so the checks below are not vacuous)."""
    found = sudo_argvs()
    assert set(found) == {"access_log", "app_log", "discovery", "memory", "postgres", "proxy_log"}
    programs = {argv[len(ENV) + 4] for argvs in found.values() for argv in argvs}
    assert programs == {"sh", "tail", "journalctl", "dmesg", "sudo"}


def test_every_command_the_runbooks_run_with_sudo_is_allowed() -> None:
    """Each command line the runbooks send with `sudo -n` is permitted for incident-bot by `sudo -l -U`."""
    argvs = _derived()
    allowed = _allowed(_snippet(), argvs)
    refused = [" ".join(argv)[:160] for argv, ok in zip(argvs, allowed, strict=True) if not ok]
    assert not refused, refused


def test_without_the_snippet_sudo_refuses_every_one_of_them() -> None:
    """The same checks against a sudoers without the snippet refuse everything: the sandbox tests the snippet."""
    assert not any(_allowed("", _derived()))


def test_each_rule_of_the_snippet_is_used_by_some_runbook_command() -> None:
    """No rule allows a command no runbook sends: granting each alias alone allows at least one derived command."""
    argvs = _derived()
    snippet = _snippet()
    aliases = _aliases()
    assert len(aliases) == 7
    for alias in aliases:
        only = USER_SPEC.sub(f"incident-bot ALL=(root) NOPASSWD: {alias}", snippet)
        assert any(_allowed(only, argvs)), f"{alias} allows none of the runbooks' commands"


def test_other_files_scripts_and_arguments_are_refused() -> None:
    """Variations of the allowed commands that would read or run something else are all refused."""
    proxy = list(build_argv(tail_command(2000, ["/var/log/nginx/error.log"], sudo=True), 20, sudo=True)[2:])
    script_at = proxy.index(TAIL_SCRIPT)
    variants: dict[str, tuple[str, ...]] = {
        "a file outside /var/log": (*proxy[:-1], "/etc/shadow"),
        "a dot-dot path": (*proxy[:-1], "/var/log/../../etc/shadow"),
        "a hidden component": (*proxy[:-1], "/var/log/.secret"),
        "a second file smuggled in one argument": (*proxy[:-1], "/var/log/nginx/error.log /etc/shadow"),
        "another script": (*proxy[:script_at], "id", *proxy[script_at + 1 :]),
        "a command in the timeout's place": _wrapped("5", "sh", "-c", "id", "sh", seconds="1"),
        "an extra environment variable": ("env", "LD_PRELOAD=/tmp/x.so", *_wrapped("dmesg", "-T")[1:]),
        "journalctl with a pager": _wrapped("journalctl", "-k", "--since", "-2 hours", "-o", "short-iso"),
        "dmesg clearing the ring": _wrapped("dmesg", "-c"),
        "tail following a file": _wrapped("tail", "-f", "-n", "10", "--", "/var/log/syslog"),
        "tail of a file outside /var/log": _wrapped("tail", "-n", "10", "--", "/etc/shadow"),
        "a line count that is not a number": _wrapped("tail", "-n", "10 /etc/shadow", "--", "/var/log/syslog"),
        "no env and timeout wrapper": ("dmesg", "-T"),
        "a plain shell": ("sh", "-c", "id"),
    }
    nginx = next(argv for argv in _derived() if "-T" in argv)
    binary_at = nginx.index("-T") - 1
    variants["nginx from /tmp"] = (*nginx[:binary_at], "/tmp/nginx", *nginx[binary_at + 1 :])
    variants["nginx with a configuration from /tmp"] = (*nginx[: binary_at + 2], "-c", "/tmp/evil.conf")
    variants["nginx with -g directives"] = (*nginx[: binary_at + 2], "-g", "load_module /tmp/x.so;")
    psql = next(argv for argv in _derived() if "psql" in argv)
    sql_at = len(psql) - 1
    variants["psql with another query"] = (*psql[:sql_at], "COPY (SELECT 1) TO PROGRAM 'id'")
    run_as = psql.index("-u") + 1
    variants["psql as root"] = (*psql[:run_as], "root", *psql[run_as + 1 :])
    variants["psql reading a psqlrc"] = tuple(arg for arg in psql if arg != "-X")
    names = list(variants)
    allowed = _allowed(_snippet(), [variants[name] for name in names])
    assert [name for name, ok in zip(names, allowed, strict=True) if ok] == []


def test_the_bot_user_reads_root_only_logs_through_sudo_for_real() -> None:
    """Run as incident-bot with `sudo -n`: the runbooks' tails of 0600 root logs print the logs' lines."""
    nginx_log = (FIXTURES / "nginx" / "error-upstream-failures.log").read_text()
    app_log = (FIXTURES / "apps" / "gunicorn-timeout-sigkill-errors.log").read_text()
    files = {"/var/log/nginx/error.log": nginx_log, "/var/log/gunicorn/error.log": app_log}
    by_runbook = sudo_argvs()
    proxy = next(argv for argv in by_runbook["proxy_log"] if "/var/log/nginx/error.log" in argv)
    app = next(argv for argv in by_runbook["app_log"] if "/var/log/gunicorn/error.log" in argv)
    shadow = (*proxy[:-3], "/etc/shadow")
    checks = [{"kind": "run", "argv": list(argv)} for argv in (proxy, app, shadow)]
    proxy_run, app_run, shadow_run = run_in_sandbox(_snippet(), checks, files)
    assert proxy_run["rc"] == 0, proxy_run["stderr"]
    assert "### /var/log/nginx/error.log\n" in proxy_run["stdout"]
    assert nginx_log.splitlines()[-1] in proxy_run["stdout"]
    assert app_run["rc"] == 0, app_run["stderr"]
    assert app_log.splitlines()[-1] in app_run["stdout"]
    assert shadow_run["rc"] == 1
    assert "sudo: a password is required" in shadow_run["stderr"]
    assert "root:" not in shadow_run["stdout"]


def test_the_kernel_log_and_nginx_configuration_reads_run_for_real() -> None:
    """dmesg and `nginx -T` through the snippet run as root for the bot's user (what memory and discovery need)."""
    by_runbook = sudo_argvs()
    dmesg = next(argv for argv in by_runbook["memory"] if "dmesg" in argv)
    results = run_in_sandbox(_snippet(), [{"kind": "run", "argv": list(dmesg)}])
    assert results[0]["rc"] == 0, results[0]["stderr"]
    assert results[0]["stdout"].strip(), "dmesg printed nothing"
    if not Path("/usr/sbin/nginx").exists():
        pytest.fail("nginx is missing: apt-get install nginx")
    nginx = next(argv for argv in by_runbook["discovery"] if "-T" in argv)
    run = run_in_sandbox(_snippet(), [{"kind": "run", "argv": list(nginx)}], {"/var/log/nginx/error.log": ""})[0]
    assert "# configuration file /etc/nginx/nginx.conf:" in run["stdout"], run["stderr"]


def test_noexec_would_stop_the_adapters_wrapper_which_is_why_the_rules_pin_arguments_instead() -> None:
    """With NOEXEC, `env` may not start `timeout`: the snippet's header explains the choice; this pins the fact."""
    dmesg = next(argv for argv in sudo_argvs()["memory"] if "dmesg" in argv)
    noexec = _snippet().replace("NOPASSWD:", "NOPASSWD: NOEXEC:")
    result = run_in_sandbox(noexec, [{"kind": "run", "argv": list(dmesg)}])[0]
    assert result["rc"] != 0
    assert "env: 'timeout': Permission denied" in result["stderr"].replace("\u2018", "'").replace("\u2019", "'")


def test_the_snippet_names_the_bots_account() -> None:
    """The account in the snippet is the one the sandbox and the default `ssh.user` use."""
    assert USER == "incident-bot"
    assert f"Defaults:{USER} " in _snippet()
