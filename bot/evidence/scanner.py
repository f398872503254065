"""Streaming scan of evidence text: one pass, bounded memory, each line to the readers that want it.

The input is read in chunks of bytes. One RE2 pattern, the union of every reader's triggers and the
``### header`` marker, finds the interesting lines of a chunk without a Python call per line; only
those lines are decoded and dispatched. When a reader asks for the lines that follow (a table, a
traceback) or a header block names a reader, the scanner walks those lines one by one and returns to
the fast path afterwards. A line longer than ``MAX_LINE`` is cut, so memory stays flat on any input.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from typing import BinaryIO

import re2

from bot.core.models import Finding
from bot.evidence.reader import Reader

CHUNK = 1 << 22
MAX_LINE = 64 * 1024
#: Memory RE2 may use for the prefilter's DFA; the union of every trigger needs far more than RE2's
#: default 8 MiB, and without it RE2 falls back to its much slower NFA.
PREFILTER_MEMORY = 256 << 20
_HEADER = re.compile(r"^\s*###\s*(.*?)\s*$")


class Scanner:
    """Feeds the lines of one or more inputs to a fixed set of reader instances."""

    def __init__(self, readers: Sequence[Reader]) -> None:
        self.readers = list(readers)
        triggers = [t for r in self.readers for t in r.triggers]
        union = "|".join(f"(?:{t})" for t in [r"(?m:^[ \t]*###)", *triggers])
        options = re2.Options()
        options.max_mem = PREFILTER_MEMORY
        options.never_capture = True
        options.log_errors = False
        self._prefilter = re2.compile(union.encode(), options)
        # One RE2 set of every reader's triggers tells, in a single pass over a line, which readers want it.
        self._dispatch = re2.Set.SearchSet(options)
        self._triggered: list[Reader] = []
        for reader in self.readers:
            if reader.triggers:
                self._dispatch.Add("|".join(f"(?:{t})" for t in reader.triggers).encode())
                self._triggered.append(reader)
        self._dispatch.Compile()
        self._headed = [(re.compile(r.header, re.I), r) for r in self.readers if r.header]
        self._active: list[Reader] = []
        self._block: list[Reader] = []
        self.lines_seen = 0

    # -- public -------------------------------------------------------------------------------
    def scan_stream(self, stream: BinaryIO) -> None:
        """Read ``stream`` to its end in chunks; call once per input."""
        tail = b""
        while True:
            chunk = stream.read(CHUNK)
            if not chunk:
                break
            buf = tail + chunk if tail else chunk
            cut = buf.rfind(b"\n") + 1
            if cut == 0:
                # No line end in sight: keep at most MAX_LINE of this line.
                tail = buf[:MAX_LINE] if len(buf) > MAX_LINE else buf
                continue
            tail = buf[cut:]
            if len(tail) > MAX_LINE:
                tail = tail[:MAX_LINE]
            self._scan_chunk(buf, cut)
        if tail:
            self._scan_chunk(tail + b"\n", len(tail) + 1)
        self._end_input()

    def scan_text(self, text: str) -> None:
        """Convenience for pasted text (chat ``/explain``)."""
        self.scan_stream(io.BytesIO(text.encode("utf-8", "replace")))

    def findings(self) -> list[Finding]:
        out: list[Finding] = []
        for reader in self.readers:
            out.extend(reader.findings())
        return out

    # -- internals ----------------------------------------------------------------------------
    def _scan_chunk(self, buf: bytes, end: int) -> None:
        pos = 0
        search = self._prefilter.search
        while pos < end:
            if self._active or self._block:
                nl = buf.find(b"\n", pos, end)
                nl = end - 1 if nl < 0 else nl
                self._line(buf[pos:nl])
                pos = nl + 1
                continue
            match = search(buf, pos, end)
            if match is None:
                self.lines_seen += buf.count(b"\n", pos, end)
                return
            start = max(pos, buf.rfind(b"\n", pos, match.start()) + 1)
            self.lines_seen += buf.count(b"\n", pos, start)
            nl = buf.find(b"\n", match.start(), end)
            nl = end - 1 if nl < 0 else nl
            self._line(buf[start:nl])
            pos = nl + 1

    def _line(self, raw: bytes) -> None:
        self.lines_seen += 1
        if len(raw) > MAX_LINE:
            raw = raw[:MAX_LINE]
        line = raw.decode("utf-8", "replace").rstrip("\r")
        header = _HEADER.match(line)
        if header:
            self._start_block(header.group(1))
            return
        fed: set[int] = set()
        still: list[Reader] = []
        for reader in self._active:
            fed.add(id(reader))
            if reader.feed(line):
                still.append(reader)
        for reader in self._block:
            if id(reader) not in fed:
                fed.add(id(reader))
                if reader.feed(line) and reader not in still:
                    still.append(reader)
        for index in sorted(self._dispatch.Match(raw) or ()):
            reader = self._triggered[index]
            if id(reader) in fed:
                continue
            fed.add(id(reader))
            if reader.feed(line):
                still.append(reader)
        self._active = [r for r in still if r not in self._block]

    def _start_block(self, header: str) -> None:
        self._end_block()
        self._block = [reader for pattern, reader in self._headed if pattern.search(header)]
        for reader in self._block:
            reader.start_block(header)

    def _end_block(self) -> None:
        for reader in {id(r): r for r in [*self._active, *self._block]}.values():
            reader.end_block()
        self._active = []
        self._block = []

    def _end_input(self) -> None:
        self._end_block()


def scan(streams: Iterable[BinaryIO], readers: Sequence[Reader]) -> tuple[list[Finding], int]:
    """Scan every stream with one set of readers; return the findings and the number of lines read."""
    scanner = Scanner(readers)
    for stream in streams:
        scanner.scan_stream(stream)
    return scanner.findings(), scanner.lines_seen
