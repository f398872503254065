"""memory readers: free in every procps generation, and kernel OOM-killer lines of every era."""

from __future__ import annotations

import subprocess

import pytest

from bot.evidence.readers.memory import FreeReader, OomKillerReader
from bot.testing import explain, read
from tests.evidence.readers._host_fixtures import fixture


@pytest.mark.parametrize(
    "name", ["free.txt", "free-m.txt", "free-h.txt", "free-g.txt", "free-b.txt", "free-wm.txt", "free-tm.txt"]
)
def test_real_free_outputs_with_plenty_available_are_ok(name: str) -> None:
    (finding,) = read(fixture("memory", name), [FreeReader])
    assert finding.kind == "memory.ok"
    assert finding.data["available_pct"] > 90
    assert finding.data["swap"] is False


def test_procps_3_3_9_layout_uses_the_buffers_cache_row() -> None:
    (finding,) = read(fixture("memory", "centos5-free-m-old.txt"), [FreeReader])
    assert finding.kind == "memory.ok"
    assert finding.data["available_basis"] == "free (-/+ buffers/cache)"
    assert finding.data["available_pct"] == pytest.approx(87.1, abs=0.1)


def test_no_memory_available_and_swap_full_is_memory_low() -> None:
    """A public `free -g`: 0 GiB available of 1, swap 1 of 1 used."""
    (finding,) = read(fixture("memory", "centos-free-g-exhausted.txt"), [FreeReader])
    assert finding.kind == "memory.low"
    assert finding.data["available_pct"] == 0
    assert FreeReader.signals["memory.low"].weight <= 0.35


@pytest.mark.parametrize("name", ["centos-free-m-swap-full.txt", "el7-free-lm-swap-full.txt"])
def test_full_swap_with_memory_still_available_is_not_memory_low(name: str) -> None:
    """Near miss: swap that filled up long ago says little while `available` is healthy."""
    (finding,) = read(fixture("memory", name), [FreeReader])
    assert finding.kind == "memory.ok"
    assert finding.data["swap_used_pct"] == 100


@pytest.mark.parametrize(
    ("name", "victim", "pid"),
    [
        ("cloudpanel-mariadb-oom.txt", "mariadbd", 1235),
        ("genular-journal-v4.txt", "R", 27438),
        ("cpanel-rhel6-killed.txt", "mysqld", 11726),
        ("coreclr-syslog-dmesg.txt", "corerun", 31490),
        ("systemd-ci-current-format.txt", "sleep", 934),
        ("pqhosting-dmesg-T.txt", "php-fpm", 14821),
    ],
)
def test_oom_kill_lines_of_every_era_name_the_victim(name: str, victim: str, pid: int) -> None:
    (finding,) = read(fixture("memory", name), [OomKillerReader])
    assert finding.kind == "memory.oom_kill"
    assert finding.data["victim"] == victim
    assert finding.data["pid"] == pid
    assert victim in finding.summary


def test_the_invoking_process_is_not_taken_for_the_victim() -> None:
    (finding,) = read(fixture("memory", "cloudpanel-mariadb-oom.txt"), [OomKillerReader])
    assert finding.data["victim"] == "mariadbd"
    assert finding.data["invoked_by"] == ["redis-server", "containerd"]
    assert finding.data["cgroup"] == "/system.slice/mariadb.service"


def test_v4_memcg_limit_kill_is_an_oom_kill_in_the_container_cgroup() -> None:
    (finding,) = read(fixture("memory", "femiwiki-memcg-4.14.txt"), [OomKillerReader])
    assert finding.data["cgroup"].startswith("/docker/1010954e")


def test_oom_kill_ranks_first_for_a_502() -> None:
    assert explain(fixture("memory", "cloudpanel-mariadb-oom.txt"), 502).causes[0].id == "oom_kill"


@pytest.mark.parametrize("name", ["php-out-of-memory.txt", "unit-oomscoreadjust.txt"])
def test_oom_words_outside_kernel_kill_lines_do_not_fire(name: str) -> None:
    """Near misses: PHP's own 'Out of memory (allocated …)' and an OOMScoreAdjust= unit setting."""
    assert read(fixture("memory", name), [OomKillerReader]) == []


def test_oom_dump_stack_frames_alone_do_not_fire() -> None:
    """Near miss: the `oom_kill_process+0x…` frames of a dump are not a kill line by themselves."""
    frames = [x for x in fixture("memory", "cloudpanel-mariadb-oom.txt").splitlines() if "+0x" in x]
    assert frames
    assert read("\n".join(frames) + "\n", [OomKillerReader]) == []


def test_live_free_m_on_this_machine_is_understood() -> None:
    out = subprocess.run(["free", "-m"], capture_output=True, text=True, check=True).stdout
    (finding,) = read(out, [FreeReader])
    assert finding.kind in {"memory.ok", "memory.low"}
    assert 0 <= finding.data["available_pct"] <= 100
