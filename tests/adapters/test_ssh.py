"""The asyncssh Executor against a real OpenSSH sshd on 127.0.0.1 (see conftest.py)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.adapters.ssh import SshExecutor, build_argv
from bot.core.commands import Command, Target, parse_address
from bot.errors import AuthenticationFailed, HostKeyMismatch, HostUnreachable
from tests.adapters.conftest import ListAuditor, Sshd, free_port, public_line, wait_for


def executor(
    auditor: ListAuditor | None = None,
    *,
    max_channels: int = 8,
    max_handshakes: int = 8,
    command_timeout: float = 15.0,
    max_output: int = 1024 * 1024,
) -> SshExecutor:
    return SshExecutor(
        auditor,
        "test",
        max_channels=max_channels,
        max_handshakes=max_handshakes,
        command_timeout=command_timeout,
        max_output=max_output,
    )


# --------------------------------------------------------------------------------------------
# parse_address and the command line (no server)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("web-1", (None, "web-1", None)),
        ("root@web-1", ("root", "web-1", None)),
        ("deploy@10.0.0.5:2222", ("deploy", "10.0.0.5", 2222)),
        ("[::1]:2222", (None, "::1", 2222)),
        ("ops@[fe80::1%eth0]", ("ops", "fe80::1%eth0", None)),
        ("::1", (None, "::1", None)),
        ("a.example.com:22", (None, "a.example.com", 22)),
    ],
)
def test_parse_address_accepts_user_host_port_and_ipv6(text: str, expected: tuple[str | None, str, int | None]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "  ",
        "@host",
        "host:",
        "host:0",
        "host:65536",
        "host:x",
        "-oProxyCommand=x",
        "[::1",
        "[::1]x",
        "[web]:22",
        "a b",
        "user@",
        "ho;st",
        "$(id)@host",
    ],
)
def test_parse_address_rejects_bad_input_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError, match="SSH target"):
        parse_address(text)


def test_command_line_has_env_timeout_and_sudo_only_when_asked() -> None:
    cmd = Command.of("journalctl", "--no-pager", "-n", "5", timeout=2.5)
    assert build_argv(cmd, 2.5, sudo=False) == [
        "env",
        "LC_ALL=C",
        "SYSTEMD_PAGER=cat",
        "PAGER=cat",
        "SYSTEMD_COLORS=0",
        "timeout",
        "-k",
        "2",
        "2.5",
        "journalctl",
        "--no-pager",
        "-n",
        "5",
    ]
    # sudo comes last, right before the program, so a NOEXEC sudoers rule can cover it
    assert build_argv(cmd, 15.0, sudo=True)[8:12] == ["15", "sudo", "-n", "journalctl"]


# --------------------------------------------------------------------------------------------
# Running commands


async def test_results_carry_exit_status_stdout_stderr_and_signals(sshd: Sshd, auditor: ListAuditor) -> None:
    async with executor(auditor).session(sshd.target()) as host:
        assert host.host == "test-host"
        ok = await host.run(Command.of("sh", "-c", "echo out; echo err >&2; exit 3"))
        env = await host.run(Command.of("sh", "-c", 'echo "$LC_ALL $SYSTEMD_PAGER $PAGER $SYSTEMD_COLORS"; tty'))
        killed = await host.run(Command.of("sh", "-c", "kill -TERM $$"))
        missing = await host.run(Command.of("no-such-program-here"))
        bad_utf8 = await host.run(Command.of("printf", "a\\377b"))
    assert (ok.exit_status, ok.stdout, ok.stderr, ok.error, ok.ok) == (3, "out\n", "err\n", None, False)
    assert ok.host == "test-host" and ok.duration > 0
    assert env.stdout.splitlines() == ["C cat cat 0", "not a tty"]  # pagers off, no PTY
    assert killed.exit_status == 128 + 15 and killed.error is None
    assert missing.exit_status == 127
    assert bad_utf8.stdout == "a\ufffdb"


async def test_many_commands_share_one_connection(sshd: Sshd) -> None:
    async with executor().session(sshd.target()) as host:
        results = [await host.run(Command.of("echo", str(i))) for i in range(12)]
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(12)]
    assert sshd.logins() == 1


async def test_more_concurrent_commands_than_channels_all_succeed(sshd: Sshd) -> None:
    """MaxSessions is 10 on the server; 30 at once only work because we cap channels at 8."""
    started = time.monotonic()
    async with executor(max_channels=8).session(sshd.target()) as host:
        results = await asyncio.gather(*(host.run(Command.of("sh", "-c", f"sleep 0.3; echo {i}")) for i in range(30)))
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(30)]
    assert all(r.ok for r in results)
    assert time.monotonic() - started >= 4 * 0.3  # 30 / 8 → at least four waves
    assert sshd.logins() == 1


async def test_a_channel_the_server_refuses_over_its_max_sessions_is_asked_for_again(sshd: Sshd) -> None:
    """With more channels allowed than the server's MaxSessions (10), the refused ones are retried after a
    pause, as when sshd still counts sessions we just closed: every command runs, none fails to open."""
    async with executor(max_channels=14).session(sshd.target()) as host:
        results = await asyncio.gather(*(host.run(Command.of("sh", "-c", f"sleep 0.4; echo {i}")) for i in range(14)))
    assert [r.error for r in results] == [None] * 14
    assert [r.stdout for r in results] == [f"{i}\n" for i in range(14)]


async def test_concurrent_sessions_are_held_to_the_handshake_cap(sshd: Sshd) -> None:
    """MaxStartups 10:30:100 drops some of >10 parallel handshakes; 8 at a time never trips it."""
    ex = executor(max_handshakes=8)

    async def one(i: int) -> str:
        async with ex.session(sshd.target()) as host:
            return (await host.run(Command.of("echo", str(i)))).stdout

    assert await asyncio.gather(*(one(i) for i in range(24))) == [f"{i}\n" for i in range(24)]
    assert sshd.logins() == 24


async def test_hanging_command_times_out_and_is_killed_on_the_host(sshd: Sshd, auditor: ListAuditor) -> None:
    started = time.monotonic()
    async with executor(auditor).session(sshd.target()) as host:
        result = await host.run(Command.of("sh", "-c", "echo partial; exec sleep 60", timeout=1))
        assert not sshd.running()  # the sleep is gone, not just our channel
        after = await host.run(Command.of("echo", "still usable"))
    assert time.monotonic() - started < 3.5
    assert (result.error, result.exit_status, result.stdout) == ("command_timeout", None, "partial\n")
    assert 0.9 <= result.duration < 2.0
    assert after.ok
    assert auditor.entries[0].error == "command_timeout"


async def test_command_ignoring_term_is_killed_after_the_grace(sshd: Sshd) -> None:
    async with executor(command_timeout=1).session(sshd.target()) as host:
        result = await host.run(Command.of("sh", "-c", "trap '' TERM; sleep 30"))
        assert not sshd.running()
    assert result.error == "command_timeout" and result.exit_status is None
    assert result.duration < 4.5


async def test_stopped_command_ends_as_timeout(sshd: Sshd) -> None:
    async with executor().session(sshd.target()) as host:
        result = await host.run(Command.of("sh", "-c", "echo before; kill -STOP $$; echo after", timeout=1))
        assert not sshd.running()
    assert result.error == "command_timeout" and result.stdout == "before\n"
    assert result.duration < 2.5


async def test_cancelled_run_closes_its_channel_and_is_audited(sshd: Sshd, auditor: ListAuditor) -> None:
    async with executor(auditor).session(sshd.target()) as host:
        task = asyncio.create_task(host.run(Command.of("sleep", "30", timeout=2)))
        await asyncio.sleep(0.5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (await host.run(Command.of("true"))).ok
        # sshd ignores SSH "signal" requests for root logins, so the remote ``timeout 2`` is what ends it.
        assert await asyncio.to_thread(wait_for, lambda: not sshd.running(), 3.0)
    assert [e.error for e in auditor.entries] == ["cancelled", None]


async def test_output_is_capped_and_marked_truncated(sshd: Sshd) -> None:
    async with executor(max_output=1000).session(sshd.target()) as host:
        result = await host.run(Command.of("head", "-c", "50000", "/dev/zero"))
    assert result.ok and result.truncated and len(result.stdout) == 1000


async def test_sudo_is_not_run_unless_the_host_allows_it(sshd: Sshd, auditor: ListAuditor, tmp_path: Path) -> None:
    marker = tmp_path / "sudo-ran"
    async with executor(auditor).session(sshd.target(allow_sudo=False)) as host:
        result = await host.run(Command.of("touch", str(marker), sudo=True))
    assert (result.error, result.exit_status) == ("sudo_not_allowed", None)
    assert not marker.exists()
    assert auditor.entries[0].error == "sudo_not_allowed"
    assert "Starting session" not in sshd.log_text()  # no channel was even opened


@pytest.mark.skipif(os.geteuid() != 0, reason="sudo -n without a password needs root here; CI runs as root")
async def test_sudo_runs_with_n_when_allowed(sshd: Sshd) -> None:
    async with executor().session(sshd.target(allow_sudo=True)) as host:
        result = await host.run(Command.of("id", "-u", sudo=True))
    assert result.ok and result.stdout == "0\n"


NASTY = [
    "$(touch /tmp/incident-bot-pwned)",
    "`id`",
    "a; rm -rf /",
    "it's",
    '"double"',
    "line1\nline2",
    "*",
    "-n",
    "$HOME",
    "\\",
    "a b\tc",
    "--",
    "|cat",
    "&&",
    ">x",
    "#comment",
    "é ünïcödé ✓",
    "",
]


async def test_shell_metacharacters_reach_the_program_literally(sshd: Sshd, tmp_path: Path) -> None:
    async with executor().session(sshd.target()) as host:
        result = await host.run(Command.of("printf", "%s\\n", *NASTY))
    assert result.ok
    assert result.stdout == "".join(f"{arg}\n" for arg in NASTY)
    assert not Path("/tmp/incident-bot-pwned").exists()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    args=st.lists(
        st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=30),
        min_size=1,
        max_size=6,
    )
)
async def test_any_argument_text_reaches_the_program_unchanged(sshd: Sshd, args: list[str]) -> None:
    async with executor().session(sshd.target()) as host:
        result = await host.run(Command.of("printf", "%s\\0", *args))
    assert result.ok, result
    assert result.stdout == "".join(f"{a}\0" for a in args)


async def test_every_command_is_audited(sshd: Sshd, auditor: ListAuditor) -> None:
    async with executor(auditor).session(sshd.target(name="web-1")) as host:
        results = [await host.run(Command.of("echo", "hi")), await host.run(Command.of("sh", "-c", "exit 2"))]
    assert len(auditor.entries) == 2
    for entry, result in zip(auditor.entries, results, strict=True):
        assert entry.trigger == "test" and entry.host == "web-1"
        assert entry.argv[-len(result.command.argv) :] == result.command.argv
        assert entry.exit_status == result.exit_status
        assert entry.output_sha256 == hashlib.sha256((result.stdout + result.stderr).encode()).hexdigest()
    assert auditor.entries[1].exit_status == 2


# --------------------------------------------------------------------------------------------
# Connecting: failures become our errors


async def test_refused_port_is_unreachable_fast(sshd: Sshd) -> None:
    started = time.monotonic()
    with pytest.raises(HostUnreachable, match=r"test-host.*refused") as info:
        async with executor().session(sshd.target(port=free_port())):
            pass
    assert time.monotonic() - started < 2
    assert info.value.host == "test-host" and info.value.__cause__ is not None


async def test_black_holed_port_is_unreachable_within_connect_timeout(sshd: Sshd) -> None:
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)  # never accepted from, never answers
        started = time.monotonic()
        with pytest.raises(HostUnreachable, match="no SSH handshake within 1s"):
            async with executor().session(sshd.target(port=hole.getsockname()[1], connect_timeout=1.0)):
                pass
        assert time.monotonic() - started < 2.5


async def test_unresolvable_name_is_unreachable(sshd: Sshd) -> None:
    with pytest.raises(HostUnreachable):
        async with executor().session(sshd.target(address="no-such-host.invalid", connect_timeout=3.0)):
            pass


async def test_wrong_key_is_authentication_failed(sshd: Sshd) -> None:
    with pytest.raises(AuthenticationFailed, match="test-host") as info:
        async with executor().session(sshd.target(identity=(str(sshd.keys.stranger_key),))):
            pass
    assert info.value.code == "auth_failed"


async def test_no_identity_and_no_agent_offers_nothing(sshd: Sshd) -> None:
    """Without an identity the host's own ~/.ssh keys are NOT tried."""
    with pytest.raises(AuthenticationFailed):
        async with executor().session(sshd.target(identity=())):
            pass


