"""The explain use case: evidence text in, ranked causes out (DESIGN §2: the pipeline without SSH)."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from typing import BinaryIO

from bot.core.models import Diagnosis
from bot.diagnosis.engine import diagnose
from bot.errors import EvidenceUnreadable
from bot.evidence.registry import Registry, load
from bot.evidence.scanner import Scanner


def _open_all(paths: Sequence[str], stack: ExitStack, stdin: BinaryIO) -> Iterator[BinaryIO]:
    for path in paths or ["-"]:
        if path == "-":
            yield stdin
            continue
        try:
            stream = stack.enter_context(open(path, "rb"))  # noqa: SIM115 - closed by the stack
        except FileNotFoundError:
            raise EvidenceUnreadable(path, "no such file") from None
        except IsADirectoryError:
            raise EvidenceUnreadable(path, "is a directory") from None
        except PermissionError:
            raise EvidenceUnreadable(path, "permission denied") from None
        except OSError as exc:
            raise EvidenceUnreadable(path, exc.strerror or type(exc).__name__) from None
        yield stream


def explain_files(
    paths: Sequence[str], status: int | None, *, registry: Registry | None = None, stdin: BinaryIO | None = None
) -> Diagnosis:
    """Read every file (``-`` or none: standard input) and diagnose what they show.

    Every file is opened before any is read, so an unreadable one fails fast with nothing half-done.
    """
    registry = registry or load()
    scanner = Scanner(registry.instances())
    with ExitStack() as stack:
        streams = list(_open_all(paths, stack, stdin or sys.stdin.buffer))
        for stream in streams:
            try:
                scanner.scan_stream(stream)
            except OSError as exc:
                name = getattr(stream, "name", "-")
                raise EvidenceUnreadable(str(name), exc.strerror or type(exc).__name__) from None
    return diagnose(scanner.findings(), status, registry.signals())


def explain_text(text: str, status: int | None, *, registry: Registry | None = None) -> Diagnosis:
    """Diagnose pasted text (chat ``/explain``)."""
    registry = registry or load()
    scanner = Scanner(registry.instances())
    scanner.scan_text(text)
    return diagnose(scanner.findings(), status, registry.signals())
