"""Chat-neutral blocks → Slack Block Kit, within Slack's limits by construction.

:func:`render` turns the blocks of one message into Block Kit JSON and the ``text`` fallback Slack
shows in notifications. Every rendered message keeps Slack's limits (platforms.md §1.11), counted in
UTF-16 code units, the stricter of the ways a length can be counted:

- ``Header``: a ``header`` block, plain text on one line, cut to 150;
- ``Section``: ``mrkdwn`` sections (``&``, ``<``, ``>`` escaped, so log text can never ping
  ``<!channel>`` or form a link), split by lines over as many sections as needed, 3000 each;
- ``Fields``: sections of at most 10 ``*key*`` / value fields of at most 2000 each;
- ``Code``: fenced ``` sections (escaped too), split by lines at 3000;
- ``Context``: a context block with one ``mrkdwn`` element of at most 3000;
- ``Actions``: ``actions`` blocks of at most 25 buttons (text 75, value 2000), ``action_id`` = the
  action name, ``value`` = the incident id, and a fresh ``block_id`` each render;
- ``Divider``: a divider.

When the message would pass :data:`BUDGET` characters of serialized blocks (Slack refuses about 13k
with ``msg_blocks_too_long``) or :data:`MAX_BLOCKS` blocks, the least important blocks are truncated
or dropped first (code, then context, sections, fields, buttons, the header last; later before earlier)
and a context line says the rest is in ``incident-bot incidents show ID``. Empty text never reaches
Slack (it refuses empty text objects): empty blocks are left out.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from bot.core.blocks import Actions, Block, Button, Code, Context, Divider, Fields, Header, Section, plain_text

#: Slack's limits (Block Kit reference; slack_sdk's models agree).
MAX_BLOCKS = 50
MAX_HEADER = 150
MAX_SECTION = 3000
MAX_FIELDS = 10
MAX_FIELD = 2000
MAX_CONTEXT = 3000
MAX_BUTTONS = 25
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_ID = 255
#: Serialized blocks we allow ourselves: Slack's undocumented cap is about 13,000.
BUDGET = 12_000
#: The ``text`` fallback: Slack takes 40,000 but long-standing advice is to stay under 4,000.
MAX_TEXT = 4000

JsonBlock = dict[str, Any]

_FENCE = "```"
_ELLIPSIS = "…"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
#: How much each kind of block matters when a message must shrink (lowest goes first).
_RANK = {Divider: 0, Code: 1, Context: 2, Section: 3, Fields: 4, Actions: 5, Header: 6}


@dataclass(frozen=True)
class SlackMessage:
    """What ``chat.postMessage``/``chat.update`` get: the Block Kit ``blocks`` and the ``text`` fallback."""

    blocks: list[JsonBlock]
    text: str
    trimmed: bool = False


# ------------------------------------------------------------------------------------------- measuring


def units(text: str) -> int:
    """The length of ``text`` in UTF-16 code units (a character outside the BMP counts two)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def serialized_size(blocks: Sequence[JsonBlock]) -> int:
    """The size of ``blocks`` as compact JSON, in UTF-16 code units: what :data:`BUDGET` bounds."""
    return units(json.dumps(list(blocks), ensure_ascii=False, separators=(",", ":")))


def _size(block: JsonBlock) -> int:
    return units(json.dumps(block, ensure_ascii=False, separators=(",", ":")))


# -------------------------------------------------------------------------------------------- text


def clean(text: str) -> str:
    """``text`` without control characters (tabs and newlines stay) or lone surrogates."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    return text.encode("utf-8", "replace").decode("utf-8")


def escape(text: str) -> str:
    """Escape the three characters Slack's ``mrkdwn`` (and ``text``) treat as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _safe_end(text: str, end: int) -> int:
    """``end``, moved back so that ``text[:end]`` does not stop inside an ``&amp;``-style entity."""
    amp = text.rfind("&", max(0, end - 4), end)
    if amp != -1 and ";" not in text[amp:end]:
        return amp
    return end


def _prefix(text: str, limit: int) -> int:
    """The longest prefix of ``text`` (in characters) that fits ``limit`` UTF-16 units, entity-safe."""
    used = 0
    for n, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > limit:
            return _safe_end(text, n)
    return len(text)


