"""Discovery on outputs recorded from the fault lab host (several labs ran on it at the time)."""

from __future__ import annotations

from pathlib import Path

from bot.core.commands import Command, CommandResult
from bot.core.models import Finding
from bot.evidence.readers.host_processes import ProcessTable
from bot.evidence.readers.proxy_config import ProxyConfig, upstream_address
from bot.runbook.base import FACTS_KIND
from bot.testing import Canned, drive, read
from runbooks.discovery import SBIN, Discovery
from tests.runbooks.record import asked, replies

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "runbooks" / "discovery"
LAB = "/tmp/rbcap/lab"
SOCKET = f"unix:{LAB}/run/gunicorn.sock"


def _facts(findings: list[Finding]) -> dict[str, str]:
    return next(f.data for f in findings if f.kind == FACTS_KIND)


def test_discovery_finds_the_nginx_master_its_config_logs_and_gunicorn_upstream() -> None:
    """From ps + nginx -T of the running master: error/access logs, config file, socket upstream, app facts."""
    findings = drive(Discovery, {}, replies(FIXTURES / "lab_healthy.json"))
    facts = _facts(findings)
    assert f"{LAB}/logs/nginx/error.log" in facts["nginx_error_log"].split(",")
    assert f"{LAB}/logs/nginx/access.log" in facts["nginx_access_log"].split(",")
    assert SOCKET in facts["upstreams"].split(",")
    assert facts["nginx_conf"].endswith("/lab/nginx/nginx.conf")
    assert facts["app_socket"].endswith("/lab/run/gunicorn.sock")
    assert facts["pg_host"] == "127.0.0.1" and facts["pg_port"].isdigit()
    listening = [f for f in findings if f.kind == "proxy.upstream_listening" and f.data["upstream"] == SOCKET]
    assert listening and "gunicorn" in listening[0].summary
    assert not [f for f in findings if f.kind == "proxy.upstream_no_listener" and f.data["upstream"] == SOCKET]


def test_discovery_reports_no_listener_on_the_stopped_gunicorn_socket() -> None:
    """upstream_down: nginx's upstream socket has no listener in ss, a finding that signals upstream_down."""
    findings = drive(Discovery, {}, replies(FIXTURES / "lab_upstream_down.json"))
    missing = [f for f in findings if f.kind == "proxy.upstream_no_listener" and f.data["upstream"] == SOCKET]
    assert len(missing) == 1
    assert missing[0].severity == "critical"
    assert missing[0].evidence == (f"server {SOCKET} fail_timeout=0;",)
    assert ProxyConfig.signals["proxy.upstream_no_listener"].cause == "upstream_down"


def test_nginx_T_runs_with_the_masters_own_prefix_and_config_as_argv() -> None:
    """The running master's -p/-c go to nginx -T as separate arguments behind a constant sh wrapper."""
    commands, _ = asked(Discovery, {}, replies(FIXTURES / "lab_healthy.json"))
    nginx = [c for c in commands if "-T" in c.argv]
    assert nginx
    for command in nginx:
        assert command.argv[:4] == ("sh", "-c", SBIN, "sh")
        assert command.argv[4:7] == ("/usr/sbin/nginx", "-T", "-p")
        assert not command.sudo


