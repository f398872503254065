"""The fake Telegram Bot API against the real python-telegram-bot: requests decoded as PTB sends them,
real result shapes, Telegram's error texts and limits, scripted 429s and 5xx, the strict limiter, long
polling with its conflicts, webhook delivery, callback queries and bot commands."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from telegram import (
    Bot,
    BotCommand,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    ReplyParameters,
    Update,
)
from telegram.error import BadRequest, Conflict, InvalidToken, NetworkError, RetryAfter

from bot.adapters.telegram.sender import telegram_bot
from bot.testing.http_fake import FakeHttpServer
from bot.testing.telegram_api import (
    DEFAULT_USER,
    FORUM_CHAT_ID,
    GROUP_CHAT_ID,
    NOT_MODIFIED,
    PRIVATE_CHAT_ID,
    SUPERGROUP_CHAT_ID,
    BotApiError,
    FakeChat,
    FakeTelegram,
    Limits,
    check_message_text,
    parse_html,
)


class Ticks:
    """A clock for the fake's limiter that only moves when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rejected(markup: str, parse_mode: str | None = "HTML") -> str:
    with pytest.raises(BotApiError) as caught:
        check_message_text(markup, parse_mode)
    assert caught.value.status == 400
    return caught.value.description


# ----------------------------------------------------------------------------------- HTML parsing


@pytest.mark.parametrize(
    ("markup", "shown"),
    [
        ("a & b > c", "a & b > c"),  # a bare & or > is kept, as tdlib does
        ("&nbsp;x &copy;", "&nbsp;x &copy;"),  # only lt, gt, amp and quot are named entities
        ("&lt;b&gt; &amp;amp; &#65;&#x42;&quot; &lt", '<b> &amp; AB" <'),
        ("&#0; &#1114111; &#12345678901;", "&#0; &#1114111; &#12345678901;"),  # out of range: kept as text
        ("<B>loud</B> <b>a</>", "loud a"),  # tag names in any case; an empty end tag closes the open one
        ("  \n<i>trimmed</i>\n ", "trimmed"),
    ],
)
def test_html_is_read_as_tdlib_reads_it(markup: str, shown: str) -> None:
    assert check_message_text(markup, "HTML").text == shown