def _head(text: str, limit: int) -> str:
    """The first ``limit`` UTF-16 units of ``text`` (no ellipsis: for identifiers and values)."""
    used = 0
    for n, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > limit:
            return text[:n]
    return text


def cut(text: str, limit: int) -> str:
    """``text`` shortened to at most ``limit`` UTF-16 units, ending in ``…`` when it was cut."""
    if units(text) <= limit:
        return text
    return text[: _prefix(text, max(0, limit - 1))].rstrip() + _ELLIPSIS


def _pieces(text: str, limit: int) -> Iterator[str]:
    """``text`` split into parts of at most ``limit`` units, whole lines where a line fits."""
    part: list[str] = []
    used = 0
    for whole in text.split("\n"):
        line = whole
        while units(line) > limit:
            if part:
                yield "\n".join(part)
                part, used = [], 0
            end = _prefix(line, limit) or 1
            yield line[:end]
            line = line[end:]
        extra = units(line) + (1 if part else 0)
        if part and used + extra > limit:
            yield "\n".join(part)
            part, used, extra = [], 0, units(line)
        part.append(line)
        used += extra
    if part:
        yield "\n".join(part)


def _mrkdwn(text: str) -> JsonBlock:
    return {"type": "mrkdwn", "text": text}


def _plain(text: str) -> JsonBlock:
    return {"type": "plain_text", "text": text, "emoji": True}


# ------------------------------------------------------------------------------------------ blocks


def _section(text: str) -> JsonBlock:
    return {"type": "section", "text": _mrkdwn(text)}


def _code(body: str) -> JsonBlock:
    return _section(f"{_FENCE}\n{body}\n{_FENCE}")


def _header(text: str) -> list[JsonBlock]:
    line = " ".join(clean(text).split())
    return [{"type": "header", "text": _plain(cut(line, MAX_HEADER))}] if line else []


def _sections(text: str) -> list[JsonBlock]:
    body = escape(clean(text)).strip("\n")
    return [_section(part) for part in _pieces(body, MAX_SECTION) if part.strip()]


def _field(key: str, value: str) -> JsonBlock:
    key, value = escape(" ".join(clean(key).split())), escape(clean(value)).strip() or "—"
    head = f"*{cut(key, 200)}*\n" if key else ""
    return _mrkdwn(head + cut(value, MAX_FIELD - units(head)))


def _fields(pairs: Sequence[tuple[str, str]]) -> list[JsonBlock]:
    fields = [_field(key, value) for key, value in pairs]
    return [{"type": "section", "fields": fields[n : n + MAX_FIELDS]} for n in range(0, len(fields), MAX_FIELDS)]


def _code_sections(lines: Sequence[str]) -> list[JsonBlock]:
    body = "\n".join(escape(clean(line).replace(_FENCE, "``\u200b`")) for line in lines)
    if not body.strip():
        return []
    room = MAX_SECTION - units(_FENCE) * 2 - 2
    return [_code(part) for part in _pieces(body, room) if part.strip()]


def _context(text: str) -> list[JsonBlock]:
    body = escape(clean(text)).strip()
    return [{"type": "context", "elements": [_mrkdwn(cut(body, MAX_CONTEXT))]}] if body else []


def _button(button: Button) -> JsonBlock:
    label = " ".join(clean(button.label).split()) or button.action
    element: JsonBlock = {
        "type": "button",
        "text": _plain(cut(label, MAX_BUTTON_TEXT)),
        "action_id": _head(clean(button.action), MAX_ID),
    }
    value = _head(clean(button.value), MAX_BUTTON_VALUE)
    if value:
        element["value"] = value
    if button.style in ("primary", "danger"):
        element["style"] = button.style
    return element


def _actions(buttons: Sequence[Button]) -> list[JsonBlock]:
    groups: list[list[JsonBlock]] = []
    for button in buttons:
        if not clean(button.action):
            continue
        element = _button(button)
        group = groups[-1] if groups else None
        if group is None or len(group) >= MAX_BUTTONS or any(e["action_id"] == element["action_id"] for e in group):
            groups.append([element])
        else:
            group.append(element)
    return [{"type": "actions", "block_id": f"incident-bot-{uuid.uuid4().hex}", "elements": g} for g in groups]


