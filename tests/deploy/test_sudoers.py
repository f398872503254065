"""deploy/sudoers/incident-bot against the real sudo, in a private mount namespace (tests/deploy/sudo_sandbox.py).

The commands come from the installed runbooks (tests/deploy/sudo_commands.py) wrapped by the SSH adapter's
own ``build_argv`` (``env … timeout -k 2 N sudo -n ARGV``): a runbook or adapter change that the snippet
does not allow fails here. Every rule carries NOEXEC except psql's (Debian's psql is a Perl wrapper that
must exec the real one), and the programs the snippet names are the ones ``incident-bot gate --list``
shows with sudo.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bot.adapters.ssh import build_argv
from runbooks.proxy_log import tail_command
from tests.deploy.sudo_commands import after_sudo, sudo_argvs, sudo_lines
from tests.deploy.sudo_sandbox import USER, run_in_sandbox

ROOT = Path(__file__).resolve().parents[2]
SNIPPET = ROOT / "deploy" / "sudoers" / "incident-bot"
FIXTURES = ROOT / "tests" / "fixtures"
WRAPPER = ("env", "LC_ALL=C", "SYSTEMD_PAGER=cat", "PAGER=cat", "SYSTEMD_COLORS=0", "timeout", "-k", "2")
USER_SPEC = re.compile(r"^incident-bot ALL=\((?P<account>\w+)\) (?P<tags>(?:[A-Z]+:)+) (?P<aliases>.+)$", re.MULTILINE)
#: A stand-in for supervisorctl (not installed here): what it was asked, so the rule's arguments are checked.
PROGRAMS = {"supervisorctl": '#!/bin/sh\necho "supervisorctl stand-in: $*"\n'}


def _snippet() -> str:
    return SNIPPET.read_text()


def _specs(snippet: str) -> dict[str, tuple[str, list[str]]]:
    """Per account of the snippet: its tags (``NOPASSWD:NOEXEC:``) and the aliases granted."""
    found = {
        m["account"]: (m["tags"], [a.strip() for a in m["aliases"].split(",")]) for m in USER_SPEC.finditer(snippet)
    }
    assert found, "the snippet grants nothing to incident-bot"
    return found


def _aliases(snippet: str) -> dict[str, list[str]]:
    """Each Cmnd_Alias and the command paths it names (continuation lines joined)."""
    text = snippet.replace("\\\n", " ")
    aliases: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = re.match(r"^Cmnd_Alias (\w+) = (.*)$", line)
        if match:
            aliases[match[1]] = re.findall(r"(?:^|,\s+)(/\S+) ", match[2] + " ")
    return aliases


def _checks() -> list[dict[str, object]]:
    return [{"kind": "list", "account": account, "argv": list(argv)} for argvs in sudo_argvs().values()
            for account, argv in argvs]  # fmt: skip


def _allowed(snippet: str, checks: list[dict[str, object]]) -> list[bool]:
    results = run_in_sandbox(snippet, checks, programs=PROGRAMS)
    assert "visudo" not in results[0], results[0]
    return [result["rc"] == 0 for result in results]


def _wrapped(*argv: str, seconds: str = "20") -> tuple[str, ...]:
    return (*WRAPPER, seconds, "sudo", "-n", *argv)


def test_visudo_accepts_the_snippet() -> None:
    """The file parses as sudoers (what `visudo -c` checks before anyone installs it)."""
    assert shutil.which("visudo"), "visudo is missing: apt-get install sudo"
    done = subprocess.run(["visudo", "-c", "-f", str(SNIPPET)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_runbooks_ask_sudo_for_each_kind_of_read_the_snippet_covers() -> None:
    """The derivation reaches every runbook that uses sudo, and sudo comes last: it starts the program itself."""
    found = sudo_argvs()
    assert set(found) == {
        "access_log",
        "app_log",
        "discovery",
        "memory",
        "postgres",
        "proxy_log",
        "service_status",
        "restart_unit",
        "clear_cache",
    }
    programs = {(account, argv[0]) for argvs in found.values() for account, argv in argvs}
    assert programs == {
        ("root", "tail"),
        ("root", "journalctl"),
        ("root", "dmesg"),
        ("root", "/usr/sbin/nginx"),
        ("root", "supervisorctl"),
        ("postgres", "psql"),
        ("root", "systemctl"),
        ("root", "stat"),
        ("root", "du"),
        ("root", "find"),
    }
    for lines in sudo_lines().values():
        for line in lines:
            assert line[: len(WRAPPER)] == WRAPPER and line[len(WRAPPER) + 1] == "sudo", line


def test_every_command_the_runbooks_run_with_sudo_is_allowed() -> None:
    """Each command the runbooks send with `sudo -n [-u ACCOUNT]` is permitted for incident-bot by `sudo -l -U`."""
    checks = _checks()
    allowed = _allowed(_snippet(), checks)
    refused = [str(c["argv"])[:160] for c, ok in zip(checks, allowed, strict=True) if not ok]
    assert not refused, refused


def test_without_the_snippet_sudo_refuses_every_one_of_them() -> None:
    """The same checks against a sudoers without the snippet refuse everything: the sandbox tests the snippet."""
    assert not any(_allowed("", _checks()))


def test_each_rule_of_the_snippet_is_used_by_some_runbook_command() -> None:
    """No rule allows a command no runbook sends: granting each alias alone allows at least one derived command."""
    checks = _checks()
    snippet = _snippet()
    specs = _specs(snippet)
    granted = [(account, tags, alias) for account, (tags, aliases) in specs.items() for alias in aliases]
    assert {alias for _, _, alias in granted} == set(_aliases(snippet))
    base = USER_SPEC.sub("", snippet)
    for account, tags, alias in granted:
        only = base + f"incident-bot ALL=({account}) {tags} {alias}\n"
        assert any(_allowed(only, checks)), f"{alias} allows none of the runbooks' commands"


def test_every_rule_is_noexec_but_psqls_which_runs_as_postgres() -> None:
    """Root's rules all carry NOEXEC; the one rule without it runs psql as `postgres`, never as root."""
    specs = _specs(_snippet())
    assert set(specs) == {"root", "postgres"}
    assert specs["root"][0] == "NOPASSWD:NOEXEC:"
    assert specs["postgres"] == ("NOPASSWD:EXEC:", ["IB_POSTGRES_ACTIVITY"])
    assert _aliases(_snippet())["IB_POSTGRES_ACTIVITY"] == ["/usr/bin/psql"]