@pytest.mark.parametrize(
    ("markup", "error"),
    [
        ("é<x>", 'Unsupported start tag "x" at byte offset 2'),  # offsets in UTF-8 bytes
        ("<b>bold", 'Can\'t find end tag corresponding to start tag "b"'),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("1 <b", "Unclosed start tag at byte offset 2"),
        ('<span class="x">s</span>', 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        ("<a href", 'Unclosed start tag "a" at byte offset 0'),
        ("if a<b then", 'Unclosed start tag "b" at byte offset 4'),  # "then" read as an attribute name
        ("<a href=x y>link", 'Can\'t find end tag corresponding to start tag "a"'),
        (
            "&#xD83D;",
            "Text contains invalid Unicode characters after decoding HTML entities, check for unmatched"
            " surrogate code units",
        ),
    ],
)
def test_bad_markup_gets_telegrams_cant_parse_entities_error(markup: str, error: str) -> None:
    assert rejected(markup) == "Bad Request: can't parse entities: " + error


def test_entities_have_utf16_offsets_and_pre_with_code_carries_the_language() -> None:
    parsed = parse_html('😀 <b>x</b>\n<pre><code class="language-nginx">a</code></pre>')
    assert parsed.text == "😀 x\na"
    assert list(parsed.entities) == [
        {"type": "bold", "offset": 3, "length": 1},
        {"type": "pre", "offset": 5, "length": 1, "language": "nginx"},
    ]


def test_text_length_is_counted_in_utf16_units_after_entity_parsing() -> None:
    assert check_message_text("<b>" + "x" * 4096 + "</b>", "HTML")  # tags and entities are not counted
    assert check_message_text("&lt;" * 4096, "HTML")
    assert check_message_text("😀" * 2048, None)
    assert check_message_text("\n\n" + "x" * 4096 + "\n", None)  # whitespace around is trimmed first
    assert rejected("x" * 4097, None) == "Bad Request: message is too long"
    assert rejected("😀" * 2049, "HTML") == "Bad Request: message is too long"
    assert rejected("  <b></b> \n", "HTML") == "Bad Request: message text is empty"
    assert rejected("", None) == "Bad Request: message text is empty"
    assert rejected("x", "Bogus") == "Bad Request: unsupported parse_mode"


# --------------------------------------------------------------------------------- through PTB


async def test_ptb_requests_are_decoded_form_fields_with_json_nested_objects(bot: Bot, fake: FakeTelegram) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Ack", callback_data="acknowledge:1")]])
    root = await bot.send_message(GROUP_CHAT_ID, "root")
    await bot.send_message(
        GROUP_CHAT_ID, "<b>hi</b>", parse_mode="HTML", reply_markup=keyboard, reply_to_message_id=root.message_id
    )
    call = fake.calls_to("sendMessage")[-1]
    assert call.params["chat_id"] == str(GROUP_CHAT_ID)  # PTB sends plain values as text
    assert call.params["reply_markup"] == {"inline_keyboard": [[{"text": "Ack", "callback_data": "acknowledge:1"}]]}
    assert call.params["reply_parameters"] == {"message_id": root.message_id}  # PTB's conversion on the wire
    stored = fake.messages(GROUP_CHAT_ID)[-1]
    assert (stored.text, stored.reply_to, stored.buttons) == ("hi", root.message_id, [("Ack", "acknowledge:1")])
    assert stored.sent_text == "<b>hi</b>"


async def test_json_bodies_and_query_strings_are_read_too(fake: FakeTelegram, api_url: str) -> None:
    async with httpx.AsyncClient(base_url=f"{api_url}{fake.token}/") as client:
        sent = (await client.post("sendMessage", json={"chat_id": GROUP_CHAT_ID, "text": "json body"})).json()
        got = (await client.get("getChat", params={"chat_id": str(FORUM_CHAT_ID)})).json()
    assert sent["ok"] and sent["result"]["text"] == "json body"
    assert got["result"]["is_forum"] is True


async def test_a_wrong_token_is_unauthorized_and_an_unknown_method_not_found(fake: FakeTelegram, api_url: str) -> None:
    async with httpx.AsyncClient() as client:
        wrong = await client.post(f"{api_url}987654:WRONG/getMe")
        garbage = await client.post(f"{api_url}nonsense/getMe")
        unknown = await client.post(f"{api_url}{fake.token}/sendTelepathy")
    assert (wrong.status_code, wrong.json()) == (401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
    assert (garbage.status_code, garbage.json()["description"]) == (404, "Not Found")
    assert (unknown.status_code, unknown.json()["description"]) == (404, "Not Found")
    with pytest.raises(InvalidToken):
        async with Bot("987654:WRONG", base_url=api_url):
            pass


async def test_results_have_real_message_shapes_with_ids_increasing_per_chat(bot: Bot, fake: FakeTelegram) -> None:
    a1 = await bot.send_message(GROUP_CHAT_ID, "one")
    b1 = await bot.send_message(PRIVATE_CHAT_ID, "other chat")
    a2 = await bot.send_message(GROUP_CHAT_ID, "two", reply_parameters=ReplyParameters(a1.message_id))
    assert (a1.message_id, a2.message_id, b1.message_id) == (1, 2, 1)
    assert a2.reply_to_message is not None and a2.reply_to_message.text == "one"
    assert (a2.chat.type, a2.chat.title, a2.from_user and a2.from_user.is_bot) == ("group", "On-call", True)
    assert b1.chat.first_name == DEFAULT_USER["first_name"]
    info = await bot.get_chat(FORUM_CHAT_ID)
    assert (info.type, info.is_forum) == ("supergroup", True)


async def test_forum_topics_hold_their_messages_and_are_renamed_and_closed(bot: Bot, fake: FakeTelegram) -> None:
    topic = await bot.create_forum_topic(FORUM_CHAT_ID, "shop 502 #1")
    inside = await bot.send_message(FORUM_CHAT_ID, "in the topic", message_thread_id=topic.message_thread_id)
    assert (inside.message_thread_id, inside.is_topic_message) == (topic.message_thread_id, True)
    assert await bot.edit_forum_topic(FORUM_CHAT_ID, topic.message_thread_id, name="✅ shop 502 #1")
    assert await bot.close_forum_topic(FORUM_CHAT_ID, topic.message_thread_id)
    with pytest.raises(BadRequest, match=r"(?i)topic_not_modified"):
        await bot.close_forum_topic(FORUM_CHAT_ID, topic.message_thread_id)
    stored = fake.topic(FORUM_CHAT_ID, topic.message_thread_id)
    assert (stored.names, stored.closed) == (["shop 502 #1", "✅ shop 502 #1"], True)
    assert [m.text for m in fake.messages(FORUM_CHAT_ID, thread_id=topic.message_thread_id)] == ["in the topic"]
    services = [m.service for m in fake.messages(FORUM_CHAT_ID, service=True) if m.service]
    assert [next(iter(s)) for s in services] == ["forum_topic_created", "forum_topic_edited", "forum_topic_closed"]
    long = await bot.create_forum_topic(FORUM_CHAT_ID, "n" * 200)
    assert long.name == "n" * 128  # tdlib cuts a long name (clean_name) rather than refusing it


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda bot: bot.send_message(-100999, "x"), "Chat not found"),
        (lambda bot: bot.edit_message_text("x", GROUP_CHAT_ID, 999), "Message to edit not found"),
        (lambda bot: bot.send_message(GROUP_CHAT_ID, "x", message_thread_id=5), "Message thread not found"),
        (lambda bot: bot.send_message(FORUM_CHAT_ID, "x", message_thread_id=777), "Message thread not found"),
        (
            lambda bot: bot.send_message(GROUP_CHAT_ID, "x", reply_parameters=ReplyParameters(999)),
            "Message to be replied not found",
        ),
        (lambda bot: bot.create_forum_topic(SUPERGROUP_CHAT_ID, "t"), "The chat is not a forum"),
        (
            lambda bot: bot.send_message(
                GROUP_CHAT_ID,
                "x",
                reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("b", callback_data="d" * 65)]]),
            ),
            "Button_data_invalid",
        ),
        (lambda bot: bot.send_message(GROUP_CHAT_ID, "<x>", parse_mode="HTML"), "Can't parse entities: unsupported"),
    ],
)
async def test_mistakes_get_telegrams_bad_request_texts(bot: Bot, fake: FakeTelegram, call: Any, error: str) -> None:
    with pytest.raises(BadRequest) as caught:
        await call(bot)
    assert caught.value.message.startswith(error)  # PTB strips "Bad Request: " and capitalises


