"""The redaction corpus: every real secret shape is masked, every near miss comes out byte for byte.

The corpus (tests/fixtures/redaction/corpus.yaml) holds one entry per shape, with its source, the text,
what it must become, the secrets that must be gone and a near miss that must stay as it is.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.core.redact import MASK, leaks, redact

CORPUS_FILE = Path(__file__).parent.parent / "fixtures" / "redaction" / "corpus.yaml"
CORPUS: list[dict[str, Any]] = yaml.safe_load(CORPUS_FILE.read_text(encoding="utf-8"))
IDS = [entry["id"] for entry in CORPUS]


def test_the_corpus_has_at_least_forty_shapes_each_with_a_source_and_a_near_miss() -> None:
    assert len(CORPUS) >= 40
    assert len(set(IDS)) == len(IDS), "corpus ids must be unique"
    for entry in CORPUS:
        assert entry["source"].strip(), entry["id"]
        assert entry["secrets"], entry["id"]
        assert entry["near_miss"]["text"].strip() and entry["near_miss"]["why"].strip(), entry["id"]
        assert MASK in entry["masked"], entry["id"]


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_each_secret_shape_is_masked_exactly_as_written(entry: dict[str, Any]) -> None:
    assert redact(entry["text"]) == entry["masked"]


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_no_secret_of_an_entry_survives(entry: dict[str, Any]) -> None:
    out = redact(entry["text"])
    for secret in entry["secrets"]:
        assert secret in entry["text"], f"{entry['id']}: the listed secret is not in the text"
        assert secret not in out
    assert leaks(out) == []


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_each_near_miss_is_left_byte_for_byte(entry: dict[str, Any]) -> None:
    near = entry["near_miss"]["text"]
    assert redact(near) == near
    assert leaks(near) == []


@pytest.mark.parametrize("entry", CORPUS, ids=IDS)
def test_redacting_twice_changes_nothing_more(entry: dict[str, Any]) -> None:
    once = redact(entry["text"])
    assert redact(once) == once


def _cut_short(entry: dict[str, Any]) -> bool:
    """A private key without its END line is masked to the end of the text, so it has to come last."""
    return "-----BEGIN" in entry["masked"] and "-----END" not in entry["masked"]


def test_secrets_and_near_misses_interleaved_in_one_text_are_told_apart() -> None:
    ordered = sorted(CORPUS, key=_cut_short)
    assert _cut_short(ordered[-1]) and not _cut_short(ordered[-2])
    text = "\n".join(line for entry in ordered for line in (entry["near_miss"]["text"], entry["text"]))
    expected = "\n".join(line for entry in ordered for line in (entry["near_miss"]["text"], entry["masked"]))
    assert redact(text) == expected


def test_a_private_key_without_its_end_line_takes_the_rest_of_the_text_with_it() -> None:
    text = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\nAAAAAAAABAAAAMwAAAA"
    assert redact(text) == "-----BEGIN OPENSSH PRIVATE KEY-----***"
