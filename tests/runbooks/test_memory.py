"""memory: free -m, then the kernel log through journalctl -k, dmesg -T or /var/log/kern.log."""

from __future__ import annotations

from bot.testing import drive
from runbooks.memory import KERNEL_LOG_TAIL, Memory

from ._fixtures import fx, result

JOURNAL = ("journalctl", "-k", "--no-pager", "--since", "-2 hours", "-o", "short-iso")
DMESG = ("dmesg", "-T")
NO_SUDO = result(error="sudo_not_allowed", exit_status=None)
OOM = fx("memory", "dmesg-oom.txt")


def test_no_journal_and_no_sudo_falls_back_to_plain_dmesg() -> None:
    """This container: journalctl exists but there is no journal; dmesg works for root."""
    journal = fx("memory", "journalctl-k-no-journal.txt")
    findings = drive(Memory, None, {
        ("free", "-m"): fx("memory", "free-m.txt"),
        JOURNAL: result("-- No entries --\n", stderr="No journal files were found.\n"),
        DMESG: OOM,
    })
    assert "No journal files were found." in journal
    kinds = {f.kind: f for f in findings}
    assert kinds["memory.ok"].severity.value == "ok"
    assert kinds["memory.oom_kill"].data["victim"] == "php-fpm"


def test_sudo_journal_without_oom_is_ok() -> None:
    findings = drive(Memory, None, {("free", "-m"): fx("memory", "free-m.txt"), JOURNAL: "-- No entries --\n"})
    assert {f.kind for f in findings} == {"memory.ok", "memory.no_oom_kill"}


def test_every_kernel_log_refused_is_one_failed_finding() -> None:
    findings = drive(Memory, None, {
        ("free", "-m"): fx("memory", "free-m.txt"),
        JOURNAL: NO_SUDO,
        DMESG: result(stderr="dmesg: read kernel buffer failed: Operation not permitted\n", exit_status=1),
        "tail -n 2000 /var/log/kern.log": result(stderr="no readable /var/log/kern.log or /var/log/messages\n",
                                                 exit_status=1),
    })
    assert [f.kind for f in findings] == ["memory.ok", "runbook.command_failed"]
    assert "kern.log" in findings[1].summary
    assert "$1" not in KERNEL_LOG_TAIL  # a fixed script: nothing is passed in
