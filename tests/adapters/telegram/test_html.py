"""Blocks as Telegram HTML: every text node escaped, messages within 4096 UTF-16 units after entity
parsing, long Code cut with a note, the inline keyboard from the card's buttons. Each rendered part is
checked by the fake Bot API's parser (a port of tdlib's ``parse_html``), as Telegram would check it."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.adapters.telegram.html import (
    MAX_CODE_UNITS,
    Part,
    callback_data,
    clean,
    parse_callback_data,
    render,
    render_card,
    utf16_units,
)
from bot.core.blocks import Actions, Block, Button, Code, Context, Divider, Fields, Header, Section
from bot.core.cards import status_card
from bot.core.incidents import Incident, IncidentState
from bot.testing.telegram_api import ParsedText, check_message_text

WS = " \t\n\r\x0b\x0c"


def telegram_sees(part: Part) -> ParsedText:
    """What Telegram makes of the part's HTML (raises BotApiError as the API would answer 400)."""
    return check_message_text(part.html, "HTML")


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_every_text_node_is_escaped_and_only_our_tags_become_formatting() -> None:
    nasty = "<b>not bold</b> & <script>x</script> &amp; &lt; 5 > 3 &#65;"
    blocks: list[Block] = [Header(nasty), Section(nasty), Fields(((nasty, nasty),)), Code((nasty,)), Context(nasty)]
    (part,) = render(blocks, "7").parts
    seen = telegram_sees(part)
    assert seen.text.count(nasty) == 6  # every copy shown literally, entities and tags included
    kinds = [e["type"] for e in seen.entities]
    assert kinds == ["bold", "bold", "pre", "italic"]  # header, field key, code, context: nothing from the text
    assert seen.text == part.text.strip(WS)


def test_fields_are_bold_keys_with_values_one_per_line_and_a_divider_is_a_rule() -> None:
    (part,) = render([Fields((("State", "triggered"), ("HTTP status", "502"))), Divider(), Section("x")], "1").parts
    seen = telegram_sees(part)
    assert seen.text.splitlines()[:2] == ["State: triggered", "HTTP status: 502"]
    assert seen.text.splitlines()[2].startswith("─")
    bold = [seen.text[e["offset"] : e["offset"] + e["length"]] for e in seen.entities if e["type"] == "bold"]
    assert bold == ["State", "HTTP status"]


def test_a_block_that_fits_a_message_of_its_own_is_never_split_across_two() -> None:
    first, second = Section("a" * 3000), Section("b" * 3000)
    parts = render([first, second], "1").parts
    assert [p.text for p in parts] == ["a" * 3000, "b" * 3000]


def test_a_long_section_is_cut_at_line_ends_into_messages_within_the_limit_and_nothing_is_lost() -> None:
    lines = [f"line {n:05d} <&> " + "x" * 80 for n in range(200)]
    parts = render([Section("\n".join(lines))], "1", max_parts=10).parts
    assert len(parts) > 3
    assert all(utf16_units(telegram_sees(p).text) <= 4096 for p in parts)
    shown = [line for p in parts for line in telegram_sees(p).text.splitlines()]
    assert shown == lines  # cut between lines, every line whole and in order


def test_emoji_count_as_two_utf16_units_when_splitting() -> None:
    parts = render([Section("😀" * 3000)], "1").parts  # 6000 units in 3000 characters
    assert [utf16_units(p.text) for p in parts] == [4096, 6000 - 4096]
    assert all(telegram_sees(p) for p in parts)


def test_a_long_code_block_keeps_its_first_lines_and_says_how_many_more_and_where() -> None:
    lines = tuple(
        f"2026/11/30 03:25:{n % 60:02d} [error] connect() to <unix:/run/app.sock> failed &" for n in range(400)
    )
    (part,) = render([Code(lines)], "42").parts
    seen = telegram_sees(part)
    (pre,) = [e for e in seen.entities if e["type"] == "pre"]
    kept = seen.text[pre["offset"] : pre["offset"] + pre["length"]].splitlines()
    assert kept == list(lines[: len(kept)])
    assert utf16_units("\n".join(kept)) <= MAX_CODE_UNITS
    assert seen.text.endswith(f"… {400 - len(kept)} more lines: incident-bot incidents show 42")


def test_a_single_huge_line_of_code_is_cut_with_a_note() -> None:
    (part,) = render([Code(("<&>" * 5000, "second"))], "9").parts
    seen = telegram_sees(part)
    assert seen.text.startswith("<&><&>")
    assert "…\n… first line cut, 1 more line: incident-bot incidents show 9" in seen.text


def test_a_post_longer_than_its_message_budget_ends_with_a_note_of_what_was_left_out() -> None:
    parts = render([Section("y" * 20_000)], "3", max_parts=2).parts
    assert len(parts) == 2
    last = telegram_sees(parts[-1]).text
    shown = sum(p.text.count("y") for p in parts)
    assert last.endswith(f"… {20_000 - shown} more characters not shown: incident-bot incidents show 3")
    assert all(utf16_units(telegram_sees(p).text) <= 4096 for p in parts)


