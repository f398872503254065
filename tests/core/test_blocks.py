"""Chat-neutral blocks made from a diagnosis."""

from __future__ import annotations

from bot.core.blocks import Code, Header, diagnosis_blocks, plain_text
from bot.testing import explain

REFUSED = (
    "2026/11/30 03:25:13 [error] 4942#4942: *1 connect() failed (111: Connection refused) while connecting to"
    ' upstream, client: 127.0.0.1, server: _, request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:8000/",'
    ' host: "localhost"'
)


def test_the_cause_card_leads_with_the_title_and_quotes_the_evidence() -> None:
    blocks = diagnosis_blocks(explain(REFUSED, 502))
    assert blocks[0] == Header("Suspected cause: Upstream is not running")
    assert Code((REFUSED,)) in blocks
    text = plain_text(blocks)
    assert "Next steps:" in text and "upstream_down" in text


def test_no_evidence_says_so_and_lists_suspects() -> None:
    text = plain_text(diagnosis_blocks(explain("nothing here", 503)))
    assert text.startswith("No evidence of a cause was found")
    assert "worker_saturation" in text
