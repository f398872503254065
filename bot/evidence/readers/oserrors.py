"""Operating-system resource errors as applications report them, whatever the language or library.

An application that runs out of local ports or file descriptors says so in its own words around the
C library's ``strerror`` text: PHP's Predis ``ConnectionException: Cannot assign requested address
[tcp://127.0.0.1:6379]``, Python's ``OSError: [Errno 24] Too many open files``, Java's
``java.net.SocketException: Too many open files``, Node's ``EMFILE``/``EADDRNOTAVAIL``. These name the
exhausted resource directly, so they point at the cause rather than at the application. Lines in
nginx's or Apache's own layout (``(99: Cannot assign …)``, ``(24)Too many open files``) are left to
those readers, which know the phase they happened in.
"""

from __future__ import annotations

from typing import ClassVar

from bot.core.models import Signal
from bot.evidence.reader import LinePattern, PatternReader

_PROXY_LAYOUT = r"\(\d+: (?:Cannot assign|Too many open)|\(\d+\)(?:Cannot assign|Too many open)"


class OsResourceErrors(PatternReader):
    name = "os.errors"
    title = "OS resource errors in application logs (EADDRNOTAVAIL, EMFILE/ENFILE)"
    patterns = (
        LinePattern(
            "os.no_free_port",
            r"Cannot assign requested address|\bEADDRNOTAVAIL\b",
            "{count}× no free local port (EADDRNOTAVAIL): ephemeral ports exhausted toward {peer}",
            detail=r"(?P<peer>(?:tcp://)?\[?[0-9A-Za-z.:-]+\]?:\d{2,5})",
            key="peer",
            unless=_PROXY_LAYOUT,
        ),
        LinePattern(
            "os.no_file_descriptors",
            r"Too many open files|\bEMFILE\b|\bENFILE\b|No file descriptors available",
            "{count}× out of file descriptors (EMFILE/ENFILE)",
            unless=_PROXY_LAYOUT,
        ),
    )
    signals: ClassVar[dict[str, Signal]] = {
        "os.no_free_port": Signal(cause="port_exhaustion", weight=0.8),
        "os.no_file_descriptors": Signal(cause="fd_exhaustion", weight=0.8),
    }


READERS = (OsResourceErrors,)