def test_hostile_process_arguments_reach_nginx_only_as_arguments() -> None:
    """A config path with shell metacharacters (from a host's ps) is one argv element; relative ones are dropped;
    an empty dump is retried with sudo, and sudo being refused is a finding, not a crash."""
    hostile = "/etc/nginx/$(id);`id`|'x\"&.conf"
    ps = (
        "  PID  PPID USER     COMMAND\n"
        f"   10     1 root     nginx: master process /usr/sbin/nginx -c {hostile}\n"
        "   20     1 root     nginx: master process nginx -c ../relative.conf\n"
    )
    refused = CommandResult(command=Command.of("x"), host="h", exit_status=None, error="sudo_not_allowed")
    canned: dict[str | tuple[str, ...], Canned] = {
        "ps -eo pid,ppid,user,args": ps,
        "ss -ltnpx": "Netid State  Recv-Q Send-Q Local Address:Port Peer Address:PortProcess\n",
        f"/usr/sbin/nginx -T -c {hostile}": "",
        "nginx -T": refused,
    }
    commands, findings = asked(Discovery, {}, canned)
    first = [c for c in commands if "/usr/sbin/nginx" in c.argv]
    assert first and first[0].argv == ("sh", "-c", SBIN, "sh", "/usr/sbin/nginx", "-T", "-c", hostile)
    assert [c.sudo for c in first] == [False, True]
    # The sudo retry is the program itself, no `sh` wrapper (its sudoers rule carries NOEXEC).
    assert first[1].argv == ("/usr/sbin/nginx", "-T", "-c", hostile)
    assert next(c.argv[4:] for c in commands if c.argv[4:5] == ("nginx",)) == ("nginx", "-T")
    assert any(f.kind == "runbook.command_failed" for f in findings)
    assert any(f.kind == FACTS_KIND for f in findings)


def test_upstream_address_forms() -> None:
    """proxy_pass/fastcgi_pass/ProxyPass targets normalise to unix:/path or host[:port]; variables are skipped."""
    assert upstream_address("http://unix:/run/app.sock:/api/") == ("unix:/run/app.sock", False)
    assert upstream_address("unix:/run/php/php8.2-fpm.sock") == ("unix:/run/php/php8.2-fpm.sock", False)
    assert upstream_address("https://api.internal:8443/x") == ("api.internal:8443", True)
    assert upstream_address("unix:/run/php/php8.2-fpm.sock|fcgi://localhost") == (
        "unix:/run/php/php8.2-fpm.sock",
        False,
    )
    assert upstream_address("http://$backend") is None


def test_listener_table_alone_is_not_an_upstream_verdict() -> None:
    """Near miss: an ss table with no proxy configuration yields the listener list, no upstream finding."""
    recorded = replies(FIXTURES / "lab_healthy.json")
    ss = recorded["ss -ltnpx"]
    assert isinstance(ss, CommandResult)
    kinds = {f.kind for f in read("### $ ss -ltnpx\n" + ss.stdout, [ProxyConfig])}
    assert kinds == {"proxy.listeners"}


def test_process_table_keeps_masters_and_ignores_workers_and_lookalikes() -> None:
    """Workers (ppid = a master) and commands that merely mention nginx (grep, ssh) are not programs found."""
    recorded = replies(FIXTURES / "lab_healthy.json")
    ps = recorded["ps -eo pid,ppid,user,args"]
    assert isinstance(ps, CommandResult)
    extra = "  999   998 root     grep nginx: master process\n 1000     1 root     ssh lab nginx -T\n"
    found = read("### $ ps -eo pid,ppid,user,args\n" + ps.stdout + extra, [ProcessTable])
    data = found[0].data
    nginx = [p for p in data["proxies"] if p["program"] == "nginx"]
    assert nginx and all(p["ppid"] == 1 for p in nginx)
    assert all(p["pid"] not in (999, 1000) for items in data.values() for p in items)
    gunicorn = [p for p in data["app_servers"] if p["program"] == "gunicorn"]
    assert gunicorn and all(p["bind"][0].startswith("unix:/tmp/") for p in gunicorn)


# -- Apache 2.4 and HAProxy 2.6 (recorded on this machine: masters started with -f under /tmp/dcap) --------------
DCAP = "/tmp/dcap"
APACHE_FPM = f"unix:{DCAP}/run/php-fpm.sock"


