"""The Slack app manifest format, as pydantic models, from the published schema.

Source: SchemaStore's slack-app-manifest.json (https://json.schemastore.org/slack-app-manifest.json),
which follows Slack's manifest reference (https://api.slack.com/reference/manifests): the required keys
(display_information.name, bot_user.display_name, a slash command's command and description,
interactivity.is_enabled), the length limits and patterns, and no keys beyond the documented ones.
Only the parts incident-bot's manifests use are modelled; an unknown key anywhere is an error.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Metadata(_Strict):
    major_version: int | None = None
    minor_version: int | None = None


class DisplayInformation(_Strict):
    name: str = Field(min_length=1, max_length=35)
    description: str | None = Field(default=None, max_length=140)
    long_description: str | None = Field(default=None, max_length=4000)
    background_color: str | None = Field(default=None, pattern=r"^#(?:[0-9a-fA-F]{3}){1,2}$")


class BotUser(_Strict):
    display_name: str = Field(max_length=80, pattern=r"^[\w\-.]+$")
    always_online: bool | None = None


class SlashCommand(_Strict):
    command: str = Field(max_length=32, pattern=r"^/.*$")
    description: str = Field(max_length=2000)
    should_escape: bool | None = None
    url: str | None = None
    usage_hint: str | None = Field(default=None, max_length=1000)


class Features(_Strict):
    bot_user: BotUser | None = None
    slash_commands: list[SlashCommand] = Field(default_factory=list)


class Scopes(_Strict):
    bot: list[str] = Field(default_factory=list, max_length=255)
    user: list[str] = Field(default_factory=list, max_length=255)


class OauthConfig(_Strict):
    redirect_urls: list[str] = Field(default_factory=list, max_length=1000)
    scopes: Scopes | None = None


class EventSubscriptions(_Strict):
    request_url: str | None = None
    bot_events: list[str] = Field(default_factory=list, max_length=100)
    user_events: list[str] = Field(default_factory=list, max_length=100)


class Interactivity(_Strict):
    is_enabled: bool
    request_url: str | None = None
    message_menu_options_url: str | None = None


class Settings(_Strict):
    allowed_ip_address_ranges: list[str] = Field(default_factory=list)
    event_subscriptions: EventSubscriptions | None = None
    interactivity: Interactivity | None = None
    org_deploy_enabled: bool | None = None
    socket_mode_enabled: bool | None = None
    token_rotation_enabled: bool | None = None


class Manifest(_Strict):
    metadata: Metadata | None = Field(default=None, alias="_metadata")
    display_information: DisplayInformation
    features: Features | None = None
    oauth_config: OauthConfig | None = None
    settings: Settings | None = None