def test_the_plain_text_fallback_is_what_telegram_shows_for_the_html() -> None:
    blocks: list[Block] = [Header("Incident <#1>"), Fields((("a&b", "<c>"),)), Code(("x < y",)), Context("&nbsp;")]
    for part in render(blocks, "1").parts:
        assert check_message_text(part.text, None).text == telegram_sees(part).text


def test_control_characters_and_unpaired_surrogates_are_cleaned_before_sending() -> None:
    assert clean("a\x00b\x07c\r\nd\re\tf\ud800") == "a b c\nd\ne\tf?"
    (part,) = render([Section("nul\x00 here \udfff")], "1").parts
    assert telegram_sees(part).text == "nul  here ?"


def incident(state: IncidentState = IncidentState.TRIGGERED) -> Incident:
    at = datetime(2026, 11, 30, 3, 25, tzinfo=UTC)
    return Incident(
        id="17", key="shop:5xx", service="shop", routed=True, status=502, state=state, title="shop 502", opened_at=at
    )


def test_the_status_card_keyboard_carries_action_and_incident_id_two_buttons_a_row() -> None:
    rendered = render_card(status_card(incident(), None), "17")
    assert rendered.keyboard is not None
    rows = [[(b.text, b.callback_data) for b in row] for row in rendered.keyboard.inline_keyboard]
    assert rows == [
        [("Acknowledge", "acknowledge:17"), ("Re-run diagnosis", "rerun:17")],
        [("Escalate", "escalate:17"), ("Resolve", "resolve:17")],
    ]
    assert parse_callback_data("rerun:17") == ("rerun", "17")
    assert parse_callback_data("garbage") is None
    assert render_card(status_card(incident(IncidentState.RESOLVED), None), "17").keyboard is None


def test_callback_data_over_64_bytes_is_refused_before_telegram_sees_it() -> None:
    assert len(callback_data("acknowledge", "x" * 52).encode()) == 64
    with pytest.raises(ValueError, match="over 64 bytes"):
        callback_data("acknowledge", "x" * 53)


def test_a_status_card_is_always_one_message_cut_with_a_note_if_it_had_to_be() -> None:
    blocks: list[Block] = [Header("card"), Fields(tuple((f"k{n}", "v" * 100) for n in range(60)))]
    rendered = render_card([*blocks, Actions((Button("Resolve", "resolve", "5"),))], "5")
    (part,) = rendered.parts
    seen = telegram_sees(part)
    assert "more characters not shown: incident-bot incidents show 5" in seen.text
    assert rendered.keyboard is not None


# ------------------------------------------------------------------------------------ property

# fmt: off
CHUNKS = [
    "<", ">", "&", "&amp;", "&lt;", "&gt", "&quot;", "&nbsp;", "&#128512;", "&#xD83D;", "&#0;", "<b>", "</b>",
    "<pre>", "</pre>", "<a href='x'>", "😀", "👩‍👩‍👧", "é", "\u0301", "\u202e", "\n", "\n\n", " ", "\t", "\r\n",
    "\x00", "[error]", "connect() failed (111: Connection refused) while connecting to upstream",
]
# fmt: on


@st.composite
def evidence_text(draw: st.DrawFn) -> str:
    pieces = draw(st.lists(st.sampled_from(CHUNKS) | st.text(max_size=30), min_size=1, max_size=40))
    length = draw(st.integers(min_value=1, max_value=12_000))
    seed = "".join(pieces) or "x"
    return (seed * (length // len(seed) + 1))[:length]


@settings(max_examples=60, deadline=None)
@given(text=evidence_text(), kind=st.sampled_from(["section", "code", "header", "fields", "context"]))
def test_any_text_with_markup_characters_emoji_and_10000_characters_passes_telegrams_checks(
    text: str, kind: str
) -> None:
    block: Block = {
        "section": Section(text),
        "code": Code(tuple(text.split("\n"))),
        "header": Header(text),
        "fields": Fields((("Output", text),)),
        "context": Context(text),
    }[kind]
    rendered = render([Header("Finding <web-1>"), block, Context("Full output: incident-bot incidents show 1")], "1")
    assert 1 <= len(rendered.parts) <= 4
    for part in rendered.parts:
        seen = telegram_sees(part)  # never a 400: parses, not empty, not too long
        assert utf16_units(seen.text) <= 4096
        assert seen.text == part.text.strip(WS)


@settings(max_examples=40, deadline=None)
@given(text=evidence_text())
def test_split_text_arrives_whole_in_order_only_whitespace_at_the_cuts_differs(text: str) -> None:
    parts = render([Section(text)], "1", max_parts=50).parts
    shown = "".join(telegram_sees(p).text for p in parts)
    assert squeeze(shown) == squeeze(clean(text))