def test_the_snippets_programs_are_the_ones_the_gate_lists_with_sudo() -> None:
    """`incident-bot gate --list --json` (the runbooks' declared shapes) and the snippet name the same
    (program, account) pairs: a shape that gains sudo needs a rule, and a rule needs a shape."""
    gate = [sys.executable, "-m", "bot", "gate", "--list", "--json"]
    done = subprocess.run(gate, capture_output=True, text=True, check=True, timeout=60)
    listed = json.loads(done.stdout)["shapes"]
    from_gate = {(s["program"], account) for s in listed for account in s["sudo"]}
    snippet = _snippet()
    aliases = _aliases(snippet)
    from_snippet = {
        (Path(path).name, account)
        for account, (_, granted) in _specs(snippet).items()
        for alias in granted
        for path in aliases[alias]
    }
    assert from_gate == from_snippet


def test_other_files_programs_and_arguments_are_refused() -> None:
    """Variations of the allowed commands that would read or run something else are all refused."""
    line = build_argv(tail_command(2000, ["/var/log/nginx/error.log"], sudo=True), 20, sudo=True)
    proxy = after_sudo(tuple(line))[1]
    variants: dict[str, tuple[str, tuple[str, ...]]] = {
        "a file outside /var/log": ("root", (*proxy[:-1], "/etc/shadow")),
        "a dot-dot path": ("root", (*proxy[:-1], "/var/log/../../etc/shadow")),
        "a hidden component": ("root", (*proxy[:-1], "/var/log/.secret")),
        "a second file smuggled in one argument": ("root", (*proxy[:-1], "/var/log/nginx/error.log /etc/shadow")),
        "tail following a file": ("root", ("tail", "-f", "-n", "10", "--", "/var/log/syslog")),
        "tail of a file outside /var/log": ("root", ("tail", "-n", "10", "--", "/etc/shadow")),
        "a line count that is not a number": ("root", ("tail", "-n", "10 /etc/shadow", "--", "/var/log/syslog")),
        "journalctl with a pager": ("root", ("journalctl", "-k", "--since", "-2 hours", "-o", "short-iso")),
        "dmesg clearing the ring": ("root", ("dmesg", "-c")),
        "the old env wrapper under sudo": ("root", (*WRAPPER, "5", "dmesg", "-T")),
        "a plain shell": ("root", ("sh", "-c", "id")),
        "supervisorctl stopping everything": ("root", ("supervisorctl", "stop", "all")),
        "tail as postgres": ("postgres", ("tail", "-n", "10", "--", "/var/log/syslog")),
    }
    by_runbook = sudo_argvs()
    nginx = next(argv for _, argv in by_runbook["discovery"])
    variants["nginx from /tmp"] = ("root", ("/tmp/nginx", *nginx[1:]))
    variants["nginx with a configuration from /tmp"] = ("root", (*nginx[:2], "-c", "/tmp/evil.conf"))
    variants["nginx with -g directives"] = ("root", (*nginx[:2], "-g", "load_module /tmp/x.so;"))
    psql = next(argv for account, argv in by_runbook["postgres"] if account == "postgres")
    variants["psql with another query"] = ("postgres", (*psql[:-1], "COPY (SELECT 1) TO PROGRAM 'id'"))
    variants["psql as root"] = ("root", psql)
    variants["psql reading a psqlrc"] = ("postgres", tuple(arg for arg in psql if arg != "-X"))
    conninfo = psql.index("-d") + 1
    variants["psql with a service file"] = ("postgres", (*psql[:conninfo], "service=x", *psql[conninfo + 1 :]))
    variants.update(_mutating_variants())
    names = list(variants)
    checks: list[dict[str, object]] = [
        {"kind": "list", "account": variants[n][0], "argv": list(variants[n][1])} for n in names
    ]
    allowed = _allowed(_snippet(), checks)
    assert [name for name, ok in zip(names, allowed, strict=True) if ok] == []