async def test_changed_host_key_is_a_mismatch(sshd: Sshd, tmp_path: Path) -> None:
    known = tmp_path / "changed_known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {public_line(sshd.keys.other_host_key)}\n")
    for policy in ("strict", "accept-new"):
        with pytest.raises(HostKeyMismatch, match="CHANGED"):
            async with executor().session(sshd.target(known_hosts=(str(known),), host_key_policy=policy)):
                pass
    assert known.read_text().count("\n") == 1  # accept-new never overwrites a changed key
    assert sshd.logins() == 0


async def test_unknown_host_key_is_a_mismatch_when_strict(sshd: Sshd, tmp_path: Path) -> None:
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    for files in ((str(empty),), (str(tmp_path / "missing"),)):
        with pytest.raises(HostKeyMismatch, match="unknown"):
            async with executor().session(sshd.target(known_hosts=files)):
                pass


async def test_accept_new_records_the_key_then_strict_works(sshd: Sshd, tmp_path: Path) -> None:
    known = tmp_path / "tofu" / "known_hosts"
    async with executor().session(sshd.target(known_hosts=(str(known),), host_key_policy="accept-new")) as host:
        assert (await host.run(Command.of("true"))).ok
    assert known.read_text() == f"[127.0.0.1]:{sshd.port} {public_line(sshd.keys.host_key)}\n"
    async with executor().session(sshd.target(known_hosts=(str(known),))) as host:
        assert (await host.run(Command.of("true"))).ok
    assert known.read_text().count("\n") == 1