async def test_an_edit_to_the_same_text_and_keyboard_is_not_modified(bot: Bot, fake: FakeTelegram) -> None:
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Ack", callback_data="acknowledge:1")]])
    sent = await bot.send_message(GROUP_CHAT_ID, "<b>card</b>", parse_mode="HTML", reply_markup=keyboard)
    with pytest.raises(BadRequest) as caught:
        await bot.edit_message_text(
            "<b>card</b>", GROUP_CHAT_ID, sent.message_id, parse_mode="HTML", reply_markup=keyboard
        )
    assert fake.calls[-1].description == NOT_MODIFIED
    assert "message is not modified" in caught.value.message.lower()
    await bot.edit_message_text("<b>card</b>", GROUP_CHAT_ID, sent.message_id, parse_mode="HTML")  # keyboard removed
    await bot.edit_message_text("<b>card!</b>", GROUP_CHAT_ID, sent.message_id, parse_mode="HTML")
    stored = fake.message(GROUP_CHAT_ID, sent.message_id)
    assert (stored.text, stored.edits, stored.buttons) == ("card!", ["card", "card"], [])


# -------------------------------------------------------------------------------- scripting


async def test_a_scripted_429_has_telegrams_body_and_reaches_ptb_as_retry_after(
    bot: Bot, fake: FakeTelegram, api_url: str
) -> None:
    fake.fail(429, retry_after=7, times=1, method="sendMessage")
    async with httpx.AsyncClient() as client:
        raw = await client.post(f"{api_url}{fake.token}/sendMessage", data={"chat_id": GROUP_CHAT_ID, "text": "x"})
    assert raw.status_code == 429
    assert raw.json() == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 7",
        "parameters": {"retry_after": 7},
    }
    fake.fail(429, retry_after=3, times=1)
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(GROUP_CHAT_ID, "x")
    assert caught.value.retry_after == timedelta(seconds=3)
    assert (await bot.send_message(GROUP_CHAT_ID, "now it goes")).text == "now it goes"


async def test_scripted_failures_last_for_a_number_of_calls_or_for_a_while(bot: Bot, fake: FakeTelegram) -> None:
    ticks = Ticks()
    fake.clock = ticks
    fake.fail(502, times=2)
    for _ in range(2):
        with pytest.raises(NetworkError, match="Bad Gateway"):
            await bot.send_message(GROUP_CHAT_ID, "x")
    await bot.send_message(GROUP_CHAT_ID, "after two")
    fake.fail(503, for_seconds=30, method="editMessageText")
    await bot.send_message(GROUP_CHAT_ID, "other methods are fine")
    with pytest.raises(NetworkError, match="Service Unavailable"):
        await bot.edit_message_text("y", GROUP_CHAT_ID, 1)
    ticks.now += 30
    await bot.edit_message_text("y", GROUP_CHAT_ID, 1)
    assert [c.status for c in fake.calls if c.method != "getMe"] == [502, 502, 200, 200, 503, 200]


