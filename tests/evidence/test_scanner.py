"""The streaming scanner: which lines reach which reader, across chunks, headers and huge lines."""

from __future__ import annotations

import io
import resource
import subprocess
import sys
from typing import ClassVar

from bot.core.models import Finding, Severity
from bot.evidence import scanner as scanner_module
from bot.evidence.reader import Reader
from bot.evidence.scanner import MAX_LINE, Scanner


class Collect(Reader):
    """Records every line it is fed; asks for continuation after a line ending in ':'."""

    name = "test.collect"
    title = "collects"
    triggers: ClassVar[tuple[str, ...]] = (r"MARK",)

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.blocks_ended = 0

    def feed(self, line: str) -> bool:
        self.lines.append(line)
        return line.endswith(":")

    def end_block(self) -> None:
        self.blocks_ended += 1

    def findings(self) -> list[Finding]:
        return [Finding(kind="test.lines", severity=Severity.INFO, summary=str(len(self.lines)))]


class Headed(Reader):
    """Only reads the blocks under a '### $ thing' header."""

    name = "test.headed"
    title = "headed"
    header = r"\$ thing"

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.headers: list[str] = []

    def start_block(self, header: str) -> None:
        self.headers.append(header)

    def feed(self, line: str) -> bool:
        self.lines.append(line)
        return False

    def findings(self) -> list[Finding]:
        return []


def run(text: bytes, *readers: Reader) -> Scanner:
    scanner = Scanner(list(readers))
    scanner.scan_stream(io.BytesIO(text))
    return scanner


def test_only_trigger_lines_reach_a_reader() -> None:
    reader = Collect()
    run(b"noise\nMARK one\nmore noise\nalso MARK two\n", reader)
    assert reader.lines == ["MARK one", "also MARK two"]


def test_a_reader_asking_for_more_gets_the_following_lines_until_it_stops() -> None:
    reader = Collect()
    run(b"x\nMARK table:\nrow 1:\nrow 2\nnot fed\nMARK end\n", reader)
    assert reader.lines == ["MARK table:", "row 1:", "row 2", "MARK end"]


def test_lines_split_across_chunks_arrive_whole(monkeypatch: object) -> None:
    reader = Collect()
    line = "prefix " + "y" * 50 + " MARK " + "z" * 50
    text = ("filler line\n" * 7 + line + "\n") * 20
    # A chunk size that cuts lines in the middle.
    import pytest

    mp = pytest.MonkeyPatch()
    mp.setattr(scanner_module, "CHUNK", 37)
    try:
        run(text.encode(), reader)
    finally:
        mp.undo()
    assert reader.lines == [line] * 20


def test_last_line_without_newline_is_read() -> None:
    reader = Collect()
    run(b"a\nMARK last", reader)
    assert reader.lines == ["MARK last"]


def test_crlf_line_endings_are_stripped() -> None:
    reader = Collect()
    run(b"MARK one\r\nMARK two\r\n", reader)
    assert reader.lines == ["MARK one", "MARK two"]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    reader = Collect()
    run(b"MARK \xff\xfe bytes\n", reader)
    assert reader.lines == ["MARK \ufffd\ufffd bytes"]


def test_a_huge_line_is_cut_to_max_line() -> None:
    reader = Collect()
    run(b"MARK" + b"x" * (MAX_LINE * 3) + b"\nMARK after\n", reader)
    assert len(reader.lines[0]) == MAX_LINE
    assert reader.lines[-1] == "MARK after"


def test_a_header_hands_its_whole_block_to_the_reader_it_names() -> None:
    headed, collect = Headed(), Collect()
    run(b"failed\n### $ thing unit\nfailed\n\nMARK x\n### other\nfailed\n", headed, collect)
    assert headed.headers == ["$ thing unit"]
    assert headed.lines == ["failed", "", "MARK x"]
    assert collect.lines == ["MARK x"]


def test_blocks_end_at_headers_and_at_end_of_input() -> None:
    reader = Collect()
    run(b"MARK a:\n### next\nline\n", reader)
    # The header ended the continuation: 'line' is not fed.
    assert reader.lines == ["MARK a:"]
    assert reader.blocks_ended >= 1


def test_lines_seen_counts_every_line() -> None:
    scanner = run(b"a\nb\nMARK c\nd\n", Collect())
    assert scanner.lines_seen == 4


def test_memory_stays_flat_on_a_large_input(tmp_path: object) -> None:
    """200 MB of log through the real readers in a child process peaks far below the input size."""
    from pathlib import Path

    path = Path(str(tmp_path)) / "big.log"
    line = (
        b"2026/11/30 03:25:13 [error] 4942#4942: *1 connect() failed (111: Connection refused) while connecting"
        b' to upstream, client: 127.0.0.1, server: _, request: "GET / HTTP/1.1", upstream:'
        b' "http://127.0.0.1:8000/", host: "localhost"\n'
    )
    noise = b"2026/11/30 03:25:13 [info] 4942#4942: *2 client closed connection while waiting for request\n"
    block = (line + noise * 9) * 1000
    with path.open("wb") as out:
        for _ in range(200 * 1024 * 1024 // len(block)):
            out.write(block)
    # The child's own high-water mark (VmHWM, KiB): its ru_maxrss would also count the pytest process it
    # was forked from, whose size depends on how many tests ran before this one.
    code = (
        "import sys; from bot.services.explain import explain_files; "
        "d = explain_files([sys.argv[1]], 502); "
        "hwm = next(x for x in open('/proc/self/status') if x.startswith('VmHWM:')); "
        "print(d.causes[0].id, hwm.split()[1])"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    cause, peak_kib = out.stdout.split()
    assert cause == "upstream_down"
    assert int(peak_kib) < 120 * 1024, f"peak RSS {int(peak_kib) // 1024} MiB for a 200 MiB input"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0