def test_discovery_finds_apache_logs_and_upstreams_of_a_master_started_with_f() -> None:
    """apache2 -f/-d of the running master: its ErrorLog/CustomLog files and both ProxyPass targets;
    the fcgi socket nobody listens on is upstream_no_listener, the HTTP one names its listener."""
    findings = drive(Discovery, {}, replies(FIXTURES / "apache_haproxy.json"))
    facts = _facts(findings)
    assert facts["apache_error_log"].split(",") == [
        f"{DCAP}/apache/logs/error.log",
        f"{DCAP}/apache/logs/site_error.log",
    ]
    assert facts["apache_access_log"] == f"{DCAP}/apache/logs/site_access.log"
    assert {APACHE_FPM, "127.0.0.1:18081"} <= set(facts["upstreams"].split(","))
    apache = {
        f.data["upstream"]: f for f in findings if f.kind.startswith("proxy.upstream") and f.data["proxy"] == "apache"
    }
    assert apache[APACHE_FPM].kind == "proxy.upstream_no_listener"
    assert apache[APACHE_FPM].evidence == (f'ProxyPass /php/ "{APACHE_FPM}|fcgi://localhost/var/www/"',)
    assert apache["127.0.0.1:18081"].kind == "proxy.upstream_listening"
    assert "python3" in apache["127.0.0.1:18081"].summary


def test_apache2ctl_gets_the_running_masters_d_and_f() -> None:
    """Plain apache2ctl reads /etc/apache2 (recorded: it described the distribution's default vhost and
    ${APACHE_LOG_DIR} logs, not the running master); the runbook passes the master's -d/-f as argv."""
    commands, _ = asked(Discovery, {}, replies(FIXTURES / "apache_haproxy.json"))
    apache = [c for c in commands if "-S" in c.argv or "DUMP_INCLUDES" in c.argv]
    assert [c.argv[4:8] for c in apache] == [("-d", f"{DCAP}/apache", "-f", f"{DCAP}/apache/httpd.conf")] * 2
    plain = replies(FIXTURES / "apache_haproxy_without_f.json")["apache2ctl -S"]
    assert isinstance(plain, CommandResult)
    assert 'ServerRoot: "/etc/apache2"' in plain.stdout and DCAP not in plain.stdout


def test_discovery_checks_haproxy_server_lines_against_listeners() -> None:
    """HAProxy: both `server` lines are upstreams; the one with no listener is upstream_no_listener.
    `log /dev/log` goes to the local syslog, which Debian's haproxy package files as /var/log/haproxy.log."""
    findings = drive(Discovery, {}, replies(FIXTURES / "apache_haproxy.json"))
    facts = _facts(findings)
    assert {"127.0.0.1:18081", "127.0.0.1:18099"} <= set(facts["upstreams"].split(","))
    assert facts["haproxy_log"] == "/var/log/haproxy.log"
    haproxy = {
        f.data["upstream"]: f for f in findings if f.kind.startswith("proxy.upstream") and f.data["proxy"] == "haproxy"
    }
    assert haproxy["127.0.0.1:18081"].kind == "proxy.upstream_listening"
    assert haproxy["127.0.0.1:18099"].kind == "proxy.upstream_no_listener"
    assert haproxy["127.0.0.1:18099"].evidence == ("server app2 127.0.0.1:18099 check",)
    config = next(f for f in findings if f.kind == "proxy.config" and f.data["program"] == "haproxy")
    assert config.data["log_targets"] == ["/dev/log"]
    assert any(f.kind == "config_test.haproxy_ok" for f in findings)


def test_haproxy_logging_to_stdout_or_remote_syslog_is_no_log_file() -> None:
    """Near miss: HAProxy never writes a file itself; `log stdout` (journal) or a remote syslog gives no haproxy_log."""
    recorded = replies(FIXTURES / "apache_haproxy.json")
    key = f"cat {DCAP}/haproxy/haproxy.cfg"
    cat = recorded[key]
    assert isinstance(cat, CommandResult)
    for target in ("stdout format raw local0", "10.0.0.5:514 local0"):
        text = cat.stdout.replace("log /dev/log local0", f"log {target}")
        findings = drive(Discovery, {}, {**recorded, key: cat.model_copy(update={"stdout": text})})
        assert "haproxy_log" not in _facts(findings)
