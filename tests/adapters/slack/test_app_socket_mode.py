"""The Slack front door in Socket Mode, end to end: the real slack-bolt Socket Mode handler (aiohttp) opens
``apps.connections.open`` on the fake Slack and connects to its WebSocket; envelopes go in, acknowledgements
come back over the socket within Slack's 3 seconds, and the answers reach Slack (``response_url``, thread
posts, ephemerals); redeliveries are acknowledged and ignored; ``disconnect`` is followed by a reconnect;
``stop()`` closes the socket. No signing secret is needed (Socket Mode requests are not signed)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from bot.adapters.slack.app import WORKING
from bot.adapters.slack.blocks import render
from bot.adapters.slack.sender import slack_client
from bot.core.cards import ACKNOWLEDGE, status_card
from bot.core.incidents import IncidentState
from bot.errors import ConfigError
from bot.testing.slack_api import Envelope, FakeSlack
from tests.adapters.slack.inbound import ALICE, INCIDENTS, Wired, eventually, wire


def _websockets_installed() -> None:
    """The fake's WebSocket needs uvicorn's WebSocket support, which needs the ``websockets`` package."""
    try:
        import websockets  # noqa: F401
    except ImportError:
        pytest.fail(
            "Socket Mode tests need the `websockets` package: pip install -e '.[dev]' (or pip install websockets)"
        )


@pytest.fixture
async def wired(slack: FakeSlack) -> AsyncIterator[Wired]:
    _websockets_installed()
    wired = await wire(slack, signing_secret=None, app_token=slack.app_token)
    await wired.app.start()
    try:
        assert wired.app.connected
        await eventually(lambda: slack.socket_connections == 1)
        yield wired
    finally:
        await wired.app.stop()
    await eventually(lambda: slack.socket_connections == 0)


async def acked(slack: FakeSlack, envelope_id: str) -> Envelope:
    found: Envelope = await eventually(lambda: (e := slack.envelope(envelope_id)) is not None and e.acked and e)
    return found


async def test_a_slash_command_over_the_socket_is_acked_there_and_answered(slack: FakeSlack, wired: Wired) -> None:
    fields = slack.slash_command("list", user=ALICE)
    envelope = await acked(slack, slack.send_envelope("slash_commands", fields))
    assert envelope.ack == {} and envelope.ack_seconds is not None and envelope.ack_seconds < 3
    await wired.app.drain()
    (reply,) = slack.responses(fields["response_url"])
    assert reply["response_type"] == "in_channel" and "#1 triggered" in str(reply["blocks"])
    assert [c.method for c in slack.calls if c.method == "apps.connections.open"] == ["apps.connections.open"]


async def test_a_slow_command_over_the_socket_is_acked_with_working_on_it_and_answered_in_a_thread(
    slack: FakeSlack, wired: Wired
) -> None:
    wired.diagnose.release.clear()
    fields = slack.slash_command("diagnose web-1 502", user=ALICE)
    envelope = await acked(slack, slack.send_envelope("slash_commands", fields))
    assert envelope.ack == {"text": WORKING, "response_type": "ephemeral"}
    assert envelope.ack_seconds is not None and envelope.ack_seconds < 3
    await eventually(lambda: wired.diagnose.calls)
    wired.diagnose.release.set()
    await wired.app.drain()
    (root,) = slack.history(INCIDENTS)
    assert "@alice asked: `/incident diagnose web-1 502`" in str(root.blocks)
    (_, reply) = slack.thread(INCIDENTS, root.ts)
    assert "Upstream is not running" in str(reply.blocks)


async def test_a_button_over_the_socket_is_acked_and_acted_on_as_the_slack_user(slack: FakeSlack, wired: Wired) -> None:
    incident = await wired.store.get_incident("1")
    assert incident is not None
    message = render(status_card(incident, None), incident_id="1")
    card = await slack_client(slack.token, slack.api_url).chat_postMessage(
        channel=INCIDENTS, text=message.text, blocks=message.blocks
    )
    click = slack.block_actions(ACKNOWLEDGE, "1", user=ALICE, channel=INCIDENTS, message_ts=card["ts"])
    started = time.monotonic()
    envelope = await acked(slack, slack.send_envelope("interactive", click))
    assert envelope.ack == {} and time.monotonic() - started < 3
    await wired.app.drain()
    found = await wired.store.get_incident("1")
    assert found is not None and found.state is IncidentState.ACKNOWLEDGED
    assert [(e.kind, e.actor) for e in wired.store.events] == [("acknowledged", "@alice (slack)")]
    (private,) = slack.ephemerals
    assert private["user"] == ALICE and "Acknowledged #1." in private["text"]


async def test_an_event_redelivered_over_the_socket_is_acked_and_ignored(slack: FakeSlack, wired: Wired) -> None:
    said = await slack_client(slack.token, slack.api_url).chat_postMessage(channel=INCIDENTS, text="hi bot")
    mention = slack.event_callback(
        {"type": "app_mention", "user": ALICE, "text": "<@U0INCIDENTBOT> hi", "channel": INCIDENTS, "ts": said["ts"]}
    )
    retry = slack.send_envelope("events_api", mention, retry_attempt=1, retry_reason="timeout")
    await acked(slack, retry)
    await wired.app.drain()
    assert len(slack.thread(INCIDENTS, said["ts"])) == 1  # not answered

    await acked(slack, slack.send_envelope("events_api", mention))  # a first delivery: retry_attempt 0
    await wired.app.drain()
    (_, answer) = slack.thread(INCIDENTS, said["ts"])
    assert "/incident help" in answer.text.replace("`", "")


async def test_after_slack_says_disconnect_the_app_reconnects_and_goes_on(slack: FakeSlack, wired: Wired) -> None:
    assert slack.disconnect_socket_mode() == 1
    await eventually(lambda: len(slack.calls_to("apps.connections.open", ok=True)) == 2)
    await eventually(lambda: slack.socket_connections == 1)
    fields = slack.slash_command("help", user=ALICE)
    await acked(slack, slack.send_envelope("slash_commands", fields))
    await wired.app.drain()
    (reply,) = slack.responses(fields["response_url"])
    assert reply["response_type"] == "ephemeral" and "/incident list" in str(reply["blocks"])


async def test_a_refused_app_token_names_slack_app_token_and_leaves_nothing_connected(slack: FakeSlack) -> None:
    wired = await wire(slack, signing_secret=None, app_token="xapp-revoked")
    with pytest.raises(ConfigError) as refused:
        await wired.app.start()
    assert refused.value.field == "SLACK_APP_TOKEN" and not wired.app.connected
    assert slack.socket_connections == 0
    await wired.app.stop()


async def test_an_http_only_replica_starts_without_the_socket(slack: FakeSlack) -> None:
    wired = await wire(slack, signing_secret=None, app_token=slack.app_token)
    await wired.app.start(socket_mode=False)
    assert not wired.app.connected and slack.calls_to("apps.connections.open") == []
    await wired.app.stop()


async def test_the_fake_socket_refuses_a_ticket_slack_never_issued(slack: FakeSlack) -> None:
    _websockets_installed()
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await session.ws_connect(f"ws://{slack.url.removeprefix('http://')}/link/?ticket=made-up")
    assert refused.value.status == 403 and slack.socket_connections == 0
