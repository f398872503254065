"""Discovery: what runs on the host, where its proxy's logs are, and whether its upstreams listen.

Why: with no facts in the configuration the other runbooks would not know which logs to read or which
upstream to probe; and "nothing listens where nginx forwards" is the strongest upstream_down evidence
a host can give. Runs first on each host (``discovers = True``); configured facts win over these.

What it runs (argv; the ``sh -c`` wrapper only adds the sbin directories to ``PATH`` and ``exec``\\ s
its positional arguments, so nothing is ever parsed by a shell):

1. ``ps -eo pid,ppid,user,args`` and ``ss -ltnpx`` (or ``ss -ltnp`` + ``ss -lxp`` where the combined
   form fails), concurrently.
2. For each proxy the process table shows: ``<nginx binary> -T [-p PREFIX] [-c CONF]`` with the running
   master's own ``-p``/``-c`` (retried as a plain ``sudo -n <nginx binary> -T …``, without the ``sh``
   wrapper, when it cannot read the configuration: sudo's ``secure_path`` has the sbin directories);
   ``apache2ctl [-d ROOT] [-f CONF] -S`` and ``apache2ctl [-d ROOT] [-f CONF] -t -D DUMP_INCLUDES`` with
   the running master's own ``-d``/``-f`` (``apachectl`` where that is missing),
   then ``grep -hiE '<directives>' FILE...`` over the included files; HAProxy: ``cat`` of its ``-f``
   files (``*.cfg`` of a ``-f`` directory) and ``haproxy -c -f FILE...``.

Readers: ``discovery.processes`` (ps), ``proxy.config`` (configuration dumps + ``ss`` listeners: one
``proxy.upstream_listening``/``proxy.upstream_no_listener`` finding per upstream), ``config_test``
(``haproxy -c``). Returns those findings plus one ``discovery.facts`` finding whose data holds facts of
the shared vocabulary (nginx_error_log, nginx_access_log, nginx_conf, apache_*_log, haproxy_log,
upstreams, app_socket, app_log, app_pid_file, app_dir, tls_hosts, pg_host/pg_port, postgresql_log,
mysql_host/mysql_port, redis_host/redis_port). Needs no facts; sudo only as a fallback for ``nginx -T``.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Generator
from typing import Any

from bot.evidence.readers.host_processes import ProcessTable
from bot.evidence.readers.nginx_test import ConfigTest
from bot.evidence.readers.proxy_config import ProxyConfig
from bot.runbook.api import (
    ROOT,
    Alt,
    Command,
    CommandResult,
    Finding,
    Opt,
    PathArg,
    Program,
    Repeat,
    Reply,
    Runbook,
    Severity,
    Shape,
    Step,
    Steps,
)
from bot.runbook.base import FACTS_KIND

#: Runs its arguments with the sbin directories on PATH (non-login SSH sessions often lack them).
SBIN = 'PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"; export PATH; exec "$@"'
#: Same, preferring Debian's apache2ctl and falling back to apachectl (RHEL, source builds).
APACHECTL = (
    'PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"; export PATH; '
    'if command -v apache2ctl >/dev/null 2>&1; then exec apache2ctl "$@"; else exec apachectl "$@"; fi'
)
#: Prints HAProxy configuration files; a directory given to ``-f`` is read as its ``*.cfg`` files.
HAPROXY_CAT = 'for f in "$@"; do if [ -d "$f" ]; then cat -- "$f"/*.cfg; else cat -- "$f"; fi; done'
APACHE_DIRECTIVES = r"^\s*(ErrorLog|CustomLog|TransferLog|ProxyPass|ProxyPassMatch|BalancerMember|SetHandler)\b"
MAX_PROXIES = 16
MAX_LIST = 16
#: Configuration files passed to one haproxy (its ``-f`` options) and included files grepped (Apache).
MAX_CONFIGS = 64
MAX_INCLUDES = 200
_CONF = PathArg("config")
_NGINX_T = (Program("nginx"), "-T", Opt("-p", _CONF), Opt("-c", _CONF))
_PATH = re.compile(r"^/[^\x00-\x1f\x7f]*$")
_INCLUDE = re.compile(r"^\s*\(\S+\)\s+(/\S+)\s*$")
_DB_PORTS = {"postgres": ("postgres", 5432), "mysql": ("mysqld mariadbd", 3306), "redis": ("redis-server", 6379)}


def _path(value: object) -> str | None:
    """``value`` when it is an absolute path safe to pass as an argument, else None."""
    return value if isinstance(value, str) and _PATH.match(value) and len(value) < 4096 else None


def _absolute(path: str, base: str | None) -> str | None:
    if path.startswith("/"):
        return _path(path)
    return _path(posixpath.normpath(posixpath.join(base, path))) if base else None


def _haproxy_log(targets: list[str]) -> str:
    """Where a HAProxy's ``log`` lines end up as a file, when that can be told; else "".

    HAProxy never writes a log file itself: its ``log`` targets are syslog sockets/addresses, ``stdout``/
    ``stderr`` or rings. A local syslog socket (``/dev/log``, Debian's chroot ``/var/lib/haproxy/dev/log``)
    or a loopback address goes through the local syslog daemon, which on Debian/Ubuntu files it as
    ``/var/log/haproxy.log`` (``/etc/rsyslog.d/49-haproxy.conf`` of the haproxy package). ``stdout``/
    ``stderr`` (the journal), remote syslog and no ``log`` line at all give no file.
    """
    for target in targets:
        address = re.sub(r"^(?:udp[46]?|tcp[46]?|ipv[46])@", "", target)
        host = address.rsplit(":", 1)[0].strip("[]") if not address.startswith("/") else ""
        if address.removeprefix("unix@").startswith("/") or host in ("127.0.0.1", "::1", "localhost"):
            return "/var/log/haproxy.log"
    return ""


def _join(values: list[str]) -> str:
    return ",".join(list(dict.fromkeys(v for v in values if v))[:MAX_LIST])


class Discovery(Runbook):
    """Finds the proxy, its configuration, logs and upstreams, and which upstreams have a listener."""

    name = "discovery"
    title = "Discovery: processes, proxy configuration, logs, upstream listeners"
    discovers = True
    readers = (ProcessTable, ProxyConfig)
    shapes = (
        Shape("ps", "-eo", "pid,ppid,user,args"),
        Shape("sh", "-c", SBIN, "sh", "ss", Alt("-ltnpx", "-ltnp", "-lxp")),
        Shape("sh", "-c", SBIN, "sh", *_NGINX_T),
        Shape(*_NGINX_T, sudo=ROOT),
        Shape("sh", "-c", HAPROXY_CAT, "sh", Repeat(_CONF, 1, MAX_CONFIGS)),
        Shape("sh", "-c", SBIN, "sh", "haproxy", "-c", Repeat(("-f", _CONF), 1, MAX_CONFIGS)),
        Shape(
            "sh", "-c", APACHECTL, "sh", Opt("-d", _CONF), Opt("-f", _CONF), Alt("-S", ("-t", "-D", "DUMP_INCLUDES"))
        ),
        Shape("grep", "-hiE", APACHE_DIRECTIVES, "--", Repeat(_CONF, 1, MAX_INCLUDES)),
    )

    def steps(self) -> Steps:
        ps_cmd = Command.of("ps", "-eo", "pid,ppid,user,args", timeout=10)
        ss_cmd = Command.pipeline(SBIN, "ss", "-ltnpx", timeout=10, label="ss -ltnpx")
        ps, ss = yield (ps_cmd, ss_cmd)
        assert isinstance(ps, CommandResult) and isinstance(ss, CommandResult)
        findings: list[Finding] = []
        listeners = [ss]
        if not ss.ok:
            tcp, unix = yield (
                Command.pipeline(SBIN, "ss", "-ltnp", timeout=10, label="ss -ltnp"),
                Command.pipeline(SBIN, "ss", "-lxp", timeout=10, label="ss -lxp"),
            )
            assert isinstance(tcp, CommandResult) and isinstance(unix, CommandResult)
            listeners = [r for r in (tcp, unix) if r.ok] or [ss]
        processes = self.read(ps, ProcessTable) if ps.ok else [self.failed(ps)]
        findings.extend(processes)
        table: dict[str, list[dict[str, Any]]] = {}
        for finding in processes:
            if finding.kind == "discovery.processes":
                table = finding.data
        proxies = table.get("proxies", [])[:MAX_PROXIES]

        dumps: list[tuple[str, CommandResult]] = []
        apache_seen: list[list[str]] = []
        for proxy in proxies:
            if proxy["program"] == "nginx":
                result = yield from self._nginx(proxy)
                dumps.append(("nginx -T", result))
            elif proxy["program"] == "haproxy":
                configs = [p for p in (_path(c) for c in proxy.get("conf") or []) if p]
                if configs:
                    cat, check = yield (
                        Command.pipeline(HAPROXY_CAT, *configs, timeout=10, label=f"cat {' '.join(configs)}"),
                        Command.pipeline(
                            SBIN,
                            "haproxy",
                            "-c",
                            *[a for c in configs for a in ("-f", c)],
                            timeout=15,
                            label=f"haproxy -c -f {' '.join(configs)}",
                        ),
                    )
                    assert isinstance(cat, CommandResult) and isinstance(check, CommandResult)
                    dumps.append((f"haproxy config {' '.join(configs)}", cat))
                    findings.extend(self.read(check, ConfigTest))
            elif proxy["program"] == "apache":
                argv = self._apache_args(proxy)
                if argv not in apache_seen:
                    apache_seen.append(argv)
                    results = yield from self._apache(argv)
                    dumps.extend(results)

        text = ""
        for header, result in [*dumps, *(("ss -ltnpx", r) for r in listeners)]:
            if result.ok or (result.stdout and result.error is None):
                text += f"### $ {header}\n{result.stdout}\n"
            else:
                findings.append(self.failed(result))
        config: list[Finding] = []
        if text:
            combined = CommandResult(command=ps_cmd, host=ps.host, exit_status=0, stdout=text)
            config = self.read(combined, ProxyConfig, header="discovery")
        findings.extend(config)
        findings.append(self._facts(ps, table, config))
        return findings

    def _nginx(self, proxy: dict[str, Any]) -> Generator[Step, Reply, CommandResult]:
        binary = _path(proxy.get("binary")) or "nginx"
        argv = [binary, "-T"]
        prefix, conf = _path(proxy.get("prefix")), _path(proxy.get("conf"))
        if prefix:
            argv += ["-p", prefix]
        if conf:
            argv += ["-c", conf]
        command = Command.pipeline(SBIN, *argv, timeout=15, label=" ".join(argv))
        result = yield command
        assert isinstance(result, CommandResult)
        if "# configuration file " not in result.stdout:
            retry = yield Command.of(*argv, timeout=15, sudo=True, label=" ".join(argv))
            assert isinstance(retry, CommandResult)
            if "# configuration file " in retry.stdout:
                return retry
        return result

    @staticmethod
    def _apache_args(proxy: dict[str, Any]) -> list[str]:
        """The running master's own ``-d ROOT``/``-f CONF`` (a relative ``-f`` is under its ``-d``).

        ``apache2ctl`` with no arguments reads the distribution's configuration (Debian: ``-d /etc/apache2``);
        a master started with ``-f`` elsewhere would be described by a file it never read. ``apache2ctl``
        passes unknown options to ``apache2`` after its own ``-d``, so the master's ``-d`` wins.
        """
        root = _path(proxy.get("server_root"))
        conf = proxy.get("conf")
        conf = _absolute(conf, root) if isinstance(conf, str) else None
        argv: list[str] = []
        if root:
            argv += ["-d", root]
        if conf:
            argv += ["-f", conf]
        return argv

    def _apache(self, args: list[str]) -> Generator[Step, Reply, list[tuple[str, CommandResult]]]:
        shown = " ".join(["apache2ctl", *args])
        s_out, includes = yield (
            Command.pipeline(APACHECTL, *args, "-S", timeout=15, label=f"{shown} -S"),
            Command.pipeline(
                APACHECTL, *args, "-t", "-D", "DUMP_INCLUDES", timeout=15, label=f"{shown} -t -D DUMP_INCLUDES"
            ),
        )
        assert isinstance(s_out, CommandResult) and isinstance(includes, CommandResult)
        files = [m.group(1) for m in map(_INCLUDE.match, includes.stdout.splitlines()) if m]
        files = [f for f in (_path(x) for x in files) if f][:MAX_INCLUDES]
        out: list[tuple[str, CommandResult]] = [(f"{shown} -S", s_out)]
        if files:
            grep = yield Command.of("grep", "-hiE", APACHE_DIRECTIVES, "--", *files, timeout=15)
            assert isinstance(grep, CommandResult)
            out.append(("apache2ctl config (grep ProxyPass ErrorLog CustomLog)", grep))
        return out

    def _facts(self, ps: CommandResult, table: dict[str, list[dict[str, Any]]], config: list[Finding]) -> Finding:
        facts: dict[str, str] = {}
        proxies = table.get("proxies", [])
        by_program: dict[str, dict[str, Any]] = {}
        listeners: dict[str, Any] = {}
        for finding in config:
            if finding.kind == "proxy.config":
                by_program[str(finding.data.get("program"))] = finding.data
            elif finding.kind == "proxy.listeners":
                listeners = finding.data
        nginx = [p for p in proxies if p["program"] == "nginx"]
        if nginx or "nginx" in by_program:
            data = by_program.get("nginx", {})
            prefix = _path(nginx[0].get("prefix")) if nginx else None
            errors = [p.get("error_log") or "" for p in nginx] + list(data.get("error_logs", []))
            facts["nginx_error_log"] = _join([_absolute(e, prefix) or "" for e in errors if e])
            facts["nginx_access_log"] = _join([_absolute(a, prefix) or "" for a in data.get("access_logs", [])])
            confs = [p.get("conf") or "" for p in nginx] + list(data.get("files", []))[:1]
            facts["nginx_conf"] = next((c for c in (_path(x) for x in confs) if c), "")
        apache = [p for p in proxies if p["program"] == "apache"]
        if apache or "apache" in by_program:
            data = by_program.get("apache", {})
            root = _path(apache[0].get("server_root")) if apache else None
            root = root or _path(data.get("server_root"))
            root = root or ("/etc/httpd" if apache and "httpd" in str(apache[0].get("binary")) else "/etc/apache2")
            errors = list(data.get("error_logs", []))
            log_dir = posixpath.dirname(errors[0]) if errors and errors[0].startswith("/") else None

            def resolve(path: str) -> str:
                if log_dir:
                    path = path.replace("${APACHE_LOG_DIR}", log_dir)
                return "" if "${" in path else (_absolute(path, root) or "")

            facts["apache_error_log"] = _join([resolve(e) for e in errors])
            facts["apache_access_log"] = _join([resolve(a) for a in data.get("access_logs", [])])
        if any(p["program"] == "haproxy" for p in proxies) or "haproxy" in by_program:
            facts["haproxy_log"] = _haproxy_log(by_program.get("haproxy", {}).get("log_targets", []))
        upstreams = [u for data in by_program.values() for u in data.get("upstreams", [])]
        facts["upstreams"] = _join(upstreams)
        facts["tls_hosts"] = _join([u for data in by_program.values() for u in data.get("tls_upstreams", [])])
        for app in table.get("app_servers", []):
            binds = [b for b in app.get("bind") or [] if isinstance(b, str)]
            socket = next((b[5:] for b in binds if b.startswith("unix:") and _path(b[5:])), None)
            if socket and "app_socket" not in facts:
                facts["app_socket"] = socket
                for key, fact in (("pid_file", "app_pid_file"), ("log", "app_log"), ("chdir", "app_dir")):
                    value = _path(app.get(key))
                    if value:
                        facts[fact] = value
        running = {d["program"] for d in table.get("databases", [])}
        for program, (owners, port) in _DB_PORTS.items():
            if program not in running:
                continue
            host, found = self._db_listener(listeners, owners.split(), port)
            prefix = {"postgres": "pg", "mysql": "mysql", "redis": "redis"}[program]
            facts[f"{prefix}_host"], facts[f"{prefix}_port"] = host, str(found)
        for item in table.get("databases", []):
            conf = str(item.get("config_file") or "")
            cluster = re.match(r"^/etc/postgresql/([\d.]+)/([^/]+)/postgresql\.conf$", conf)
            if cluster and "postgresql_log" not in facts:
                facts["postgresql_log"] = f"/var/log/postgresql/postgresql-{cluster.group(1)}-{cluster.group(2)}.log"
        facts = {k: v for k, v in facts.items() if v}
        names = ", ".join(f"{k}={v}" for k, v in facts.items())
        return Finding(
            kind=FACTS_KIND,
            severity=Severity.INFO,
            summary=f"discovered {len(facts)} facts: {names}" if facts else "discovered nothing about this host",
            data=facts,
            host=ps.host,
            runbook=self.name,
        )

    @staticmethod
    def _db_listener(listeners: dict[str, Any], owners: list[str], default: int) -> tuple[str, int]:
        """Where a database listens (by the owning process), else the loopback address on its usual port."""
        for item in listeners.get("tcp", []):
            if any(o.split(" ")[0] in owners for o in item.get("owners", [])) and item.get("port"):
                host = item.get("host") or "127.0.0.1"
                wildcard = host in ("*", "0.0.0.0", "::")
                return ("127.0.0.1" if wildcard else host), int(item["port"])
        return "127.0.0.1", default
