"""Direct messages on Telegram: a page to one person (target ``telegram_dm``; payload
``{"dm": {"user": <user id>}}``). Telegram lets a bot write only to people who have started a chat with
it; anyone else is a refusal (403), which the pager records on the incident's timeline."""

from __future__ import annotations

from telegram import Bot
from telegram.constants import ParseMode

from bot.adapters.telegram.errors import MarkupRefused, call
from bot.adapters.telegram.html import render
from bot.adapters.telegram.sender import NO_PREVIEW, FloodGate
from bot.core.blocks import Block
from bot.core.incidents import Incident, OutboxMessage
from bot.errors import ChatRejected

TARGET = "telegram_dm"


class TelegramDirectSender:
    def __init__(self, bot: Bot, gate: FloodGate) -> None:
        self.bot = bot
        self.gate = gate

    async def send(self, message: OutboxMessage, blocks: list[Block], incident: Incident) -> None:
        dm = message.payload.get("dm")
        user = dm.get("user") if isinstance(dm, dict) else None
        if not isinstance(user, str | int) or not str(user).lstrip("-").isdigit():
            raise ChatRejected(f"message {message.id} names no Telegram user to write to", target=TARGET)
        chat = int(user)
        for part in render(blocks, incident.id).parts:
            await self.gate.wait(chat, group=False)
            try:
                await call(
                    self.bot.send_message(chat, part.html, parse_mode=ParseMode.HTML, link_preview_options=NO_PREVIEW),
                    target=TARGET,
                )
            except MarkupRefused:
                await call(self.bot.send_message(chat, part.text, link_preview_options=NO_PREVIEW), target=TARGET)
