"""deploy/slack/: the HTTP and Socket Mode app manifests against the manifest schema, and what the bot needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import ValidationError

from tests.deploy.slack_manifest import Manifest

SLACK = Path(__file__).resolve().parents[2] / "deploy" / "slack"
SCOPES = {"app_mentions:read", "chat:write", "chat:write.public", "commands", "usergroups:read", "channels:history",
          "groups:history", "users:read"}  # fmt: skip


def _raw(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((SLACK / name).read_text())
    return loaded


def _manifest(name: str) -> Manifest:
    return Manifest.model_validate(_raw(name))


@pytest.mark.parametrize("name", ["manifest-http.yaml", "manifest-socket-mode.yaml"])
def test_the_manifest_matches_the_slack_manifest_schema(name: str) -> None:
    """Required keys present, limits kept, no unknown key; the bot scopes are exactly the ones it uses."""
    manifest = _manifest(name)
    assert manifest.display_information.name == "incident-bot"
    assert manifest.features and manifest.features.bot_user
    assert manifest.oauth_config and manifest.oauth_config.scopes
    assert set(manifest.oauth_config.scopes.bot) == SCOPES
    assert len(manifest.oauth_config.scopes.bot) == len(SCOPES)
    [command] = manifest.features.slash_commands
    assert command.command == "/incident"
    assert manifest.settings and manifest.settings.interactivity and manifest.settings.interactivity.is_enabled


def test_the_schema_model_rejects_what_slack_rejects() -> None:
    """The model has teeth: a long name, a command without its slash, an unknown key all fail."""
    good = _raw("manifest-http.yaml")
    for broken in (
        {**good, "display_information": {**good["display_information"], "name": "x" * 36}},
        {**good, "features": {**good["features"], "slash_commands": [{"command": "incident", "description": "d"}]}},
        {**good, "settings": {**good["settings"], "socket_mode": True}},
        {key: value for key, value in good.items() if key != "display_information"},
    ):
        with pytest.raises(ValidationError):
            Manifest.model_validate(broken)


def test_the_http_manifest_sends_events_commands_and_interactivity_to_slack_events() -> None:
    """One https request URL, path /slack/events, for the slash command, the Events API and interactivity."""
    manifest = _manifest("manifest-http.yaml")
    assert manifest.settings and manifest.features
    assert manifest.settings.socket_mode_enabled is False
    assert manifest.settings.event_subscriptions and manifest.settings.interactivity
    urls = {
        manifest.features.slash_commands[0].url,
        manifest.settings.event_subscriptions.request_url,
        manifest.settings.interactivity.request_url,
    }
    [url] = urls
    assert url is not None
    parts = urlsplit(url)
    assert parts.scheme == "https" and parts.path == "/slack/events"


def test_the_socket_mode_manifest_has_no_request_url() -> None:
    """Socket Mode on, and no URL anywhere: Slack delivers everything over the app's WebSocket."""
    manifest = _manifest("manifest-socket-mode.yaml")
    assert manifest.settings and manifest.features
    assert manifest.settings.socket_mode_enabled is True
    assert manifest.features.slash_commands[0].url is None
    events = manifest.settings.event_subscriptions
    assert events is not None and events.request_url is None and events.bot_events == ["app_mention"]
    assert manifest.settings.interactivity and manifest.settings.interactivity.request_url is None
    assert "connections:write" in (SLACK / "manifest-socket-mode.yaml").read_text()


def test_the_two_manifests_differ_only_in_how_slack_reaches_the_bot() -> None:
    """Same name, bot user, scopes and command apart from its URL; only settings and the URL differ."""
    http, socket = _raw("manifest-http.yaml"), _raw("manifest-socket-mode.yaml")
    for key in ("_metadata", "display_information", "oauth_config"):
        assert http[key] == socket[key], key
    command = dict(http["features"]["slash_commands"][0])
    del command["url"]
    assert {**http["features"], "slash_commands": [command]} == socket["features"]