def _mutating_variants() -> dict[str, tuple[str, tuple[str, ...]]]:
    """What a stolen bot key might try with the two mutating rules: other units, verbs, places, options."""
    delete = ("-xdev", "-mindepth", "1", "-delete")
    return {
        "systemctl stop": ("root", ("systemctl", "stop", "--", "gunicorn.service")),
        "systemctl disable": ("root", ("systemctl", "disable", "--", "gunicorn.service")),
        "systemctl restart without --": ("root", ("systemctl", "restart", "gunicorn.service")),
        "systemctl restart of a glob": ("root", ("systemctl", "restart", "--", "*")),
        "systemctl restart of two units": ("root", ("systemctl", "restart", "--", "a.service", "b.service")),
        "systemctl restart of an option": ("root", ("systemctl", "restart", "--", "--force")),
        "systemctl restart as postgres": ("postgres", ("systemctl", "restart", "--", "gunicorn.service")),
        "find on /var/cache itself": ("root", ("find", "/var/cache", *delete)),
        "find on /var/cache/": ("root", ("find", "/var/cache/", *delete)),
        "find on a database": ("root", ("find", "/var/lib/postgresql/15/main", *delete)),
        "find on /srv (a cache root of the bot, not of this file)": ("root", ("find", "/srv/app/cache", *delete)),
        "find with ..": ("root", ("find", "/var/cache/../lib/postgresql", *delete)),
        "find on a hidden directory": ("root", ("find", "/var/cache/.x", *delete)),
        "find following links": ("root", ("find", "-L", "/var/cache/shop/thumbs", *delete)),
        "find across filesystems": ("root", ("find", "/var/cache/shop/thumbs", "-mindepth", "1", "-delete")),
        "find deleting the directory too": ("root", ("find", "/var/cache/shop/thumbs", "-xdev", "-delete")),
        "find -exec": ("root", ("find", "/var/cache/shop/thumbs", "-xdev", "-mindepth", "1", "-exec", "rm", "{}", ";")),
        "find of two directories": ("root", ("find", "/var/cache/a", "/etc", *delete)),
        "du of /etc": ("root", ("du", "-sk", "--", "/etc/ssh")),
        "stat of /etc/shadow": ("root", ("stat", "-c", "%F", "--", "/etc/shadow")),
        "stat printing more": ("root", ("stat", "--", "/var/cache/shop/thumbs")),
    }


