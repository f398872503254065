"""Chat-neutral blocks as Telegram messages: HTML text within Telegram's limits, an inline keyboard,
and the same text as plain text for when Telegram refuses the markup.

Every text node is HTML-escaped (``&``, ``<``, ``>``); the markup is ours alone: a Header is ``<b>``,
a Context ``<i>``, Fields are ``<b>key</b>: value`` lines, Code is ``<pre>``, a Divider a rule of box
characters. Text is cleaned first: control characters other than newline and tab become spaces and
unpaired surrogates ``?``, since Telegram accepts neither.

Telegram counts a message's length after parsing the markup, in UTF-16 code units, up to 4096
(``MessageLimit.MAX_TEXT_LENGTH``). Blocks are packed into messages by that count, each block whole
when it fits in a message of its own; a longer block is cut at a line end (else a space, else
anywhere) and continued in the next message. Cuts fall between characters of the text, never inside
a tag or an ``&…;`` entity, and every part is closed and reopened around the cut, so each message is
well formed on its own. A Code block longer than :data:`MAX_CODE_UNITS` keeps its first lines and says
how many more there are and where to read them (``… 12 more lines: incident-bot incidents show 7``);
a post longer than ``max_parts`` messages ends with a note of what was left out.

Buttons of an Actions block become the inline keyboard, two a row; each button's ``callback_data`` is
``"<action>:<incident id>"`` (an id, never a payload), at most 64 bytes.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.core.blocks import Actions, Block, Code, Context, Divider, Fields, Header, Section

#: Telegram's limit on a message's text after entity parsing, in UTF-16 code units.
MAX_TEXT_UNITS = 4096
#: Telegram's limit on ``callback_data``, in bytes.
MAX_CALLBACK_BYTES = 64
#: A Code block longer than this (UTF-16 units) is cut to its first lines, with a note.
MAX_CODE_UNITS = 3000
#: How many messages one post may take before the rest is left out (with a note).
MAX_PARTS = 4
#: Buttons per keyboard row.
BUTTONS_PER_ROW = 2

DIVIDER = "──────────"
_SMALL_ROOM = 512  # a block that must be split starts a fresh message when less room than this is left
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def utf16_units(text: str) -> int:
    """The length of ``text`` as Telegram counts it (characters outside the BMP, like most emoji, are 2)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def clean(text: str) -> str:
    """Text Telegram takes: CRLF as LF, other control characters as spaces, unpaired surrogates as ``?``."""
    text = _CONTROL.sub(" ", text.replace("\r\n", "\n").replace("\r", "\n"))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


@dataclass(frozen=True)
class Part:
    """One Telegram message: ``html`` to send with parse mode HTML, ``text`` the same content unformatted
    (what Telegram shows, and what is sent when Telegram refuses the markup)."""

    html: str
    text: str

    @property
    def units(self) -> int:
        return utf16_units(self.text)


@dataclass(frozen=True)
class Rendered:
    """Blocks as Telegram messages, in order, and the inline keyboard for the first one (if any)."""

    parts: tuple[Part, ...]
    keyboard: InlineKeyboardMarkup | None = None


@dataclass(frozen=True)
class _Seg:
    """A run of visible text, wrapped in ``tag`` (``b``, ``i``, ``pre``) or in nothing."""

    tag: str | None
    text: str

    def render(self) -> str:
        body = html.escape(self.text, quote=False)
        return f"<{self.tag}>{body}</{self.tag}>" if self.tag else body


def _more(n: int, what: str) -> str:
    return f"{n} more {what}{'s' if n != 1 else ''}"


def _code(lines: Sequence[str], incident_id: str) -> list[_Seg]:
    lines = [clean(line) for line in lines]
    text = "\n".join(lines)
    if utf16_units(text) <= MAX_CODE_UNITS:
        return [_Seg("pre", text)]
    kept: list[str] = []
    used = 0
    for line in lines:
        cost = utf16_units(line) + (1 if kept else 0)
        if used + cost > MAX_CODE_UNITS:
            break
        kept.append(line)
        used += cost
    if kept:
        note = _more(len(lines) - len(kept), "line")
    else:  # one huge first line: its start, cut
        kept = [_cut_units(lines[0], MAX_CODE_UNITS - 1) + "…"]
        note = f"first line cut, {_more(len(lines) - 1, 'line')}"
    return [
        _Seg("pre", "\n".join(kept)),
        _Seg(None, "\n"),
        _Seg("i", f"… {note}: incident-bot incidents show {incident_id}"),
    ]


def _segments(block: Block, incident_id: str) -> list[_Seg]:
    match block:
        case Header(text=text):
            return [_Seg("b", clean(text))]
        case Section(text=text):
            return [_Seg(None, clean(text))]
        case Context(text=text):
            return [_Seg("i", clean(text))]
        case Fields(pairs=pairs):
            segs: list[_Seg] = []
            for n, (key, value) in enumerate(pairs):
                segs += [_Seg(None, "\n")] if n else []
                segs += [_Seg("b", clean(key)), _Seg(None, f": {clean(value)}")]
            return segs
        case Code(lines=lines):
            return _code(lines, incident_id) if lines else []
        case Divider():
            return [_Seg(None, DIVIDER)]
        case Actions():
            return []


def _units(segs: Sequence[_Seg]) -> int:
    return sum(utf16_units(s.text) for s in segs)