async def test_the_strict_limiter_answers_429_beyond_telegrams_limits(bot: Bot, fake: FakeTelegram) -> None:
    ticks = Ticks()
    fake.clock = ticks
    fake.enforce(Limits(per_chat_interval=1.0, per_chat_burst=3, group_per_minute=20, overall_per_second=30))
    for n in range(3):  # a short burst is tolerated
        await bot.send_message(PRIVATE_CHAT_ID, f"burst {n}")
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(PRIVATE_CHAT_ID, "one too many")
    assert caught.value.retry_after == timedelta(seconds=1)
    ticks.now += 1
    await bot.send_message(PRIVATE_CHAT_ID, "a second later")
    for n in range(17):  # one a second is fine in a group, until twenty in a minute
        ticks.now += 1
        await bot.send_message(GROUP_CHAT_ID, f"group {n}")
    ticks.now += 1
    for n in range(3):
        await bot.send_message(GROUP_CHAT_ID, f"group burst {n}")
    ticks.now += 1
    with pytest.raises(RetryAfter) as caught:
        await bot.send_message(GROUP_CHAT_ID, "the 21st in a minute")
    assert caught.value.retry_after == timedelta(seconds=42)  # the first of the twenty went at +2 s


async def test_the_strict_limiter_caps_the_bot_at_30_messages_a_second_overall(
    fake: FakeTelegram, api_url: str
) -> None:
    ticks = Ticks()
    fake.clock = ticks
    many = [fake.add_chat(FakeChat(900_000 + n, "private", first_name=f"user {n}")).id for n in range(31)]
    fake.enforce(Limits())
    async with httpx.AsyncClient() as client:
        url = f"{api_url}{fake.token}/sendMessage"
        answers = [(await client.post(url, data={"chat_id": chat, "text": "x"})).status_code for chat in many]
    assert answers == [200] * 30 + [429]
    ticks.now += 1
    assert (await client_post(url, many[-1])).status_code == 200


async def client_post(url: str, chat: int) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(url, data={"chat_id": chat, "text": "x"})


# ------------------------------------------------------------------------------ updates in


async def test_get_updates_long_polls_until_an_update_is_pushed_and_offset_confirms(
    bot: Bot, fake: FakeTelegram
) -> None:
    started = time.monotonic()
    polling = asyncio.create_task(bot.get_updates(timeout=30))
    await asyncio.sleep(0.2)
    assert not polling.done()
    pushed = fake.user_message(GROUP_CHAT_ID, "/incident 17 status")
    (update,) = await polling
    assert time.monotonic() - started < 20  # answered by the push, not by the 30 s poll timeout
    assert update.message is not None and update.message.text == "/incident 17 status"
    assert update.message.entities[0].type == "bot_command" and update.message.message_id == pushed.message_id
    assert await bot.get_updates(offset=update.update_id, timeout=0) == (update,)  # not confirmed yet
    assert await bot.get_updates(offset=update.update_id + 1, timeout=0) == ()
    assert fake.pending_updates == []


async def test_a_second_poller_ends_the_first_with_409_conflict(bot: Bot, fake: FakeTelegram, api_url: str) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=10))
    await asyncio.sleep(0.2)
    async with telegram_bot(fake.token, api_url) as other_replica:
        second = asyncio.create_task(other_replica.get_updates(timeout=1))
        with pytest.raises(Conflict, match="terminated by other getUpdates request"):
            await first
        assert await second == ()


async def test_get_updates_is_refused_while_a_webhook_is_set(bot: Bot, fake: FakeTelegram) -> None:
    fake.user_message(GROUP_CHAT_ID, "hello")
    assert await bot.set_webhook("https://bot.example.com/telegram/webhook", secret_token="s3cret_-")
    info = await bot.get_webhook_info()
    assert (info.url, info.pending_update_count) == ("https://bot.example.com/telegram/webhook", 1)
    with pytest.raises(Conflict, match="can't use getUpdates method while webhook is active"):
        await bot.get_updates(timeout=0)
    assert await bot.delete_webhook()
    assert len(await bot.get_updates(timeout=0)) == 1
    with pytest.raises(BadRequest, match=r"(?i)https url must be provided"):
        await bot.set_webhook("http://127.0.0.1:8080/telegram/webhook")
    with pytest.raises(BadRequest, match=r"(?i)ports 80, 88, 443 or 8443"):
        await bot.set_webhook("https://bot.example.com:9000/telegram/webhook")