# --------------------------------------------------------------------------------------------
# OpenSSH client config and jump hosts


def write_config(path: Path, sshd: Sshd, extra: str = "") -> Path:
    path.write_text(
        f"Host jumpbox\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {sshd.keys.client_key}\n\n"
        f"Host app-alias\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User {sshd.user}\n"
        f"  IdentityFile {sshd.keys.client_key}\n{extra}"
    )
    return path


async def test_ssh_config_alias_supplies_hostname_port_user_and_identity(sshd: Sshd, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "ssh_config", sshd)
    target = Target(
        name="app-alias", address="app-alias", port=None, known_hosts=(str(sshd.known_hosts),), ssh_config=(str(cfg),)
    )
    async with executor().session(target) as host:
        result = await host.run(Command.of("id", "-un"))
    assert result.stdout == f"{sshd.user}\n"
    assert sshd.logins() == 1


async def test_proxy_jump_from_ssh_config(sshd: Sshd, tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "ssh_config", sshd, "  ProxyJump jumpbox\n")
    target = Target(
        name="app-alias", address="app-alias", port=None, known_hosts=(str(sshd.known_hosts),), ssh_config=(str(cfg),)
    )
    async with executor().session(target) as host:
        assert (await host.run(Command.of("echo", "via jump"))).stdout == "via jump\n"
    assert sshd.logins() == 2  # the jump host, then the target through it
    assert sshd.log_text().count("Starting session: command") == 1  # the jump connection only tunnels