def _cut_units(text: str, units: int) -> str:
    """The longest prefix of ``text`` of at most ``units`` UTF-16 units (never half a character)."""
    used = 0
    for n, ch in enumerate(text):
        used += 2 if ord(ch) > 0xFFFF else 1
        if used > units:
            return text[:n]
    return text


def _split(text: str, room: int) -> tuple[str, str]:
    """``text`` cut to fit ``room`` units: at the last line end in the second half of what fits, else
    the last space there, else right at the limit. The newline or space cut at is dropped."""
    head = _cut_units(text, room)
    if len(head) == len(text):
        return text, ""
    for sep in ("\n", " "):
        at = head.rfind(sep)
        if at >= max(1, len(head) // 2):
            return head[:at], text[at + 1 :]
    return head, text[len(head) :]


class _Packer:
    """Packs blocks' segments into messages of at most ``limit`` units, at most ``max_parts`` of them;
    what does not fit is counted and named in ``note`` (``{n}``: how many units were left out)."""

    def __init__(self, limit: int, max_parts: int, note: str) -> None:
        self.limit = limit
        self.max_parts = max_parts
        self.note = note
        self.note_room = utf16_units(note.format(n=10**9)) + 1
        self.parts: list[list[_Seg]] = []
        self.current: list[_Seg] = []
        self.used = 0
        self.left_out = 0  # units that did not fit in max_parts messages

    @property
    def _budget(self) -> int:
        """Room in the current message; the last allowed one keeps room for the note."""
        if len(self.parts) == self.max_parts - 1:
            return self.limit - self.note_room
        return self.limit

    @property
    def _full(self) -> bool:
        return len(self.parts) >= self.max_parts

    def flush(self) -> None:
        if "".join(s.text for s in self.current).strip():
            self.parts.append(self.current)
        self.current, self.used = [], 0

    def _append(self, seg: _Seg) -> None:
        if seg.text:
            self.current.append(seg)
            self.used += utf16_units(seg.text)

    def add(self, segs: list[_Seg]) -> None:
        """Add one block: whole in this message, else whole in the next, else split across messages."""
        if not segs:
            return
        if self._full:
            self.left_out += _units(segs)
            return
        size = _units(segs)
        gap = 1 if self.current else 0
        if self.used + gap + size <= self._budget:
            self._append(_Seg(None, "\n" * gap))
            for seg in segs:
                self._append(seg)
            return
        if self.current and (size <= self.limit or self._budget - self.used < _SMALL_ROOM):
            self.flush()
            self.add(segs)
            return
        self._append(_Seg(None, "\n" * gap))
        for seg in segs:
            self._add_split(seg)

    def _add_split(self, seg: _Seg) -> None:
        text = seg.text
        while text:
            if self._full:
                self.left_out += utf16_units(text)
                return
            room = self._budget - self.used
            if utf16_units(text) <= room:
                self._append(_Seg(seg.tag, text))
                return
            if room <= 0:
                self.flush()
                continue
            head, text = _split(text, room)
            self._append(_Seg(seg.tag, head))
            self.flush()

    def finish(self) -> list[list[_Seg]]:
        if self.current:
            self.flush()
        if self.left_out and self.parts:
            self.parts[-1] += [_Seg(None, "\n"), _Seg("i", self.note.format(n=self.left_out))]
        return self.parts


def render(
    blocks: Sequence[Block], incident_id: str, *, max_parts: int = MAX_PARTS, limit: int = MAX_TEXT_UNITS
) -> Rendered:
    """``blocks`` as Telegram messages (at most ``max_parts``; 1 for a status card edited in place)."""
    if max_parts < 1 or limit < 2 * _SMALL_ROOM:
        raise ValueError(f"cannot render into {max_parts} messages of {limit} units")
    note = "… {n} more characters not shown: incident-bot incidents show " + incident_id.replace("{", "{{").replace(
        "}", "}}"
    )
    packer = _Packer(limit, max_parts, note)
    for block in blocks:
        packer.add(_segments(block, incident_id))
    parts = tuple(
        Part("".join(seg.render() for seg in segs), "".join(seg.text for seg in segs)) for segs in packer.finish()
    )
    return Rendered(parts, keyboard(blocks))


def render_card(blocks: Sequence[Block], incident_id: str) -> Rendered:
    """The status card: one message (cut with a note if it ever grew past the limit) and its keyboard."""
    return render(blocks, incident_id, max_parts=1)


def callback_data(action: str, incident_id: str) -> str:
    """``"<action>:<incident id>"``; ValueError if it is over Telegram's 64 bytes."""
    data = f"{action}:{incident_id}"
    if len(data.encode("utf-8")) > MAX_CALLBACK_BYTES:
        raise ValueError(f"callback data {data!r} is over {MAX_CALLBACK_BYTES} bytes")
    return data


def parse_callback_data(data: str) -> tuple[str, str] | None:
    """(action, incident id) from a button's ``callback_data``, or None when it is not ours."""
    action, sep, incident_id = data.partition(":")
    return (action, incident_id) if sep and action and incident_id else None


def keyboard(blocks: Sequence[Block]) -> InlineKeyboardMarkup | None:
    """The inline keyboard of the Actions blocks (two buttons a row), or None when there are none."""
    buttons = [
        InlineKeyboardButton(button.label, callback_data=callback_data(button.action, button.value))
        for block in blocks
        if isinstance(block, Actions)
        for button in block.buttons
    ]
    if not buttons:
        return None
    rows = [buttons[n : n + BUTTONS_PER_ROW] for n in range(0, len(buttons), BUTTONS_PER_ROW)]
    return InlineKeyboardMarkup(rows)
