"""The Block Kit renderer: every message it makes passes the fake Slack's Block Kit checks (the real
limits: 50 blocks, 3000 per section, 150 per header, 10 × 2000 fields, 25 buttons of 75/2000, ~13k
serialized) whatever goes in; text from logs is escaped; long text is split, not lost, until a message
passes its budget, and then the least important blocks go first and a note says where the rest is."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.adapters.slack.blocks import (
    BUDGET,
    MAX_BLOCKS,
    MAX_TEXT,
    fallback_text,
    plain_message,
    render,
    render_block,
    serialized_size,
    units,
)
from bot.core.blocks import Actions, Block, Button, Code, Context, Divider, Fields, Header, Section, cause_blocks
from bot.core.cards import status_card
from bot.core.incidents import IncidentState
from bot.core.models import Cause
from bot.testing.slack_api import block_kit_errors
from tests.adapters.slack.helpers import T0, make_incident

NGINX = '2026/11/30 03:25:13 [error] 4942#4942: *1 connect() failed (111: Connection refused) upstream: "http://a&b/"'


def texts(blocks: list[dict[str, object]]) -> str:
    return json.dumps(blocks, ensure_ascii=False)


def test_log_text_is_escaped_everywhere_so_it_cannot_ping_or_link() -> None:
    blocks: list[Block] = [
        Section("<!channel> a & b <https://evil|click>"),
        Code(("<!here> x > y",)),
        Context("<@U123> & co"),
        Fields((("<key>", "<value> & more"),)),
    ]
    message = render(blocks, incident_id="7")
    dumped = texts(message.blocks)
    assert "<!channel>" not in dumped and "<!here>" not in dumped and "<@U123>" not in dumped
    assert "&lt;!channel&gt; a &amp; b &lt;https://evil|click&gt;" in dumped
    assert "```\\n&lt;!here&gt; x &gt; y\\n```" in dumped
    assert "<" not in message.text and "&lt;!channel&gt;" in message.text
    assert block_kit_errors(message.blocks) is None


def test_a_long_section_is_split_by_lines_over_several_sections_with_nothing_lost() -> None:
    lines = [f"line {n}: " + "x" * 90 for n in range(100)]  # ~10,000 characters
    message = render([Section("\n".join(lines))])
    sections = [b["text"]["text"] for b in message.blocks]
    assert len(sections) == 4 and all(units(s) <= 3000 for s in sections)
    assert "\n".join(sections).split("\n") == lines
    assert not message.trimmed


def test_one_line_longer_than_a_section_is_cut_into_pieces_never_inside_an_escape() -> None:
    line = "&" * 2000  # 10,000 characters once escaped
    message = render([Section(line)])
    parts = [b["text"]["text"] for b in message.blocks]
    assert all(units(p) <= 3000 and p.endswith("&amp;") for p in parts)
    assert "".join(parts) == "&amp;" * 2000


def test_characters_outside_the_bmp_count_twice_as_slack_may_count_them() -> None:
    message = render([Section("🔥" * 2000)])  # 2000 characters, 4000 UTF-16 units
    assert len(message.blocks) == 2
    assert all(units(b["text"]["text"]) <= 3000 for b in message.blocks)
    assert block_kit_errors(message.blocks) is None


def test_a_header_is_plain_text_on_one_line_cut_to_150() -> None:
    message = render([Header("shop is down\n" + "y" * 300)])
    text = message.blocks[0]["text"]
    assert text["type"] == "plain_text" and "\n" not in text["text"]
    assert units(text["text"]) == 150 and text["text"].endswith("…")


def test_fields_go_ten_to_a_section_each_cut_to_2000() -> None:
    pairs = tuple((f"key {n}", "v" * (3000 if n == 0 else 5)) for n in range(13))
    message = render([Fields(pairs)])
    assert [len(b["fields"]) for b in message.blocks] == [10, 3]
    first = message.blocks[0]["fields"][0]["text"]
    assert first.startswith("*key 0*\n") and units(first) == 2000 and first.endswith("…")


def test_buttons_carry_the_action_name_and_incident_id_with_a_fresh_block_id_each_render() -> None:
    card = [
        Actions((Button("Acknowledge", "acknowledge", "42", "primary"), Button("Resolve", "resolve", "42", "danger")))
    ]
    first, second = render(card).blocks[0], render(card).blocks[0]
    assert [(e["action_id"], e["value"], e["style"]) for e in first["elements"]] == [
        ("acknowledge", "42", "primary"),
        ("resolve", "42", "danger"),
    ]
    assert first["block_id"] != second["block_id"]


def test_more_than_25_buttons_go_to_several_actions_blocks() -> None:
    buttons = tuple(Button(f"b{n}", f"action{n}", "1") for n in range(30))
    message = render([Actions(buttons)])
    assert [len(b["elements"]) for b in message.blocks] == [25, 5]
    assert block_kit_errors(message.blocks) is None


def test_empty_text_is_left_out_rather_than_refused_by_slack() -> None:
    message = render([Header("  "), Section(""), Code(("", " ")), Context("\n"), Fields(()), Actions(()), Section("x")])
    assert message.blocks == [{"type": "section", "text": {"type": "mrkdwn", "text": "x"}}]


def test_the_status_card_renders_with_its_fields_and_buttons() -> None:
    incident = make_incident(42, state=IncidentState.ACKNOWLEDGED, acknowledged_at=T0, acknowledged_by="alice")
    message = render(status_card(incident, None), incident_id="42")
    assert message.blocks[0]["type"] == "header" and "Incident #42" in message.blocks[0]["text"]["text"]
    fields = [f["text"] for f in message.blocks[1]["fields"]]
    assert "*State*\nacknowledged" in fields and any("by alice" in f for f in fields)
    actions = next(b for b in message.blocks if b["type"] == "actions")
    assert [e["action_id"] for e in actions["elements"]] == ["rerun", "escalate", "resolve"]
    assert block_kit_errors(message.blocks) is None and not message.trimmed


def test_a_cause_card_with_huge_evidence_is_trimmed_to_the_budget_keeping_the_head_and_saying_where_the_rest_is() -> (
    None
):
    cause = Cause(
        id="upstream_down",
        confidence=0.93,
        title="Upstream is not running",
        summary="3× connection refused by upstream 127.0.0.1:18000",
        evidence=tuple(NGINX for _ in range(200)),
        next_steps=("Check the app server: `systemctl status <unit>`",),
    )
    message = render(cause_blocks(cause), incident_id="42")
    assert message.trimmed and serialized_size(message.blocks) <= BUDGET
    assert message.blocks[0]["type"] == "header"
    assert message.blocks[1]["text"]["text"].startswith("3× connection refused")
    assert any("Next steps" in b.get("text", {}).get("text", "") for b in message.blocks)
    assert "`incident-bot incidents show 42`" in message.blocks[-1]["elements"][0]["text"]
    assert block_kit_errors(message.blocks) is None


def test_more_than_50_blocks_drop_the_least_important_last_ones_first() -> None:
    blocks: list[Block] = [Header("h")]
    for n in range(40):
        blocks += [Section(f"s{n}"), Divider()]
    blocks.append(Actions((Button("Resolve", "resolve", "1"),)))
    message = render(blocks, incident_id="1")
    kinds = [b["type"] for b in message.blocks]
    assert len(kinds) == MAX_BLOCKS and kinds[0] == "header" and kinds[-2:] == ["actions", "context"]
    assert kinds.count("divider") == 7  # 33 dividers went (the last ones), before any content did
    assert kinds[1:15] == ["section", "divider"] * 7
    assert [b["text"]["text"] for b in message.blocks if b["type"] == "section"] == [f"s{n}" for n in range(40)]


def test_the_plain_text_fallback_skips_buttons_is_escaped_and_capped() -> None:
    blocks: list[Block] = [Header("a <b>"), Section("z" * 10_000), Actions((Button("Ack", "acknowledge", "1"),))]
    text = fallback_text(blocks)
    assert text.startswith("a &lt;b&gt;\nzzz") and units(text) <= MAX_TEXT and "[Ack]" not in text


# ------------------------------------------------------------------------------------ properties

_ALPHABET = st.one_of(st.sampled_from("&<>`*_~\n\t ax"), st.characters(codec="utf-8"), st.sampled_from("🔥😀𝄞"))
_SHORT = st.text(_ALPHABET, max_size=40)
_LONG = st.one_of(
    _SHORT,
    st.builds(lambda part, times: part * times, st.text(_ALPHABET, min_size=1, max_size=30), st.integers(1, 600)),
)
_BUTTON = st.builds(
    Button,
    label=_LONG,
    action=st.one_of(st.sampled_from(["acknowledge", "rerun", "escalate", "resolve"]), _SHORT),
    value=_LONG,
    style=st.sampled_from(["default", "primary", "danger"]),
)
_BLOCK: st.SearchStrategy[Block] = st.one_of(
    st.builds(Header, _LONG),
    st.builds(Section, _LONG),
    st.builds(Fields, st.lists(st.tuples(_SHORT, _LONG), max_size=25).map(tuple)),
    st.builds(Code, st.lists(_LONG, max_size=30).map(tuple)),
    st.builds(Context, _LONG),
    st.just(Divider()),
    st.builds(Actions, st.lists(_BUTTON, max_size=30).map(tuple)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(blocks=st.lists(_BLOCK, max_size=70), incident_id=st.one_of(st.none(), st.text(min_size=1, max_size=12)))
def test_any_blocks_render_to_a_message_slack_accepts(blocks: list[Block], incident_id: str | None) -> None:
    message = render(blocks, incident_id=incident_id)
    assert block_kit_errors(message.blocks) is None
    assert len(message.blocks) <= MAX_BLOCKS and serialized_size(message.blocks) <= BUDGET
    assert message.text and units(message.text) <= MAX_TEXT
    if any(isinstance(b, Header) and render_block(b) for b in blocks):
        assert any(b["type"] == "header" for b in message.blocks)  # the header is the last thing ever dropped
    plain = plain_message(blocks, incident_id=incident_id)
    assert block_kit_errors(plain.blocks) is None and len(plain.blocks) == 1
