"""A proxy's real configuration and whether its upstreams have a listener.

Reads, in one input, any of:

* ``nginx -T`` dumps (``src/core/nginx.c``: every file as ``# configuration file F:`` then its text),
  recognised by that line or a ``### $ nginx ... -T`` header: ``error_log``, ``access_log``, ``upstream
  NAME { server ADDR ...; }`` blocks, ``proxy_pass``/``fastcgi_pass``/``uwsgi_pass``/``scgi_pass``/
  ``grpc_pass`` targets (``http://unix:/path:/uri``, ``unix:/path``, ``host:port``, an upstream name;
  targets with ``$variables`` are resolved at run time and skipped).
* HAProxy configuration files (header naming ``haproxy``): ``server NAME ADDR`` lines of ``backend``
  and ``listen`` sections (``unix@/path``, ``/path``, ``ipv4@host:port``); ``log TARGET`` lines
  (``log global`` excepted) as ``log_targets``.
* Apache httpd (header naming ``apache2ctl``/``apachectl``/``httpd``/``ProxyPass``): ``Main ErrorLog:``
  and ``ServerRoot:`` of ``-S``, and ``ErrorLog``, ``CustomLog``, ``ProxyPass``/``ProxyPassMatch``, ``BalancerMember``,
  ``SetHandler "proxy:unix:/path|fcgi://..."`` lines.
* ``ss -ltnpx`` / ``ss -ltnp`` / ``ss -lxp`` listener tables (iproute2 ``misc/ss.c``), under an ``ss``
  header or by their ``LISTEN`` rows.

Findings: ``proxy.listeners`` (INFO, who listens where) for a listener table; ``proxy.config`` (INFO)
per program with the log paths and upstreams in its data; when a
listener table was seen as well, one finding per upstream on this host: ``proxy.upstream_listening``
(OK, names the owning process) or ``proxy.upstream_no_listener`` (nothing listens where the proxy
forwards: upstream_down). An upstream on another host (a name, or an address this host does not
listen on) is ``proxy.upstream_remote`` (INFO): only a probe can tell. Outputs captured from the fault
lab and this machine's nginx 1.22/HAProxy 2.6/Apache 2.4: tests/fixtures/runbooks/discovery/.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal, quote_line
from bot.core.redact import redact
from bot.evidence.reader import Reader

MAX_ITEMS = 64

_NGINX_FILE = re.compile(r"^# configuration file (?P<path>\S+):\s*$")
_NGINX_UPSTREAM = re.compile(r"^\s*upstream\s+(?P<name>[^\s{]+)\s*\{")
_NGINX_DIRECTIVE = re.compile(
    r"^\s*(?P<name>error_log|access_log|proxy_pass|fastcgi_pass|uwsgi_pass|scgi_pass|grpc_pass|server)\s+"
    r"(?P<value>[^\s;]+)(?P<rest>[^;]*);?"
)
_HAPROXY_SECTION = re.compile(
    r"^(?P<kind>global|defaults|frontend|backend|listen|peers|resolvers|userlist|cache|program|mailers|"
    r"http-errors|ring)\b"
)
_HAPROXY_SERVER = re.compile(r"^\s*server\s+\S+\s+(?P<addr>\S+)")
_HAPROXY_LOG = re.compile(r"^\s*log\s+(?P<target>\S+)")
_APACHE_ROOT = re.compile(r'^ServerRoot:\s*"?(?P<path>[^"\s]+)')
_APACHE_MAIN_ERROR = re.compile(r'Main ErrorLog:\s*"?(?P<path>[^"\s]+)')
_APACHE_DIRECTIVE = re.compile(
    r"^\s*(?P<name>ErrorLog|CustomLog|TransferLog|ProxyPass|ProxyPassMatch|BalancerMember|SetHandler)\s+"
    r"(?P<args>.*?)\s*$",
    re.I,
)
_USERS = re.compile(r'\("(?P<name>[^"]+)",pid=(?P<pid>\d+)')
_LISTEN_ROW = r"(?m:^[ \t]*(?:(?:tcp|tcp6|u_str|u_seq)[ \t]+)?LISTEN[ \t]+\d+[ \t]+\d+[ \t]+\S)"
_LISTEN_RE = re.compile(_LISTEN_ROW)
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def upstream_address(value: str) -> tuple[str, bool] | None:
    """A proxy target as ``host:port``, ``unix:/path`` or a bare name, and whether it speaks TLS.

    ``http://unix:/run/app.sock:/uri`` → ``unix:/run/app.sock``; ``https://api:8443/x`` → ``api:8443``;
    ``http://backend`` → ``backend`` (an upstream name, or a host on the scheme's port: see
    :meth:`ProxyConfig.upstreams`); ``None`` for targets with variables.
    """
    value = value.strip().strip("\"'")
    if "$" in value or not value:
        return None
    scheme, sep, rest = ("", "", value) if value.startswith("unix:") else value.partition("://")
    if not sep:
        scheme, rest = "", value
    scheme = scheme.lower()
    tls = scheme in {"https", "grpcs", "wss", "h2"}
    if rest.startswith("unix:"):
        path = rest[5:].split("|", 1)[0]
        path = path.split(":", 1)[0]
        return (f"unix:{path}", tls) if path.startswith(("/", "@")) else None
    host = rest.split("/", 1)[0]
    return (host, tls) if host else None


def _split_hostport(addr: str) -> tuple[str, int | None]:
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit():
        return addr.strip("[]"), None
    return host.strip("[]"), int(port)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass
class _Program:
    files: list[str] = field(default_factory=list)
    error_logs: list[str] = field(default_factory=list)
    access_logs: list[str] = field(default_factory=list)
    #: (target, tls, the configuration line that names it)
    targets: list[tuple[str, bool, str]] = field(default_factory=list)
    #: HAProxy ``log`` targets (``/dev/log``, ``127.0.0.1:514``, ``stdout``; ``log global`` excluded)
    log_targets: list[str] = field(default_factory=list)
    #: Apache's ``ServerRoot:`` as ``apache2ctl -S`` prints it
    server_root: str = ""
    #: upstream block name → [(address, line)]
    groups: dict[str, list[tuple[str, str]]] = field(default_factory=dict)

    def add(self, items: list[Any], value: Any) -> None:
        if value not in items and len(items) < MAX_ITEMS:
            items.append(value)


@dataclass(frozen=True)
class _Listener:
    netid: str
    host: str
    port: int | None
    path: str | None
    owners: tuple[str, ...]
    line: str


class ProxyConfig(Reader):
    """nginx -T / HAProxy / Apache configuration plus ``ss -l`` listeners: the upstreams and who serves them."""

    name = "proxy.config"
    title = "proxy configuration (nginx -T, haproxy.cfg, apache2ctl -S) and listeners (ss -ltnpx)"
    triggers = (r"(?m:^# configuration file \S+:[ \t\r]*$)", _LISTEN_ROW)
    header = (
        r"(?:^|[\s$/])(?:nginx\b[^\n]*\s-T\b|haproxy\b|apache2?ctl\b|httpd\b|apache2\b)|ProxyPass"
        r"|(?:^|[\s$/])ss\s+-\w*l"
    )
    signals: ClassVar[dict[str, Signal]] = {
        "proxy.upstream_no_listener": Signal(cause="upstream_down", weight=0.6),
    }

    def __init__(self) -> None:
        self.programs: dict[str, _Program] = {}
        self.listeners: list[_Listener] = []
        self.ss_seen = False
        self._mode: str | None = None
        self._group: str | None = None
        self._haproxy_section = ""

    # -- blocks ---------------------------------------------------------------------------------
    def start_block(self, header: str) -> None:
        lowered = header.lower()
        if re.search(r"(?:^|[\s$/])ss\s+-\w*l", lowered):
            self._mode = "ss"
            self.ss_seen = True
        elif "haproxy" in lowered:
            self._mode = "haproxy"
        elif re.search(r"apache|httpd|proxypass", lowered):
            self._mode = "apache"
        else:
            self._mode = "nginx"
        self._group = None
        self._haproxy_section = ""

    def end_block(self) -> None:
        self._mode = None
        self._group = None

    # -- lines ----------------------------------------------------------------------------------
    def feed(self, line: str) -> bool:
        if _NGINX_FILE.match(line) and self._mode in (None, "nginx"):
            self._mode = "nginx"
            prog = self._program("nginx")
            prog.add(prog.files, line.split("# configuration file ", 1)[1].strip().rstrip(":"))
            return True
        if self._mode != "ss" and _LISTEN_RE.search(line):
            self.ss_seen = True
            self._listener(line)
            return self._mode is not None
        if self._mode is None:
            return False
        if self._mode == "ss":
            self._listener(line)
        elif self._mode == "nginx":
            self._nginx(line)
        elif self._mode == "haproxy":
            self._haproxy(line)
        else:
            self._apache(line)
        return True

    def _program(self, name: str) -> _Program:
        return self.programs.setdefault(name, _Program())

    def _nginx(self, line: str) -> None:
        text = line.split("#", 1)[0] if not line.lstrip().startswith("#") else ""
        if not text.strip():
            return
        prog = self._program("nginx")
        group = _NGINX_UPSTREAM.match(text)
        if group:
            self._group = group.group("name")
            prog.groups.setdefault(self._group, [])
            return
        directive = _NGINX_DIRECTIVE.match(text)
        if self._group is not None:
            if directive and directive.group("name") == "server" and " down" not in f" {directive.group('rest')}":
                target = upstream_address(directive.group("value"))
                if target and len(prog.groups[self._group]) < MAX_ITEMS:
                    prog.groups[self._group].append((target[0], quote_line(line.strip())))
            if "}" in text:
                self._group = None
            return
        if directive is None:
            return
        name, value = directive.group("name"), directive.group("value")
        if name == "error_log":
            if not value.startswith(("syslog:", "memory:")) and value not in ("stderr", "/dev/null"):
                prog.add(prog.error_logs, value)
        elif name == "access_log":
            if value != "off" and not value.startswith(("syslog:", "memory:")) and value != "/dev/null":
                prog.add(prog.access_logs, value)
        elif name.endswith("_pass"):
            target = upstream_address(value)
            if target is not None:
                prog.add(prog.targets, (target[0], target[1], quote_line(line.strip())))

    def _haproxy(self, line: str) -> None:
        section = _HAPROXY_SECTION.match(line)
        if section:
            self._haproxy_section = section.group("kind")
            return
        text = line.split("#", 1)[0]
        log = _HAPROXY_LOG.match(text)
        if log and log.group("target") != "global":
            prog = self._program("haproxy")
            prog.add(prog.log_targets, log.group("target"))
            return
        if self._haproxy_section not in ("backend", "listen"):
            return
        server = _HAPROXY_SERVER.match(text)
        if server is None:
            return
        addr = server.group("addr")
        for prefix in ("ipv4@", "ipv6@", "tcp@", "tcp4@", "tcp6@"):
            addr = addr.removeprefix(prefix)
        if addr.startswith(("unix@", "/")):
            addr = "unix:" + addr.removeprefix("unix@")
        elif "$" in addr or addr.startswith(("abns@", "fd@", "sockpair@")):
            return
        prog = self._program("haproxy")
        tls = bool(re.search(r"\sssl\b", line))
        prog.add(prog.targets, (addr, tls, quote_line(line.strip())))

    def _apache(self, line: str) -> None:
        prog = self._program("apache")
        root = _APACHE_ROOT.match(line)
        if root:
            prog.server_root = prog.server_root or root.group("path")
            return
        main = _APACHE_MAIN_ERROR.search(line)
        if main:
            prog.add(prog.error_logs, main.group("path"))
            return
        directive = _APACHE_DIRECTIVE.match(line.split(" #", 1)[0])
        if directive is None:
            return
        name = directive.group("name").lower()
        args = re.findall(r'"[^"]*"|\S+', directive.group("args"))
        values = [a.strip('"') for a in args]
        if not values:
            return
        if name == "errorlog":
            if not values[0].startswith(("|", "syslog")):
                prog.add(prog.error_logs, values[0])
        elif name in ("customlog", "transferlog"):
            if not values[0].startswith("|"):
                prog.add(prog.access_logs, values[0])
        else:
            if name == "sethandler":
                if not values[0].lower().startswith("proxy:"):
                    return
                raw = values[0][len("proxy:") :]
            elif name in ("proxypass", "proxypassmatch"):
                if len(values) < 2 or values[1] == "!":
                    return
                raw = values[1]
            else:
                raw = values[0]
            if raw.startswith("balancer://"):
                return
            target = upstream_address(raw)
            if target is not None:
                prog.add(prog.targets, (target[0], target[1], quote_line(line.strip())))

    def _listener(self, line: str) -> None:
        tokens = line.split()
        if "LISTEN" not in tokens or len(self.listeners) >= 4 * MAX_ITEMS:
            return
        i = tokens.index("LISTEN")
        if len(tokens) < i + 4:
            return
        netid = tokens[i - 1] if i > 0 else "tcp"
        local = tokens[i + 3]
        owners = tuple(f"{m.group('name')} (pid {m.group('pid')})" for m in _USERS.finditer(line))
        owners = tuple(dict.fromkeys(owners))
        if netid.startswith("u_") or local.startswith(("/", "@")):
            self.listeners.append(_Listener(netid, "", None, local, owners, quote_line(line.strip())))
            return
        host, port = _split_hostport(local)
        self.listeners.append(_Listener(netid, host, port, None, owners, quote_line(line.strip())))

    # -- results --------------------------------------------------------------------------------
    def upstreams(self, program: str) -> list[tuple[str, bool, str]]:
        """The program's upstream addresses (upstream names resolved to their servers), with a config line."""
        prog = self.programs.get(program)
        if prog is None:
            return []
        out: list[tuple[str, bool, str]] = []
        seen: set[str] = set()
        for target, tls, line in prog.targets:
            members = prog.groups.get(target)
            resolved = [(a, tls, lin) for a, lin in members] if members is not None else [(target, tls, line)]
            for given, is_tls, where in resolved:
                address = given
                if not address.startswith("unix:") and _split_hostport(address)[1] is None:
                    address = f"{address}:{443 if is_tls else 80}"
                if address not in seen:
                    seen.add(address)
                    out.append((address, is_tls, where))
        return out

    def _local_ips(self) -> set[str]:
        return {listener.host for listener in self.listeners if listener.host}

    def _serving(self, address: str) -> tuple[str, _Listener | None]:
        """``listening``/``missing``/``remote`` for an upstream address, and the matching listener."""
        if address.startswith("unix:"):
            path = address[5:]
            for listener in self.listeners:
                if listener.path == path:
                    return "listening", listener
            return "missing", None
        host, port = _split_hostport(address)
        ip = _ip(host)
        local = host.lower() in _LOOPBACK_NAMES or (ip is not None and (ip.is_loopback or host in self._local_ips()))
        if not local or port is None:
            return "remote", None
        for listener in self.listeners:
            if listener.port != port or listener.path is not None:
                continue
            lhost = listener.host
            lip = _ip(lhost)
            wildcard = lhost in ("*", "0.0.0.0", "::", "") or (lip is not None and lip.is_unspecified)
            same = lhost == host or (lip is not None and ip is not None and lip == ip)
            loop = host.lower() in _LOOPBACK_NAMES and lip is not None and lip.is_loopback
            if wildcard or same or loop:
                return "listening", listener
        return "missing", None

    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        if self.ss_seen:
            tcp = [{"host": x.host, "port": x.port, "owners": list(x.owners)} for x in self.listeners if x.path is None]
            unix = [{"path": x.path, "owners": list(x.owners)} for x in self.listeners if x.path is not None]
            out.append(
                Finding(
                    kind="proxy.listeners",
                    severity=Severity.INFO,
                    summary=f"{len(tcp)} TCP and {len(unix)} unix-socket listeners",
                    data={"tcp": tcp, "unix": unix},
                    reader=self.name,
                )
            )
        for program, prog in sorted(self.programs.items()):
            upstreams = self.upstreams(program)
            data = {
                "program": program,
                "files": list(prog.files),
                "error_logs": list(prog.error_logs),
                "access_logs": list(prog.access_logs),
                "upstreams": [a for a, _, _ in upstreams],
                "tls_upstreams": [a for a, tls, _ in upstreams if tls],
            }
            if prog.log_targets:
                data["log_targets"] = list(prog.log_targets)
            if prog.server_root:
                data["server_root"] = prog.server_root
            summary = f"{program} configuration: error log {', '.join(prog.error_logs) or 'not set'}; " + (
                f"upstreams {', '.join(data['upstreams'])}" if upstreams else "no upstream"
            )
            out.append(
                Finding(
                    kind="proxy.config",
                    severity=Severity.INFO,
                    summary=summary,
                    evidence=tuple(redact(line) for _, _, line in upstreams[:5]),
                    data=data,
                    reader=self.name,
                )
            )
            if self.ss_seen:
                out.extend(self._listening(program, upstreams))
        return out

    def _listening(self, program: str, upstreams: list[tuple[str, bool, str]]) -> list[Finding]:
        out: list[Finding] = []
        for address, _tls, line in upstreams:
            state, listener = self._serving(address)
            data: dict[str, Any] = {"upstream": address, "proxy": program}
            if state == "listening" and listener is not None:
                owner = ", ".join(listener.owners) or "a process this user cannot see"
                data["owners"] = list(listener.owners)
                out.append(
                    Finding(
                        kind="proxy.upstream_listening",
                        severity=Severity.OK,
                        summary=f"{address} ({program}'s upstream) has a listener: {owner}",
                        evidence=(redact(line), redact(listener.line)),
                        data=data,
                        reader=self.name,
                    )
                )
            elif state == "missing":
                out.append(
                    Finding(
                        kind="proxy.upstream_no_listener",
                        severity=Severity.CRITICAL,
                        summary=f"no listener on {address} ({program}'s upstream): nothing serves what "
                        f"{program} forwards to",
                        evidence=(redact(line),),
                        data=data,
                        reader=self.name,
                    )
                )
            else:
                out.append(
                    Finding(
                        kind="proxy.upstream_remote",
                        severity=Severity.INFO,
                        summary=f"{address} ({program}'s upstream) is not on this host; probe it directly",
                        evidence=(redact(line),),
                        data=data,
                        reader=self.name,
                    )
                )
        return out


READERS = (ProxyConfig,)
