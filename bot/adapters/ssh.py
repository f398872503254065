"""The SSH :class:`~bot.core.ports.Executor`: asyncssh against OpenSSH servers.

The one place that turns a :class:`~bot.core.commands.Command` into a command line
(``shlex.join``), and the one place that translates asyncssh and socket errors into ours.

* One connection per :meth:`SshExecutor.session`, every command of that session rides on it, at
  most ``max_channels`` at once (OpenSSH ``MaxSessions`` is 10), at most ``max_handshakes``
  handshakes in flight per target (OpenSSH ``MaxStartups`` starts dropping at 10).
* Every remote command is ``env LC_ALL=C … timeout -k 2 N [sudo -n] argv…``: the remote side is
  bounded by ``timeout``, the local side by a slightly longer timer that kills and closes the
  channel. ``timeout`` is the guarantee: sshd ignores SSH "signal" requests for root logins (no
  post-auth privilege separation), and closing a PTY-less channel does not stop the process.
  ``sudo`` comes last, right before the runbook's own program, so the program sudo starts is that
  program (never ``env`` or ``timeout``) and every sudoers rule can carry ``NOEXEC``; a command whose
  argv already starts with ``sudo`` (``sudo -n -u postgres psql …``) is sent as it is. This is also
  the line the forced-command gate on the host (``incident-bot gate``) parses.
* Host keys are checked against the target's known_hosts files, always; ``accept-new`` accepts a
  host that has no key there yet and appends the key to the first file; a changed key is always
  :class:`~bot.errors.HostKeyMismatch`. No ``~/.ssh/config``, default key or agent is used unless
  the target says so (``use_agent``: we fetch the agent's keys ourselves, so asyncssh never falls
  back to ``~/.ssh/id_*``); agent forwarding is always off. ProxyJump hops are connected here, with
  the same known_hosts and key rules, rather than by asyncssh (whose string tunnels use defaults).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shlex
import signal
import socket
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import asyncssh

from bot.core.commands import BASE_ENV, Command, CommandResult, Target, parse_address
from bot.core.ports import AuditEntry, Auditor
from bot.errors import AuthenticationFailed, ConfigError, HostKeyMismatch, HostUnreachable, RemoteError

__all__ = ["SshExecutor", "SshSession", "build_argv", "parse_address"]

MIB = 1024 * 1024
#: Seconds the remote ``timeout`` waits after TERM before it sends KILL (``timeout -k``).
KILL_AFTER = 2
#: Extra seconds the local timer gives the remote side before the channel is closed from here.
LOCAL_GRACE = KILL_AFTER + 1.0
#: How many ProxyJump hops we follow before calling the configuration circular.
MAX_HOPS = 8


def _seconds(value: float) -> str:
    """A duration for coreutils ``timeout``: plain decimal, never 0 (which would mean no timeout)."""
    return f"{max(value, 0.001):.3f}".rstrip("0").rstrip(".")


def build_argv(command: Command, timeout: float, *, sudo: bool) -> list[str]:
    """The argv run on the host: pagers off, C locale, bounded by ``timeout``, then ``sudo -n`` when
    asked (innermost: sudo starts the runbook's program itself), then the command's argv."""
    env = [f"{name}={value}" for name, value in BASE_ENV.items()]
    argv = list(command.argv)
    if sudo and argv[0] != "sudo":
        argv = ["sudo", "-n", *argv]
    return ["env", *env, "timeout", "-k", str(KILL_AFTER), _seconds(timeout), *argv]


# --------------------------------------------------------------------------------------------
# Host keys


@dataclass
class _HostKeys:
    """known_hosts lookups for one session (all hops), with ``accept-new`` recording."""

    files: tuple[Path, ...]
    accept_new: bool
    known: asyncssh.SSHKnownHosts
    #: (host, port) of the last lookup and whether known_hosts had any key for it.
    last: tuple[str, int, bool] = ("", 22, False)
    recorded: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, target: Target, files: Sequence[str]) -> _HostKeys:
        paths = tuple(Path(f).expanduser() for f in files)
        data = []
        for path in paths:
            try:
                data.append(path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as exc:
                raise HostKeyMismatch(target.name, f"cannot read known_hosts file {path}") from exc
        try:
            known = asyncssh.import_known_hosts("\n".join(data))
        except (ValueError, asyncssh.KeyImportError) as exc:
            raise HostKeyMismatch(target.name, f"malformed known_hosts in {', '.join(map(str, paths))}") from exc
        return cls(paths, target.host_key_policy == "accept-new", known)

    def lookup(self, host: str, addr: str, port: int | None) -> object:
        """asyncssh's ``known_hosts`` callable: the keys trusted for this host."""
        result = self.known.match(host, addr, port)
        has_keys = bool(result[0] or result[1] or result[3] or result[5])
        self.last = (host, port or 22, has_keys)
        return result

    def accept(self, host: str, port: int, key: asyncssh.SSHKey) -> bool:
        """Called for a key known_hosts does not trust: accept only a NEW host under accept-new."""
        last_host, last_port, has_keys = self.last
        if not self.accept_new or has_keys or (last_host, last_port) != (host, port):
            return False
        pattern = host if port == 22 else f"[{host}]:{port}"
        line = f"{pattern} {key.export_public_key().decode('ascii').strip()}"
        first = self.files[0]
        first.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        is_new = not first.exists()
        existing = "" if is_new else first.read_text(encoding="utf-8")
        with first.open("a", encoding="utf-8") as fh:
            fh.write(("" if not existing or existing.endswith("\n") else "\n") + line + "\n")
        if is_new:
            first.chmod(0o600)
        self.known.load(line + "\n")
        self.recorded.append(line)
        return True

    def describe(self) -> str:
        host, port, has_keys = self.last
        where = host if port == 22 else f"[{host}]:{port}"
        if has_keys:
            return f"host key for {where} CHANGED: it does not match known_hosts (possible man-in-the-middle)"
        return f"host key for {where} is unknown: not in known_hosts ({', '.join(map(str, self.files))})"


class _Client(asyncssh.SSHClient):
    def __init__(self, keys: _HostKeys) -> None:
        self._keys = keys

    def validate_host_public_key(self, host: str, addr: str, port: int, key: asyncssh.SSHKey) -> bool:
        return self._keys.accept(host, port, key)


# --------------------------------------------------------------------------------------------
# Running one command


class _Capture(asyncssh.SSHClientSession[bytes]):
    """Collects capped stdout/stderr and how the remote process ended."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.out = bytearray()
        self.err = bytearray()
        self.truncated = False
        self.exit_status: int | None = None
        self.exit_signal: str | None = None
        self.lost: Exception | None = None
        self.closed = asyncio.Event()

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        buf = self.err if datatype == asyncssh.EXTENDED_DATA_STDERR else self.out
        room = self.cap - len(buf)
        if len(data) > room:
            self.truncated = True
        if room > 0:
            buf.extend(data[:room])

    def exit_status_received(self, status: int) -> None:
        self.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.exit_signal = signal

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc
        self.closed.set()


def _signal_status(name: str) -> int | None:
    try:
        return 128 + int(signal.Signals[f"SIG{name}"])
    except KeyError:
        return None


#: Pauses before asking again for a session channel the server refused (see ``SshSession._open``).
CHANNEL_RETRIES = (0.2, 0.5, 1.0)


class SshSession:
    """One open connection to a host; :meth:`run` never raises for a command's own failure."""

    def __init__(self, executor: SshExecutor, target: Target, conn: asyncssh.SSHClientConnection) -> None:
        self._executor = executor
        self._target = target
        self._conn = conn
        self._channels = asyncio.Semaphore(executor.max_channels)

    @property
    def host(self) -> str:
        return self._target.name

    async def run(self, command: Command) -> CommandResult:
        ex = self._executor
        timeout = command.timeout or ex.command_timeout
        argv = build_argv(command, timeout, sudo=command.sudo)
        if command.sudo and not self._target.allow_sudo:
            return ex.finish(self._target, command, argv, exit_status=None, error="sudo_not_allowed")
        capture = _Capture(ex.max_output)
        error: str | None = None
        async with self._channels:
            # The duration is the command's own, not the wait for a free channel.
            started = time.monotonic()
            chan: asyncssh.SSHClientChannel[bytes] | None = None
            try:
                chan = await self._open(capture, argv)
                chan.write_eof()
                try:
                    async with asyncio.timeout(timeout + LOCAL_GRACE):
                        await capture.closed.wait()
                except TimeoutError:
                    error = "command_timeout"
            except asyncssh.ChannelOpenError:
                error = "channel_open_failed"
            except (asyncssh.Error, OSError):
                error = "connection_lost"
            except asyncio.CancelledError:
                error = "cancelled"
                raise
            finally:
                if chan is not None and not capture.closed.is_set():
                    _kill(chan)
                elapsed = time.monotonic() - started
                result = self._result(command, capture, error=error, elapsed=elapsed, timeout=timeout)
                ex.audit(self._target, argv, result)
        return result

    async def _open(self, capture: _Capture, argv: list[str]) -> asyncssh.SSHClientChannel[bytes]:
        """A session channel for ``argv``. sshd may still count a session we just closed against its
        ``MaxSessions`` (or a forced command may be slow to exit): a refused channel is asked for again
        after a short pause, a few times, before the command is reported as ``channel_open_failed``."""
        for pause in (*CHANNEL_RETRIES, None):
            try:
                chan, _ = await self._conn.create_session(
                    lambda: capture, shlex.join(argv), encoding=None, request_pty=False, env={}, send_env=None
                )
                return chan
            except asyncssh.ChannelOpenError:
                if pause is None:
                    raise
                await asyncio.sleep(pause)
        raise AssertionError("unreachable")

    def _result(
        self, command: Command, cap: _Capture, *, error: str | None, elapsed: float, timeout: float
    ) -> CommandResult:
        status = cap.exit_status
        if status is None and cap.exit_signal is not None:
            status = _signal_status(cap.exit_signal)
        if error is None and status is None and cap.lost is not None:
            error = "connection_lost"
        if error is None and status is None:
            error = "no_exit_status"
        # coreutils timeout exits 124 after TERM, or dies of KILL when ``-k`` had to follow up.
        if error is None and elapsed >= timeout * 0.95 and (cap.exit_status == 124 or cap.exit_signal == "KILL"):
            error = "command_timeout"
        if error is not None:
            status = None
        return CommandResult(
            command=command,
            host=self._target.name,
            exit_status=status,
            stdout=cap.out.decode("utf-8", "replace"),
            stderr=cap.err.decode("utf-8", "replace"),
            duration=round(elapsed, 6),
            error=error,
            truncated=cap.truncated,
        )


def _kill(chan: asyncssh.SSHClientChannel[bytes]) -> None:
    """Ask sshd to KILL the process, then drop the channel (remote ``timeout`` is the backstop)."""
    with suppress(OSError):
        chan.kill()
    chan.close()


# --------------------------------------------------------------------------------------------
# The executor


class SshExecutor:
    """Opens one SSH connection per :meth:`session`; see the module docstring for the rules."""

    def __init__(
        self,
        auditor: Auditor | None,
        trigger: str,
        *,
        max_channels: int = 8,
        max_handshakes: int = 8,
        command_timeout: float = 15.0,
        max_output: int = MIB,
    ) -> None:
        if max_channels < 1 or max_handshakes < 1 or command_timeout <= 0 or max_output < 1:
            raise ValueError("max_channels, max_handshakes, command_timeout and max_output must be positive")
        self.auditor = auditor
        self.trigger = trigger
        self.max_channels = max_channels
        self.max_handshakes = max_handshakes
        self.command_timeout = command_timeout
        self.max_output = max_output
        self._handshakes: dict[tuple[str, int | None], asyncio.Semaphore] = {}

    @asynccontextmanager
    async def session(self, target: Target) -> AsyncIterator[SshSession]:
        async with AsyncExitStack() as stack:
            key = (target.address, target.port)
            gate = self._handshakes.setdefault(key, asyncio.Semaphore(self.max_handshakes))
            async with gate:
                conn = await _Connector(target).connect(stack)
            yield SshSession(self, target, conn)

    def finish(
        self, target: Target, command: Command, argv: list[str], *, exit_status: int | None, error: str
    ) -> CommandResult:
        """A result for a command that was never sent, audited like any other."""
        result = CommandResult(command=command, host=target.name, exit_status=exit_status, error=error)
        self.audit(target, argv, result)
        return result

    def audit(self, target: Target, argv: list[str], result: CommandResult) -> None:
        if self.auditor is None:
            return
        digest = hashlib.sha256((result.stdout + result.stderr).encode("utf-8")).hexdigest()
        self.auditor.record(
            AuditEntry(
                at=datetime.now(UTC),
                trigger=self.trigger,
                host=target.name,
                argv=tuple(argv),
                exit_status=result.exit_status,
                duration=result.duration,
                output_sha256=digest,
                error=result.error,
            )
        )


class _Connector:
    """Opens the connection for one target, ProxyJump hops included, translating every error."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.config: list[str] | None = list(target.ssh_config) or None
        self.keys: _HostKeys | None = None
        self.agent_keys: list[asyncssh.SSHKeyPair] = []
        self.where = target.name

    async def connect(self, stack: AsyncExitStack) -> asyncssh.SSHClientConnection:
        t = self.target
        port = t.port if "port" in t.model_fields_set else None  # unset: the ssh_config decides, else 22
        head = await self._options(t.address, port, t.user)
        known_files = list(t.known_hosts) or list(_config_list(head, "UserKnownHostsFile"))
        if not known_files:
            raise HostKeyMismatch(t.name, "no known_hosts file configured: host keys cannot be verified")
        self.keys = await asyncio.to_thread(_HostKeys.load, t, known_files)
        if t.use_agent:
            self.agent_keys = await self._agent_keys(stack, head)
        jump = t.proxy_jump or (head.tunnel if isinstance(head.tunnel, str) else None)
        tunnel = await self._hops(stack, jump, 0)
        self.where = t.name
        return await self._open(stack, head, host=t.address, port=port, user=t.user, tunnel=tunnel)

    async def _hops(self, stack: AsyncExitStack, jump: str | None, depth: int) -> asyncssh.SSHClientConnection | None:
        """Connect through ``a,b,c`` in order; each hop's own ProxyJump (from the config) comes first."""
        if not jump or jump.lower() == "none":
            return None
        if depth > MAX_HOPS:
            raise ConfigError("ssh.config", f"ProxyJump for {self.target.name} nests deeper than {MAX_HOPS} hops")
        tunnel: asyncssh.SSHClientConnection | None = None
        for index, hop in enumerate(jump.split(",")):
            try:
                user, host, port = parse_address(hop)
            except ValueError as exc:
                raise ConfigError("ssh.proxy_jump", str(exc)) from exc
            opts = await self._options(host, port, user)
            if index == 0:
                inner = opts.tunnel if isinstance(opts.tunnel, str) else None
                tunnel = await self._hops(stack, inner, depth + 1)
            self.where = f"{self.target.name} (via jump host {hop})"
            tunnel = await self._open(stack, opts, host=host, port=port, user=user, tunnel=tunnel)
        return tunnel

    async def _options(self, host: str, port: int | None, user: str | None) -> asyncssh.SSHClientConnectionOptions:
        """The ssh_config view of a host (HostName, Port, User, ProxyJump…); loads no key."""
        try:
            opts = await asyncssh.SSHClientConnectionOptions.construct(
                None,
                config=self.config,
                host=host,
                port=port if port is not None else (),
                username=user if user is not None else (),
                client_keys=None,
                agent_path=None,
                x509_trusted_certs=None,
                x509_trusted_cert_paths=[],
                gss_host=None,
            )
        except (OSError, ValueError) as exc:
            raise ConfigError("ssh.config", f"cannot use OpenSSH config {self.config}: {exc}") from exc
        return cast(asyncssh.SSHClientConnectionOptions, opts)

    async def _agent_keys(
        self, stack: AsyncExitStack, head: asyncssh.SSHClientConnectionOptions
    ) -> list[asyncssh.SSHKeyPair]:
        """The agent's keys (IdentityAgent, else $SSH_AUTH_SOCK), only for a target with ``use_agent``."""
        configured = _config_list(head, "IdentityAgent")
        path = configured[0] if configured else os.environ.get("SSH_AUTH_SOCK", "")
        if not path or path.lower() == "none":
            return []
        try:
            agent = await asyncssh.connect_agent(str(Path(path).expanduser()))
        except (OSError, asyncssh.Error):
            return []  # no agent: authentication then fails (or succeeds) on the identities alone
        stack.callback(agent.close)
        try:
            return list(await agent.get_keys())
        except (OSError, ValueError, asyncssh.Error):
            return []

    async def _client_keys(self, opts: asyncssh.SSHClientConnectionOptions) -> list[asyncssh.SSHKeyPair]:
        """Keys from ``target.identity``, else this host's IdentityFile; never the ~/.ssh defaults."""
        t = self.target
        explicit = list(t.identity)
        paths = explicit or [p for p in _config_list(opts, "IdentityFile") if Path(p).expanduser().exists()]
        loaded: Sequence[asyncssh.SSHKeyPair] = []
        if paths:
            try:
                loaded = await asyncio.to_thread(
                    asyncssh.load_keypairs,
                    [str(Path(p).expanduser()) for p in paths],
                    ignore_encrypted=not explicit,
                )
            except (OSError, ValueError, asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
                raise AuthenticationFailed(t.name, f"cannot load identity file(s) {', '.join(paths)}") from exc
        return [*loaded, *self.agent_keys]

    async def _open(
        self,
        stack: AsyncExitStack,
        opts: asyncssh.SSHClientConnectionOptions,
        *,
        host: str,
        port: int | None,
        user: str | None,
        tunnel: asyncssh.SSHClientConnection | None,
    ) -> asyncssh.SSHClientConnection:
        t = self.target
        keys = self.keys
        assert keys is not None
        client_keys = await self._client_keys(opts)
        try:
            async with asyncio.timeout(t.connect_timeout + 1):
                conn = await asyncssh.connect(
                    host,
                    port if port is not None else (),
                    tunnel=tunnel if tunnel is not None else (),
                    config=self.config,
                    username=user if user is not None else (),
                    known_hosts=keys.lookup,
                    client_factory=lambda: _Client(keys),
                    client_keys=client_keys or None,  # None: no public key auth, and no ~/.ssh defaults
                    agent_path=None,  # the agent's keys, if wanted, are already in client_keys
                    agent_forwarding=False,
                    x509_trusted_certs=None,
                    x509_trusted_cert_paths=[],
                    gss_host=None,
                    connect_timeout=t.connect_timeout,
                    request_pty=False,
                    keepalive_interval=30,
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise self._translate(exc, host, port) from exc
        stack.push_async_callback(_close, conn)
        return conn

    def _translate(self, exc: Exception, host: str, port: int | None) -> RemoteError:
        where = self.where
        shown = f"[{host}]" if ":" in host else host
        endpoint = f"{shown}:{port or 22}" if host != self.target.name else f"port {port or 22}"
        if isinstance(exc, asyncssh.HostKeyNotVerifiable):
            assert self.keys is not None
            return HostKeyMismatch(where, self.keys.describe())
        if isinstance(exc, asyncssh.PermissionDenied):
            return AuthenticationFailed(where, f"{endpoint}: the server refused every key we offered")
        if isinstance(exc, TimeoutError):
            return HostUnreachable(where, f"{endpoint}: no SSH handshake within {self.target.connect_timeout:g}s")
        if isinstance(exc, socket.gaierror):
            return HostUnreachable(where, f"cannot resolve host name {host!r}")
        if isinstance(exc, ConnectionRefusedError):
            return HostUnreachable(where, f"{endpoint}: connection refused")
        if isinstance(exc, OSError):
            return HostUnreachable(where, f"{endpoint}: {exc.strerror or 'network error'}")
        if isinstance(exc, asyncssh.ChannelOpenError):
            return HostUnreachable(where, f"{endpoint}: the jump host could not open a tunnel")
        if isinstance(exc, asyncssh.DisconnectError):
            return HostUnreachable(where, f"{endpoint}: the SSH server closed the connection during the handshake")
        if isinstance(exc, (asyncssh.KeyImportError, ValueError)):
            return AuthenticationFailed(where, f"{endpoint}: unusable key or option")
        return HostUnreachable(where, f"{endpoint}: SSH connection failed ({type(exc).__name__})")


def _config_list(opts: asyncssh.SSHClientConnectionOptions, name: str) -> list[str]:
    value = opts.config.get(name, ())
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return []


async def _close(conn: asyncssh.SSHClientConnection) -> None:
    conn.close()
    try:
        async with asyncio.timeout(5):
            await conn.wait_closed()
    except TimeoutError:
        conn.abort()
