"""disk readers: df tables in every layout (real full/inode-full tmpfs, squashfs) and ENOSPC lines."""

from __future__ import annotations

import subprocess

import pytest

from bot.evidence.readers.disk import DfReader, EnospcReader
from bot.testing import explain, read
from tests.evidence.readers._host_fixtures import fixture


def _by_kind(text: str) -> dict[str, list[dict[str, object]]]:
    out: dict[str, list[dict[str, object]]] = {}
    for finding in read(text, [DfReader, EnospcReader]):
        out.setdefault(finding.kind, []).append(finding.data)
    return out


@pytest.mark.parametrize(
    "name", ["df-h-full.txt", "df-P-full.txt", "df-T-full.txt", "df-hT-full.txt", "df-output-full.txt"]
)
def test_a_real_full_tmpfs_is_disk_full_in_every_df_layout(name: str) -> None:
    found = _by_kind(fixture("disk", name))
    assert [d["mount"] for d in found["disk.full"]] == ["/tmp/dfcap.NPTg/data"]
    assert found["disk.full"][0]["use_pct"] == 100


def test_a_real_inode_exhausted_tmpfs_is_inodes_full_not_space_full() -> None:
    found = _by_kind(fixture("disk", "df-i-inodes-full.txt"))
    assert [d["mount"] for d in found["disk.inodes_full"]] == ["/tmp/dfcap.NPTg/inodes"]
    assert "disk.full" not in found


def test_df_output_with_both_percentages_reports_space_and_inodes_separately() -> None:
    found = _by_kind(fixture("disk", "df-output-full.txt"))
    assert found["disk.inodes_full"][0]["mount"] == "/tmp/dfcap.NPTg/inodes"
    assert found["disk.full"][0]["mount"] == "/tmp/dfcap.NPTg/data"


def test_a_squashfs_loop_mount_at_100_percent_is_never_disk_full() -> None:
    """Near miss: read-only images (snaps) are always 100% used; the OK finding says they were ignored."""
    findings = read(fixture("disk", "df-h-squashfs-only.txt"), [DfReader])
    assert [f.kind for f in findings] == ["disk.ok"]
    assert findings[0].data["ignored_full"] == ["/tmp/dfcap.NPTg/snap-core (read-only image (always 100% used))"]
    assert findings[0].data["mount"] == "/"
    assert explain(fixture("disk", "df-h-squashfs-only.txt"), 500).causes[0].id != "disk_full"


def test_the_squashfs_inode_table_at_100_percent_is_ignored_too() -> None:
    found = _by_kind(fixture("disk", "df-i-inodes-full.txt"))
    assert all(d["source"] != "/dev/loop0" for d in found["disk.inodes_full"])


def test_old_coreutils_wrapped_device_lines_are_joined() -> None:
    """coreutils ≤ 8.10 printed a long device name alone, numbers on the next line (tab-indented here)."""
    findings = read(fixture("disk", "fedora-df-h-wrapped.txt"), [DfReader])
    assert [f.kind for f in findings] == ["disk.ok"]
    assert findings[0].data["source"] == "/dev/mapper/VolGroup00-LogVol00"
    assert findings[0].data["use_pct"] == 89


def test_boot_at_91_percent_is_not_an_application_disk_warning() -> None:
    findings = read(fixture("disk", "fedora-df-h-wrapped.txt"), [DfReader])
    assert "disk.nearly_full" not in {f.kind for f in findings}


def test_wrapped_df_m_with_1m_blocks_header_is_read() -> None:
    findings = read(fixture("disk", "prism-df-m-wrapped.txt"), [DfReader])
    assert findings[0].kind == "disk.ok"
    assert findings[0].data["use_pct"] == 49


def test_a_data_volume_at_95_percent_is_nearly_full_with_a_weak_signal() -> None:
    found = _by_kind(fixture("disk", "fielddb-df-hT-95.txt"))
    assert [d["mount"] for d in found["disk.nearly_full"]] == ["/data"]
    assert DfReader.signals["disk.nearly_full"].weight < 0.5


def test_real_enospc_lines_from_dd_touch_and_python_are_disk_full() -> None:
    findings = read(fixture("disk", "enospc-real.txt"), [EnospcReader])
    assert [(f.kind, f.data["count"]) for f in findings] == [("disk.enospc", 3)]


def test_apache_writing_its_log_on_a_full_disk_is_enospc() -> None:
    assert {f.kind for f in read(fixture("disk", "apache-log-enospc.txt"), [EnospcReader])} == {"disk.enospc"}


def test_apache_semaphore_enospc_is_not_disk_full() -> None:
    """Near miss: AH00023 'Couldn't create the proxy mutex' is SysV semaphores running out."""
    assert read(fixture("disk", "apache-semaphore-enospc.txt"), [EnospcReader]) == []


def test_inotify_watch_limit_enospc_is_not_disk_full() -> None:
    """Near miss: Node's 'ENOSPC: System limit for number of file watchers reached' is inotify."""
    assert read(fixture("disk", "inotify-enospc.txt"), [EnospcReader]) == []


def test_df_plus_a_500_ranks_disk_full_first() -> None:
    text = fixture("disk", "df-h-full.txt") + fixture("disk", "enospc-real.txt")
    assert explain(text, 500).causes[0].id == "disk_full"


def test_live_df_p_on_this_machine_is_understood() -> None:
    """The real `df -P` of the test host parses into a disk finding (healthy hosts give OK)."""
    out = subprocess.run(["df", "-P"], capture_output=True, text=True, check=False).stdout
    findings = read(f"### $ df -P\n{out}", [DfReader])
    assert findings, out
    assert {f.kind for f in findings} <= {"disk.ok", "disk.full", "disk.nearly_full", "disk.inodes_full"}
    assert all("mount" in f.data or f.kind == "disk.ok" for f in findings)
