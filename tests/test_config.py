"""Settings from YAML and the environment; bad files name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError

GOOD = """
ssh: {user: incident-bot, connect_timeout: 3}
hosts:
  web-1: {address: 203.0.113.10, roles: [proxy], facts: {nginx_error_log: /var/log/nginx/error.log}}
  app-1: {address: 203.0.113.11, roles: [app]}
services:
  shop:
    match: {labels: {service: shop}, url_host: shop.example.com}
    hosts: [web-1, app-1]
    url: https://shop.example.com/healthz
"""


def test_the_design_shape_loads(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(GOOD)
    settings = load_settings(str(path), env={})
    assert settings.hosts["web-1"].facts["nginx_error_log"] == "/var/log/nginx/error.log"
    assert settings.services["shop"].hosts == ["web-1", "app-1"]
    assert settings.ssh.connect_timeout == 3 and settings.ssh.host_key_policy == "strict"
    assert settings.source == str(path)


def test_defaults_when_there_is_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, env={})
    assert settings.source is None and settings.listen == "127.0.0.1:8080"


def test_environment_supplies_secrets_and_database_url(tmp_path: Path) -> None:
    settings = load_settings(None, env={"DATABASE_URL": "postgresql+asyncpg://x/y", "SLACK_BOT_TOKEN": "xoxb-1"})
    assert settings.database_url == "postgresql+asyncpg://x/y"
    assert settings.secrets.slack_bot_token is not None
    assert "xoxb-1" not in repr(settings)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("hosts: {web-1: {address: 1.2.3.4, port: 99999}}", "hosts.web-1.port"),
        ("ssh: {connect_timeout: -1}", "ssh.connect_timeout"),
        ("services: {shop: {hosts: [nope]}}", "services"),
        ("bogus: 1", "bogus"),
        ("hosts: [", "not valid YAML"),
        ("- a list", "top level"),
    ],
)
def test_a_bad_file_is_one_clear_error_naming_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(str(path), env={})
    assert field in info.value.user_message()


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_settings(str(tmp_path / "none.yaml"), env={})


def test_numeric_facts_in_yaml_become_text(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("hosts: {db: {address: 127.0.0.1, facts: {pg_port: 5432, pg_host: 127.0.0.1}}}")
    assert load_settings(str(path), env={}).hosts["db"].facts == {"pg_port": "5432", "pg_host": "127.0.0.1"}


def test_the_grafana_hmac_secret_comes_from_the_environment_and_the_header_from_the_file(tmp_path: Path) -> None:
    from bot.serve import grafana_signing

    path = tmp_path / "c.yaml"
    path.write_text("grafana:\n  hmac_header: X-Grafana-Signature\n")
    assert grafana_signing(load_settings(str(path), env={})) is None
    settings = load_settings(str(path), env={"INCIDENT_BOT_GRAFANA_HMAC_SECRET": "s3cret"})
    signing = grafana_signing(settings)
    assert signing is not None and signing.secret == "s3cret" and signing.header == "X-Grafana-Signature"
    assert "s3cret" not in repr(settings)
    default = grafana_signing(load_settings(None, env={"INCIDENT_BOT_GRAFANA_HMAC_SECRET": "x"}))
    assert default is not None and default.header == "X-Grafana-Alerting-Signature"