def test_a_cache_is_cleared_for_real_by_the_bot_user_through_sudo_under_noexec() -> None:
    """clear_cache's sudo commands, as sent, run by the bot's user: the root-only files inside the cache are
    deleted (find -delete needs no exec, so NOEXEC does not stop it), the directory stays, and the file a
    link inside pointed to is untouched."""
    path = "/var/cache/shop/thumbs"
    stat, du, find = sudo_lines()["clear_cache"]
    assert find[-5:] == (path, "-xdev", "-mindepth", "1", "-delete")
    files = {f"{path}/a.jpg": "a" * 5000, f"{path}/sub/b.jpg": "b", f"{path}/.hidden": "h", "/var/cache/shop/keep": "k"}
    checks = [{"kind": "run", "argv": list(line)} for line in (stat, du, find, du)]
    checks += [{"kind": "run", "argv": ["ls", "-A", path]}, {"kind": "run", "argv": ["ls", "/var/cache/shop"]}]
    results = run_in_sandbox(
        _snippet(), checks, files, tmpfs=("/var/cache",), links={f"{path}/link": "/var/cache/shop/keep"}
    )
    kind, before, deleted, after, inside, beside = results
    assert kind == {"rc": 0, "stdout": "directory\n", "stderr": ""}, kind
    assert before["rc"] == 0 and int(before["stdout"].split()[0]) >= 8, before
    assert deleted == {"rc": 0, "stdout": "", "stderr": ""}, deleted
    assert after["rc"] == 0 and int(after["stdout"].split()[0]) < int(before["stdout"].split()[0]), after
    assert inside == {"rc": 0, "stdout": "", "stderr": ""}, inside
    assert beside["stdout"].split() == ["keep", "thumbs"], beside


def test_the_bot_user_reads_root_only_logs_through_the_wrapper_and_sudo_for_real() -> None:
    """Run as incident-bot, exactly as sent (`env … timeout … sudo -n tail …`, NOEXEC): 0600 root logs are read."""
    nginx_log = (FIXTURES / "nginx" / "error-upstream-failures.log").read_text()
    app_log = (FIXTURES / "apps" / "gunicorn-timeout-sigkill-errors.log").read_text()
    files = {"/var/log/nginx/error.log": nginx_log, "/var/log/gunicorn/error.log": app_log}
    by_runbook = sudo_lines()
    proxy = next(line for line in by_runbook["proxy_log"] if "/var/log/nginx/error.log" in line)
    app = next(line for line in by_runbook["app_log"] if "/var/log/gunicorn/error.log" in line)
    shadow = (*app[:-1], "/etc/shadow")
    checks = [{"kind": "run", "argv": list(argv)} for argv in (proxy, app, shadow)]
    proxy_run, app_run, shadow_run = run_in_sandbox(_snippet(), checks, files)
    # The derived line also names the Apache and HAProxy logs, absent here: tail says so and exits 1,
    # which proxy_log accepts (the logs that exist are printed under their headers).
    missing = [line for line in proxy_run["stderr"].splitlines() if "No such file or directory" not in line]
    assert proxy_run["rc"] == 1 and not missing, proxy_run["stderr"]
    assert "==> /var/log/nginx/error.log <==\n" in proxy_run["stdout"]
    assert nginx_log.splitlines()[-1] in proxy_run["stdout"]
    assert app_run["rc"] == 0, app_run["stderr"]
    assert app_log.splitlines()[-1] in app_run["stdout"]
    assert shadow_run["rc"] == 1
    assert "sudo: a password is required" in shadow_run["stderr"]
    assert "root:" not in shadow_run["stdout"]