class Receiver:
    """A webhook endpoint that answers 500 to its first ``failures`` requests and records the rest."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.got: list[tuple[str | None, dict[str, Any]]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        body = await request.json()
        if self.failures:
            self.failures -= 1
            await Response(status_code=500)(scope, receive, send)
            return
        self.got.append((request.headers.get("x-telegram-bot-api-secret-token"), body))
        await Response()(scope, receive, send)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    app = Receiver(failures=1)
    with FakeHttpServer(app, name="webhook-receiver") as server:
        yield app, server.url + "/telegram/webhook"


async def test_pushed_updates_are_posted_to_the_webhook_with_the_secret_until_accepted(
    bot: Bot, fake: FakeTelegram, receiver: tuple[Receiver, str]
) -> None:
    app, url = receiver
    fake.insecure_webhooks = True
    fake.webhook_retry_delay = 0.05
    await bot.set_webhook(url, secret_token="s3cret")
    card = await bot.send_message(GROUP_CHAT_ID, "card")
    query_id = fake.click(GROUP_CHAT_ID, card.message_id, "acknowledge:17")
    for _ in range(100):
        if app.got:
            break
        await asyncio.sleep(0.05)
    ((secret, body),) = app.got
    assert secret == "s3cret"
    update = Update.de_json(body, bot)
    assert update.callback_query is not None and update.callback_query.data == "acknowledge:17"
    assert update.callback_query.message is not None and update.callback_query.message.message_id == card.message_id
    info = await bot.get_webhook_info()
    assert info.last_error_message == "Wrong response from the webhook: 500" and info.pending_update_count == 0
    assert await bot.answer_callback_query(query_id, text="Acknowledged")
    assert fake.answers[query_id]["text"] == "Acknowledged"
    with pytest.raises(BadRequest, match=r"(?i)query is too old"):
        await bot.answer_callback_query(query_id)


async def test_bot_commands_are_set_and_read_back_per_scope_and_validated(bot: Bot, fake: FakeTelegram) -> None:
    commands = [BotCommand("incident", "Show an incident"), BotCommand("ack", "Acknowledge")]
    assert await bot.set_my_commands(commands)
    assert [c.command for c in await bot.get_my_commands()] == ["incident", "ack"]
    assert await bot.get_my_commands(language_code="de") == ()
    with pytest.raises(BadRequest, match=r"(?i)bot_command_invalid"):
        await bot.set_my_commands([BotCommand("Bad-Command", "no")])


async def test_ptbs_own_application_polls_the_fake_and_its_handlers_get_pushed_commands_and_clicks(
    fake: FakeTelegram, api_url: str
) -> None:
    from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes

    seen: list[str] = []
    done = asyncio.Event()

    async def on_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        seen.append(f"command {context.args}")
        await update.effective_message.reply_text("on it")

    async def on_click(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.callback_query is not None
        await update.callback_query.answer("Acknowledged")
        seen.append(f"click {update.callback_query.data}")
        done.set()

    app = Application.builder().token(fake.token).base_url(api_url).build()
    app.add_handler(CommandHandler("incident", on_command))
    app.add_handler(CallbackQueryHandler(on_click))
    async with app:
        await app.start()
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0.0, timeout=timedelta(seconds=5))
        topic = await app.bot.create_forum_topic(FORUM_CHAT_ID, "shop 502 #1")
        card = await app.bot.send_message(FORUM_CHAT_ID, "card", message_thread_id=topic.message_thread_id)
        fake.user_message(FORUM_CHAT_ID, f"/incident@{fake.username} 1", thread_id=topic.message_thread_id)
        query = fake.click(FORUM_CHAT_ID, card.message_id, "acknowledge:1")
        await asyncio.wait_for(done.wait(), 20)
        await app.updater.stop()
        await app.stop()
    assert seen == ["command ['1']", "click acknowledge:1"]
    reply = fake.bot_messages(FORUM_CHAT_ID, thread_id=topic.message_thread_id)[-1]
    assert (reply.text, reply.reply_to) == ("on it", card.message_id + 1)  # reply_text quotes the command, in the topic
    assert fake.answers[query]["text"] == "Acknowledged"
    methods = [c.method for c in fake.calls]
    assert methods[:2] == ["getMe", "deleteWebhook"] and "getUpdates" in methods  # the polling bootstrap
