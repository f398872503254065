"""Hostile input for the evidence readers (hardening issue, item 7): arbitrary text, arbitrary bytes
(invalid UTF-8 included), huge lines, NULs and control characters, and real failure lines mangled —
nothing escapes as an exception, and every finding keeps the shape DESIGN §4.2 promises."""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.core.models import Finding, Severity
from bot.evidence.registry import load
from bot.evidence.scanner import Scanner
from bot.services.explain import explain_text

FIXTURES = Path(__file__).parent.parent / "fixtures"
#: Real lines of every kind the readers know, the seeds the mangling starts from.
REAL_LINES = [
    line
    for path in sorted(FIXTURES.glob("*/*.txt"))
    for line in path.read_text(errors="replace").splitlines()
    if line.strip()
][:4000]
REGISTRY = load()


def scan_bytes(data: bytes) -> list[Finding]:
    scanner = Scanner(REGISTRY.instances())
    scanner.scan_stream(io.BytesIO(data))
    return scanner.findings()


def well_formed(findings: list[Finding]) -> None:
    for finding in findings:
        assert finding.kind and "." in finding.kind
        assert isinstance(finding.severity, Severity)
        assert finding.summary.strip()
        assert all(isinstance(line, str) and "\n" not in line for line in finding.evidence)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    well_formed(scan_bytes(data))


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=2000))
def test_arbitrary_text_never_raises_and_explain_always_answers(text: str) -> None:
    diagnosis = explain_text(text, None, registry=REGISTRY)
    well_formed(list(diagnosis.findings))
    assert all(0.0 <= cause.confidence <= 1.0 for cause in diagnosis.causes)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.sampled_from(REAL_LINES), min_size=1, max_size=20),
    st.lists(
        st.tuples(st.integers(0, 400), st.sampled_from(["\x00", "\xff", "\u202e", "\r", "\t", "💥", "\\", "\ufffd"]))
    ),
    st.integers(0, 200),
)
def test_real_lines_cut_and_spliced_with_junk_never_raise(
    lines: list[str], junk: list[tuple[int, str]], cut: int
) -> None:
    text = "\n".join(lines)
    for offset, piece in junk:
        at = min(offset, len(text))
        text = text[:at] + piece + text[at:]
    text = text[: max(1, len(text) - cut)]
    well_formed(scan_bytes(text.encode("utf-8", errors="surrogateescape")))
    well_formed(scan_bytes(text.encode("utf-8", errors="replace")[:-1]))  # a cut multi-byte character too


def test_a_huge_line_and_invalid_utf8_around_a_real_failure_line_still_find_it() -> None:
    real = next(line for line in REAL_LINES if "(111: Connection refused) while connecting to upstream" in line)
    data = b"\xff\xfe\x00garbage" * 10 + b"A" * (3 * 1024 * 1024) + b"\n" + real.encode() + b"\n\xc3\n"
    findings = scan_bytes(data)
    well_formed(findings)
    assert any(f.kind == "nginx.upstream_refused" for f in findings)