def test_the_kernel_log_nginx_configuration_and_supervisor_reads_run_for_real() -> None:
    """dmesg, `nginx -T` and supervisorctl (a stand-in) run as root under NOEXEC for the bot's user, as sent."""
    if not Path("/usr/sbin/nginx").exists():
        pytest.fail("nginx is missing: apt-get install nginx")
    by_runbook = sudo_lines()
    dmesg = next(line for line in by_runbook["memory"] if "dmesg" in line)
    nginx = next(line for line in by_runbook["discovery"] if "-T" in line)
    supervisor = next(line for line in by_runbook["service_status"] if "supervisorctl" in line)
    checks = [{"kind": "run", "argv": list(line)} for line in (dmesg, nginx, supervisor)]
    ring, config, status = run_in_sandbox(_snippet(), checks, {"/var/log/nginx/error.log": ""}, PROGRAMS)
    assert ring["rc"] == 0, ring["stderr"]
    assert ring["stdout"].strip(), "dmesg printed nothing"
    assert "# configuration file /etc/nginx/nginx.conf:" in config["stdout"], config["stderr"]
    assert status == {"rc": 0, "stdout": "supervisorctl stand-in: status\n", "stderr": ""}


def _with_probe(snippet: str, tags: str) -> str:
    """The snippet plus a probe rule, `env sh -c id` (a program that starts a shell), granted with ``tags``."""
    probe = 'Cmnd_Alias IB_PROBE = /usr/bin/env ^sh -c id$, /usr/bin/env ""\n'
    return snippet + probe + f"incident-bot ALL=(root) {tags} IB_PROBE\n"


def test_a_noexec_program_cannot_start_a_shell_and_only_lc_all_reaches_it() -> None:
    """Under the snippet's Defaults and NOEXEC, `env` run by sudo may not exec `sh` (no `id` output); the
    same rule without NOEXEC does (the control). Bare `env` shows what reaches a command: LC_ALL=C from
    the adapter's wrapper, not the pager variables."""
    shell = list(_wrapped("env", "sh", "-c", "id", seconds="5"))
    show = list(_wrapped("env", seconds="5"))
    checks = [{"kind": "run", "argv": shell}, {"kind": "run", "argv": show}]
    blocked, environment = run_in_sandbox(_with_probe(_snippet(), "NOPASSWD:NOEXEC:"), checks)
    assert blocked["rc"] == 126, blocked
    assert "Permission denied" in blocked["stderr"]
    assert "uid=" not in blocked["stdout"]
    assert "LC_ALL=C" in environment["stdout"].splitlines(), environment
    assert not [line for line in environment["stdout"].splitlines() if "PAGER" in line]
    control = run_in_sandbox(_with_probe(_snippet(), "NOPASSWD:"), checks[:1])[0]
    assert control["rc"] == 0 and control["stdout"].startswith("uid=0(root)"), control


def test_debians_psql_wrapper_cannot_run_under_noexec_which_is_why_its_rule_has_none() -> None:
    """/usr/bin/psql is pg_wrapper (Perl), which must exec the versioned psql: NOEXEC stops it."""
    if not Path("/usr/bin/psql").exists():
        pytest.fail("psql is missing: apt-get install postgresql-client")
    noexec = _snippet().replace("NOPASSWD:EXEC: IB_POSTGRES_ACTIVITY", "NOPASSWD:NOEXEC: IB_POSTGRES_ACTIVITY")
    line = next(line for line in sudo_lines()["postgres"] if "psql" in line)
    result = run_in_sandbox(noexec, [{"kind": "run", "argv": list(line)}])[0]
    assert "bin/psql" in result["stderr"] and "Permission denied" in result["stderr"], result


def test_the_snippet_names_the_bots_account() -> None:
    """The account in the snippet is the one the sandbox and the default `ssh.user` use."""
    assert USER == "incident-bot"
    assert f"Defaults:{USER} " in _snippet()