async def test_explicit_proxy_jump_uses_our_keys_and_known_hosts(sshd: Sshd) -> None:
    target = sshd.target(proxy_jump=f"{sshd.user}@127.0.0.1:{sshd.port}")
    async with executor().session(target) as host:
        assert (await host.run(Command.of("true"))).ok
    assert sshd.logins() == 2


async def test_jump_host_failure_names_the_jump_host(sshd: Sshd) -> None:
    target = sshd.target(proxy_jump=f"{sshd.user}@127.0.0.1:{free_port()}")
    with pytest.raises(HostUnreachable, match="via jump host"):
        async with executor().session(target):
            pass


# --------------------------------------------------------------------------------------------
# The host's own ~/.ssh and agent stay out unless asked for


@pytest.fixture
def agent(sshd: Sshd, tmp_path: Path) -> Iterator[str]:
    """A real ssh-agent holding the authorised client key; yields its socket path."""
    if shutil.which("ssh-agent") is None or shutil.which("ssh-add") is None:
        pytest.fail("ssh-agent is not installed: run ./dev setup")
    sock = str(tmp_path / "agent.sock")
    proc = subprocess.Popen(["ssh-agent", "-D", "-a", sock], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_for(lambda: Path(sock).exists(), 5)
        subprocess.run(
            ["ssh-add", "-q", str(sshd.keys.client_key)],
            env={**os.environ, "SSH_AUTH_SOCK": sock},
            check=True,
            capture_output=True,
        )
        yield sock
    finally:
        proc.terminate()
        proc.wait(5)


def fake_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sshd: Sshd) -> None:
    """A $HOME whose ~/.ssh holds a key the server accepts, a config and known_hosts."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    shutil.copy(sshd.keys.client_key, home / ".ssh" / "id_ed25519")
    (home / ".ssh" / "id_ed25519").chmod(0o600)
    shutil.copy(sshd.known_hosts, home / ".ssh" / "known_hosts")
    (home / ".ssh" / "config").write_text(f"Host *\n  IdentityFile {sshd.keys.client_key}\n")
    monkeypatch.setenv("HOME", str(home))


async def test_home_ssh_keys_config_and_agent_are_never_used_implicitly(
    sshd: Sshd, agent: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_home(monkeypatch, tmp_path, sshd)
    monkeypatch.setenv("SSH_AUTH_SOCK", agent)
    with pytest.raises(AuthenticationFailed):
        async with executor().session(sshd.target(identity=())):
            pass


async def test_agent_is_used_when_the_target_asks(sshd: Sshd, agent: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SSH_AUTH_SOCK", agent)
    async with executor().session(sshd.target(identity=(), use_agent=True)) as host:
        assert (await host.run(Command.of("true"))).ok
