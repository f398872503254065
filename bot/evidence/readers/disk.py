"""Disk space: ``df`` tables in every layout, and ``No space left on device`` in any program's log.

``df`` (GNU coreutils, BusyBox, macOS) is read by its column names, so ``df``, ``df -h``, ``df -H``,
``df -P`` (``Capacity``), ``df -i``, ``df -T`` and ``df --output=...`` all work, as does the old
coreutils (≤ 8.10) layout that printed a long device name on a line of its own with the numbers on
the next line. Layouts: shared/reference/error-messages.md §7.1; fixtures captured from a real full
tmpfs, a real inode-exhausted tmpfs and a real squashfs loop mount (tests/fixtures/disk/SOURCES.md).

Read-only images are always 100% used and say nothing about free space: squashfs snaps, loop
devices, ISO images. Kernel pseudo filesystems (``/dev``, ``/dev/shm``, ``/sys/fs/cgroup``,
``/run/user/…``) and ``/boot`` are not where a web site writes. Those are skipped, never disk_full.

``No space left on device`` (ENOSPC, errno 28) is disk_full wherever it appears, except where the
kernel reuses ENOSPC for something that is not disk space: inotify watch limits and System V
semaphores / shared memory (Apache's ``(28)No space left on device: AH00023: Couldn't create the …
mutex``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bot.core.models import Finding, Severity, Signal, quote_line
from bot.core.redact import redact
from bot.evidence.reader import LinePattern, PatternReader, Reader

#: At or above this Use%/IUse% a filesystem is full (ext4 keeps ~5% for root, so users see ENOSPC
#: a little before 100%).
FULL_PCT = 98
NEARLY_FULL_PCT = 90
#: Mounts remembered per input (a df of a Kubernetes node lists hundreds).
MAX_MOUNTS = 256

_HEADER_TRIGGER = r"Filesystem\s[^\n]*(?:Use%|Capacity|IUse%|%iused)"
_HEADER = re.compile(r"^(?P<prefix>.*?)\bFilesystem\s+(?P<rest>.*)$")

#: Header word → field. ``Mounted on`` is joined to one word before the lookup.
_COLUMNS = {
    "type": "fstype",
    "size": "size",
    "used": "used",
    "avail": "avail",
    "available": "avail",
    "use%": "pcent",
    "capacity": "pcent",
    "inodes": "itotal",
    "iused": "iused",
    "ifree": "iavail",
    "iuse%": "ipcent",
    "%iused": "ipcent",
    "mounted_on": "target",
    "file": "file",
}
_BLOCKS = re.compile(r"^\d+[KMGTkmgt]?i?[Bb]?-blocks$")

#: Filesystem types that are images or kernel views, never "the disk is full".
_IMAGE_TYPES = frozenset({"squashfs", "iso9660", "udf", "cramfs", "erofs", "fuse.snapfuse"})
_PSEUDO_TYPES = frozenset(
    {"devtmpfs", "proc", "sysfs", "cgroup", "cgroup2", "efivarfs", "nsfs", "devfs", "autofs", "debugfs"}
)
_PSEUDO_SOURCES = frozenset({"devtmpfs", "udev", "none", "proc", "sysfs", "cgroup", "efivarfs", "devfs"})
_PSEUDO_MOUNTS = re.compile(
    r"^(?:/dev(?:/shm|/pts)?|/sys(?:/.*)?|/proc(?:/.*)?|/run/user/\d+|/run/lock|/run/credentials/.*"
    r"|/boot(?:/efi)?|/snap/.*|/var/lib/snapd/snaps/.*|/media/.*cdrom.*|/cdrom)$"
)
_NUMBER = re.compile(r"^\d+(?:[.,]\d+)?[KMGTPEkmgtpe]?i?[Bb]?$|^-$")


def _pct(cell: str | None) -> int | None:
    if cell is None or not cell.endswith("%"):
        return None
    try:
        return int(float(cell[:-1].replace(",", ".")))
    except ValueError:
        return None


def _is_zero(cell: str | None) -> bool:
    if cell is None:
        return False
    digits = re.sub(r"[^\d.,]", "", cell).replace(",", ".")
    try:
        return float(digits) == 0.0 if digits else False
    except ValueError:
        return False


@dataclass
class _Mount:
    target: str
    source: str
    fstype: str | None = None
    pcent: int | None = None
    ipcent: int | None = None
    avail: str | None = None
    size: str | None = None
    skipped: str | None = None
    lines: list[str] = field(default_factory=list)

    def data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mount": self.target, "source": self.source}
        for name in ("fstype", "pcent", "ipcent", "avail", "size"):
            value = getattr(self, name)
            if value is not None:
                out[{"pcent": "use_pct", "ipcent": "inode_use_pct"}.get(name, name)] = value
        return out


def _skip_reason(source: str, fstype: str | None, target: str) -> str | None:
    """Why a filesystem cannot be 'the full disk' (None when it can)."""
    if fstype in _IMAGE_TYPES or source.startswith("/dev/loop") or "/snaps/" in source:
        return "read-only image (always 100% used)"
    if fstype in _PSEUDO_TYPES or source in _PSEUDO_SOURCES:
        return "kernel pseudo filesystem"
    if _PSEUDO_MOUNTS.match(target):
        return "system mount, not application data"
    return None


class DfReader(Reader):
    """``df`` tables: the fullest real filesystem, by space and by inodes."""

    name = "disk.df"
    title = "df (disk space and inodes)"
    triggers = (_HEADER_TRIGGER,)
    signals: ClassVar[dict[str, Signal]] = {
        "disk.full": Signal(cause="disk_full", weight=0.8),
        "disk.inodes_full": Signal(cause="disk_full", weight=0.8),
        "disk.nearly_full": Signal(cause="disk_full", weight=0.25),
    }

    def __init__(self) -> None:
        self._columns: list[str] | None = None
        self._prefix = 0
        self._header_line = ""
        self._pending: str | None = None
        self._mounts: dict[str, _Mount] = {}
        self._tables = 0

    def end_block(self) -> None:
        self._columns = None
        self._pending = None

    def feed(self, line: str) -> bool:
        header = _HEADER.match(line)
        if header and re.search(_HEADER_TRIGGER, line):
            self._start_table(header.group("prefix"), header.group("rest"), line)
            return True
        if self._columns is None:
            return False
        return self._row(line)

    def _start_table(self, prefix: str, rest: str, line: str) -> None:
        words = re.sub(r"Mounted\s+on", "mounted_on", rest).split()
        columns = ["source"]
        for word in words:
            key = word.lower()
            columns.append("blocks" if _BLOCKS.match(word) else _COLUMNS.get(key, key))
        self._columns = columns
        self._prefix = len(prefix)
        self._header_line = line
        self._pending = None
        self._tables += 1

    def _row(self, line: str) -> bool:
        assert self._columns is not None
        body = line[self._prefix :] if self._prefix and len(line) > self._prefix else line
        cells = body.split()
        if not cells:
            self._columns = None
            return False
        if self._pending is not None:
            # Old coreutils: the device name stood alone on the previous line.
            cells = [self._pending, *cells]
            line = f"{self._pending} {line.strip()}"
            self._pending = None
        elif len(cells) == 1 and not _NUMBER.match(cells[0]):
            self._pending = cells[0]
            return True
        ncols = len(self._columns)
        if len(cells) < ncols - 1:
            self._columns = None
            return False
        if len(cells) > ncols:
            # A mount point with spaces: fold the surplus into the last column.
            cells = [*cells[: ncols - 1], " ".join(cells[ncols - 1 :])]
        row = dict(zip(self._columns, cells, strict=False))
        pcent, ipcent = _pct(row.get("pcent")), _pct(row.get("ipcent"))
        if pcent is None and ipcent is None and row.get("pcent") != "-" and row.get("ipcent") != "-":
            self._columns = None
            return False
        self._record(row, pcent, ipcent, line)
        return True

    def _record(self, row: dict[str, str], pcent: int | None, ipcent: int | None, line: str) -> None:
        source = row.get("source", "?")
        target = row.get("target") or row.get("file") or source
        mount = self._mounts.get(target)
        if mount is None:
            if len(self._mounts) >= MAX_MOUNTS:
                return
            mount = self._mounts[target] = _Mount(target=target, source=source)
        fstype = row.get("fstype")
        if fstype:
            mount.fstype = fstype
        if pcent is not None:
            mount.pcent = pcent
            mount.avail = row.get("avail", mount.avail)
            mount.size = row.get("size", row.get("blocks", mount.size))
            if _is_zero(row.get("avail")) and not _is_zero(mount.size):
                mount.pcent = max(pcent, 100)
        if ipcent is not None:
            mount.ipcent = ipcent
        mount.skipped = _skip_reason(source, mount.fstype, target)
        if len(mount.lines) < 4:
            if self._header_line and self._header_line not in mount.lines:
                mount.lines.append(quote_line(self._header_line))
            mount.lines.append(quote_line(line))

    def findings(self) -> list[Finding]:
        if not self._mounts:
            return []
        out: list[Finding] = []
        real = [m for m in self._mounts.values() if m.skipped is None]
        for mount in real:
            evidence = tuple(redact(x) for x in mount.lines)
            if mount.pcent is not None and mount.pcent >= FULL_PCT:
                out.append(
                    Finding(
                        kind="disk.full",
                        severity=Severity.CRITICAL,
                        summary=f"filesystem {mount.target} ({mount.source}) is {mount.pcent}% full"
                        + (f", {mount.avail} available" if mount.avail is not None else ""),
                        evidence=evidence,
                        data=mount.data(),
                        reader=self.name,
                    )
                )
            elif mount.pcent is not None and mount.pcent >= NEARLY_FULL_PCT:
                out.append(
                    Finding(
                        kind="disk.nearly_full",
                        severity=Severity.WARNING,
                        summary=f"filesystem {mount.target} ({mount.source}) is {mount.pcent}% full",
                        evidence=evidence,
                        data=mount.data(),
                        reader=self.name,
                    )
                )
            if mount.ipcent is not None and mount.ipcent >= FULL_PCT:
                out.append(
                    Finding(
                        kind="disk.inodes_full",
                        severity=Severity.CRITICAL,
                        summary=f"filesystem {mount.target} ({mount.source}) has used {mount.ipcent}% of its "
                        "inodes: no new files can be created",
                        evidence=evidence,
                        data=mount.data(),
                        reader=self.name,
                    )
                )
        if not out:
            out.append(self._healthy(real))
        return out

    def _healthy(self, real: list[_Mount]) -> Finding:
        def fullness(m: _Mount) -> int:
            return max(m.pcent or 0, m.ipcent or 0)

        skipped = [m for m in self._mounts.values() if m.skipped is not None and fullness(m) >= FULL_PCT]
        data: dict[str, Any] = {"mounts": len(real)}
        if skipped:
            data["ignored_full"] = [f"{m.target} ({m.skipped})" for m in skipped[:8]]
        if real:
            worst = max(real, key=fullness)
            data.update(worst.data())
            summary = f"no filesystem is full; the fullest is {worst.target} at {fullness(worst)}%"
            evidence = tuple(redact(x) for x in worst.lines)
        else:
            summary = "no application filesystem in the df output"
            evidence = ()
        if skipped:
            summary += f" ({len(skipped)} read-only/system mount(s) at 100% ignored)"
        return Finding(
            kind="disk.ok", severity=Severity.OK, summary=summary, evidence=evidence, data=data, reader=self.name
        )


def _p(kind: str, trigger: str, summary: str, **kw: Any) -> LinePattern:
    return LinePattern(f"disk.{kind}", trigger, summary, Severity.CRITICAL, **kw)


#: ENOSPC that is not about disk space: inotify watches, SysV semaphores and shared memory.
_NOT_DISK = (
    r"(?i:inotify|file watchers|watch limit|max_user_watches|semget|semaphore|shmget|mutex"
    r"|accept lock|AH00023|AH00076|AH02019|rewrite_log_lock|msgget)"
)


class EnospcReader(PatternReader):
    """``No space left on device`` / ``ENOSPC`` / ``[Errno 28]`` written by any program."""

    name = "disk.enospc"
    title = "No space left on device (ENOSPC) in any log"
    patterns = (
        _p(
            "enospc",
            r"(?i:no space left on device)|\bENOSPC\b|\[Errno 28\]|errno[ =:]+28\b",
            "{count}× a write failed: no space left on device",
            unless=_NOT_DISK,
        ),
    )
    signals: ClassVar[dict[str, Signal]] = {"disk.enospc": Signal(cause="disk_full", weight=0.85)}


READERS = (DfReader, EnospcReader)
