"""Target resolution: config hosts and services, ssh_config aliases, [user@]host[:port], refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import HostConfig, ServiceConfig, Settings, SshDefaults
from bot.errors import UsageError
from bot.services.targets import Overrides, TargetRefused, parse, resolve

SETTINGS = Settings(
    ssh=SshDefaults(user="incident-bot", identity="/keys/bot", known_hosts="/keys/known_hosts"),
    hosts={
        "web-1": HostConfig(address="203.0.113.10", roles=["proxy"], facts={"nginx_error_log": "/x.log"}),
        "app-1": HostConfig(address="203.0.113.11", port=2222, user="deploy", roles=["app"]),
    },
    services={"shop": ServiceConfig(hosts=["web-1", "app-1"])},
)


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("web", (None, "web", None)),
        ("root@10.0.0.5", ("root", "10.0.0.5", None)),
        ("u@host.example.com:2222", ("u", "host.example.com", 2222)),
        ("[::1]:2200", (None, "::1", 2200)),
        ("ops@[2001:db8::1]", ("ops", "2001:db8::1", None)),
        ("fe80::1", (None, "fe80::1", None)),
    ],
)
def test_addresses_parse(text: str, parsed: tuple[str | None, str, int | None]) -> None:
    assert parse(text) == parsed


@pytest.mark.parametrize(
    "text", ["host:0", "host:99999", "host:ssh", "bad host", "a;b", "$(id)@h", "[h]:22", "h`x`", "-oProxyCommand=x"]
)
def test_bad_addresses_are_refused_clearly(text: str) -> None:
    with pytest.raises(UsageError):
        parse(text)


def test_a_config_host_carries_its_settings_and_defaults() -> None:
    [web] = resolve("web-1", SETTINGS)
    assert (web.address, web.port, web.user, web.roles) == ("203.0.113.10", 22, "incident-bot", ("proxy",))
    assert web.identity == ("/keys/bot",) and web.known_hosts == ("/keys/known_hosts",)
    assert web.facts == {"nginx_error_log": "/x.log"}


def test_a_service_resolves_to_its_hosts() -> None:
    assert [t.name for t in resolve("shop", SETTINGS)] == ["web-1", "app-1"]
    assert resolve("shop", SETTINGS)[1].port == 2222


def test_command_line_overrides_win() -> None:
    [web] = resolve("web-1", SETTINGS, Overrides(identity="/other", known_hosts="/kh"))
    assert web.identity == ("/other",) and web.known_hosts == ("/kh",)


def test_hosts_outside_the_config_are_refused_for_alerts_and_chat() -> None:
    with pytest.raises(TargetRefused):
        resolve("evil.example.com", SETTINGS, adhoc=False)
    assert resolve("web-1", SETTINGS, adhoc=False)


def test_an_ssh_config_alias_leaves_port_and_user_to_the_file(tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("Host lab\n  HostName 127.0.0.1\n  Port 2200\n  User root\n")
    [lab] = resolve("lab", SETTINGS, Overrides(ssh_config=str(config)))
    assert (lab.address, lab.port, lab.user, lab.ssh_config) == ("lab", None, None, (str(config),))


def test_adhoc_user_host_port() -> None:
    [t] = resolve("root@127.0.0.1:2200", SETTINGS)
    assert (t.address, t.port, t.user) == ("127.0.0.1", 2200, "root")