def render_block(block: Block) -> list[JsonBlock]:
    """One chat-neutral block as Block Kit blocks (none when it has nothing to show), each within limits."""
    match block:
        case Header(text=text):
            return _header(text)
        case Section(text=text):
            return _sections(text)
        case Fields(pairs=pairs):
            return _fields(pairs)
        case Code(lines=lines):
            return _code_sections(lines)
        case Context(text=text):
            return _context(text)
        case Divider():
            return [{"type": "divider"}]
        case Actions(buttons=buttons):
            return _actions(buttons)


# ------------------------------------------------------------------------------------------ fitting


@dataclass
class _Piece:
    block: JsonBlock
    rank: int
    order: tuple[int, int]
    size: int


def _shorten(piece: _Piece, by: int) -> bool:
    """Cut at least ``by`` units (and at least two characters) off a text block; False when it is not
    worth it (too little would be left, or the block holds no single text)."""
    block = piece.block
    text_obj = block.get("text") if block["type"] == "section" else None
    if block["type"] == "context":
        text_obj = block["elements"][0]
    if not isinstance(text_obj, dict):
        return False
    text: str = text_obj["text"]
    fenced = text.startswith(_FENCE + "\n") and text.endswith("\n" + _FENCE)
    body = text[4:-4] if fenced else text
    keep = units(body) - max(by, 2) - 1
    if keep < 200:
        return False
    shorter = cut(body, keep)
    text_obj["text"] = f"{_FENCE}\n{shorter}\n{_FENCE}" if fenced else shorter
    piece.size = _size(block)
    return True


def _fit(pieces: list[_Piece], budget: int, max_blocks: int) -> bool:
    """Drop or shorten the least important pieces until they fit; True when anything was removed."""
    trimmed = False

    def total() -> int:
        return 2 + sum(p.size for p in pieces) + max(0, len(pieces) - 1)

    while pieces and (len(pieces) > max_blocks or total() > budget):
        trimmed = True
        if len(pieces) > max_blocks:
            victim = min(pieces, key=lambda p: (p.rank, tuple(-o for o in p.order)))
            pieces.remove(victim)
            continue
        # Size: dividers are too small to help; the least important other block goes first.
        candidates = [p for p in pieces if p.block["type"] != "divider"] or pieces
        victim = min(candidates, key=lambda p: (p.rank, tuple(-o for o in p.order)))
        if not _shorten(victim, total() - budget):
            pieces.remove(victim)
    return trimmed


def _note(incident_id: str | None) -> JsonBlock:
    where = f"`incident-bot incidents show {escape(incident_id)}`" if incident_id else "the bot's incident store"
    return {"type": "context", "elements": [_mrkdwn(cut(f"Shortened to fit Slack; the rest is in {where}", 2000))]}


def fallback_text(blocks: Sequence[Block], limit: int = MAX_TEXT) -> str:
    """The ``text`` of a message: its blocks as escaped plain text (no buttons), at most ``limit`` units."""
    shown: list[Block] = [b for b in blocks if not isinstance(b, Actions | Divider)]
    text = escape(clean(plain_text(shown))).strip()
    return cut(text, limit) if text else "incident-bot"


def render(blocks: Sequence[Block], *, incident_id: str | None = None, budget: int = BUDGET) -> SlackMessage:
    """``blocks`` as one Slack message within every limit; see the module docstring for the rules."""
    pieces = [
        _Piece(json_block, _RANK[type(block)], (n, k), _size(json_block))
        for n, block in enumerate(blocks)
        for k, json_block in enumerate(render_block(block))
    ]
    note = _note(incident_id)
    fits = len(pieces) <= MAX_BLOCKS and serialized_size([p.block for p in pieces]) <= budget
    trimmed = not fits and _fit(pieces, budget - _size(note) - 1, MAX_BLOCKS - 1)
    out = [p.block for p in sorted(pieces, key=lambda p: p.order)]
    if trimmed:
        out.append(note)
    return SlackMessage(out, fallback_text(blocks), trimmed)


def plain_message(blocks: Sequence[Block], *, incident_id: str | None = None) -> SlackMessage:
    """The last resort when Slack refuses the blocks: the fallback text as one short section."""
    text = fallback_text(blocks, MAX_SECTION)
    if not incident_id:
        return SlackMessage([_section(text)], text, True)
    note = f"\n_(shown as plain text; the full message is in `incident-bot incidents show {escape(incident_id)}`)_"
    body = cut(text, MAX_SECTION - units(note)) + note
    return SlackMessage([_section(body)], text, True)
