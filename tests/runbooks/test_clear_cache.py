"""clear_cache: a cache NAME from the ``cache_dirs`` fact, its path checked before anything runs, then
stat, du, ``find -delete``, du; plain first and through sudo after a "Permission denied".

Replays of real runs on this machine (tests/fixtures/runbooks/clear_cache/SOURCES.md), the refusals, and
one live run over the fault lab's real sshd that deletes the files of a directory under /var/cache.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bot.adapters.ssh import SshExecutor
from bot.config import load_settings
from bot.core.commands import Command, CommandResult
from bot.core.models import Finding
from bot.core.ports import AuditEntry
from bot.lab import Lab
from bot.services.runner import HostPlan, Runner
from bot.services.targets import resolve
from bot.testing import drive
from runbooks.clear_cache import ClearCache, ClearCacheParams, cache_dirs, path_problem, size
from tests.labfixture import running_lab
from tests.runbooks._datastores import records, replay, result_of, run_steps

from ._fixtures import fx

PATH = "/var/cache/ib-capture/thumbs"
FACTS = {"cache_dirs": f"thumbs={PATH},pages=/srv/app/cache"}
THUMBS = ClearCacheParams(cache="thumbs")
STAT = ("stat", "-c", "%F", "--", PATH)
DU = ("du", "-sk", "--", PATH)
FIND = ("find", PATH, "-xdev", "-mindepth", "1", "-delete")


def _replay(name: str) -> tuple[list[Finding], list[tuple[tuple[str, ...], bool]]]:
    found, asked = replay(ClearCache, "clear_cache", name, facts=FACTS, params=THUMBS)
    return found, [(c.argv, c.sudo) for c in asked]


def test_a_cache_the_login_user_may_clear_is_cleared_without_sudo() -> None:
    """As root (no sudo needed): 12308 KiB before, 4 KiB after (the directory itself), one ok finding."""
    found, asked = _replay("cleared")
    assert asked == [(STAT, False), (DU, False), (FIND, False), (DU, False)]
    [finding] = found
    assert finding.kind == "action.cache_cleared" and finding.severity.value == "ok"
    assert finding.summary == f"cleared cache thumbs ({PATH}) on capture: 12 MiB → 4 KiB"
    assert finding.data == {"cache": "thumbs", "path": PATH, "before_kib": 12308, "after_kib": 4, "sudo": False}
    assert finding.evidence == (f"12308\t{PATH}", f"4\t{PATH}")


def test_permission_denied_on_delete_is_retried_through_sudo_and_so_is_the_rest() -> None:
    found, asked = _replay("denied-then-sudo")
    assert asked == [(STAT, False), (DU, False), (FIND, False), (FIND, True), (DU, True)]
    [finding] = found
    assert finding.kind == "action.cache_cleared" and finding.data["sudo"] is True
    assert finding.summary.endswith("12 MiB → 4 KiB")


def test_without_sudo_a_cache_the_bot_may_not_delete_is_a_failure_quoting_find() -> None:
    found, asked = _replay("denied-no-sudo")
    assert asked == [(STAT, False), (DU, False), (FIND, False), (FIND, True), (DU, False)]
    [finding] = found
    assert finding.kind == "action.cache_clear_failed" and finding.severity.value == "critical"
    assert finding.summary == (
        f"clearing cache thumbs ({PATH}) on capture failed: `find` could not delete everything as the bot's "
        "user, and this host's configuration does not allow sudo (12 MiB → 12 MiB)"
    )
    assert len(finding.evidence) == 3
    assert all(
        line.startswith("find: cannot delete '") and line.endswith("Permission denied") for line in finding.evidence
    )


def test_a_cache_the_bot_cannot_read_whole_is_not_touched_without_sudo() -> None:
    """du meets an unreadable directory and sudo is not allowed: no find is sent at all."""
    found, asked = _replay("unreadable-no-sudo")
    assert asked == [(STAT, False), (DU, False), (DU, True)]
    [finding] = found
    assert finding.kind == "action.cache_clear_failed"
    assert (
        "cannot read all of it as the bot's user, and this host's configuration does not allow sudo" in finding.summary
    )
    assert finding.summary.endswith("nothing was deleted")
    assert finding.evidence == (f"du: cannot read directory '{PATH}/sub': Permission denied",)


def test_an_unreadable_part_is_measured_again_through_sudo_before_deleting() -> None:
    found, asked = _replay("unreadable-then-sudo")
    assert asked == [(STAT, False), (DU, False), (DU, True), (FIND, True), (DU, True)]
    assert [f.summary for f in found] == [f"cleared cache thumbs ({PATH}) on capture: 12 MiB → 4 KiB"]


def test_a_cache_behind_a_closed_directory_is_cleared_wholly_through_sudo() -> None:
    found, asked = _replay("hidden-then-sudo")
    assert asked == [(STAT, False), (STAT, True), (DU, True), (FIND, True), (DU, True)]
    assert [f.kind for f in found] == ["action.cache_cleared"]


def test_sudo_refusing_the_delete_is_quoted_with_where_to_allow_it() -> None:
    """denied-then-sudo's first three commands, then sudo's real refusal of the find (sudo-refused.txt) and
    the plain du of denied-no-sudo: the sudoers snippet is named."""
    run = records("clear_cache", "denied-then-sudo")[:3]
    refused = {"argv": list(FIND), "sudo": True, "exit_status": 1, "stdout": "", "error": None,
               "stderr": fx("clear_cache", "sudo-refused.txt")}  # fmt: skip
    after = records("clear_cache", "denied-no-sudo")[-1]
    found, asked = _answer_in_order([*run, refused, after])
    assert asked == [(STAT, False), (DU, False), (FIND, False), (FIND, True), (DU, False)]
    [finding] = found
    assert finding.kind == "action.cache_clear_failed"
    assert "sudo refused (sudo: a password is required): see deploy/sudoers/incident-bot" in finding.summary


def _answer_in_order(
    recorded: list[dict[str, Any]], facts: Mapping[str, str] = FACTS
) -> tuple[list[Finding], list[tuple[tuple[str, ...], bool]]]:
    pending = list(recorded)
    asked: list[tuple[tuple[str, ...], bool]] = []

    def answer(command: Command) -> CommandResult:
        asked.append((command.argv, command.sudo))
        record = pending.pop(0)
        assert (tuple(record["argv"]), record["sudo"]) == (command.argv, command.sudo), record
        return result_of(record, command)

    found = run_steps(ClearCache(THUMBS, facts).steps(), answer)
    assert not pending
    return found, asked


def test_a_missing_cache_directory_is_said_and_nothing_else_runs() -> None:
    found, asked = _replay("missing")
    assert asked == [(STAT, False)]
    [finding] = found
    assert finding.kind == "action.cache_missing" and finding.severity.value == "warning"
    assert finding.summary == f"cache thumbs ({PATH}) does not exist on capture: nothing to clear"


@pytest.mark.parametrize(
    ("capture", "said"), [("symlink", "is a symbolic link"), ("not-a-directory", "is a regular file")]
)
def test_a_link_or_a_file_in_place_of_the_directory_is_refused(capture: str, said: str) -> None:
    found, asked = _replay(capture)
    assert asked == [(STAT, False)]
    [finding] = found
    assert finding.kind == "action.refused" and said in finding.summary


@pytest.mark.parametrize(
    ("fact", "why"),
    [
        ("pages=/srv/app/cache", "there is no cache named 'thumbs' in this host's `cache_dirs` fact (pages)"),
        ("", "(the host has none)"),
        ("thumbs=/var/cache/a,thumbs=/var/cache/b", "names 'thumbs' 2 times"),
        ("thumbs=var/cache/app", "is not an absolute path"),
        ("thumbs=/var/cache/app/../../../etc", "is not written plainly"),
        ("thumbs=/var/cache/./app", "is not written plainly"),
        ("thumbs=/var/cache//app", "is not written plainly"),
        ("thumbs=/var/cache/app\nx", "is not written plainly"),
        ("thumbs=/var/cache", "is a cache root itself"),
        ("thumbs=/srv/", "is a cache root itself"),
        ("thumbs=/", "is a cache root itself"),
        ("thumbs=/etc/app", "is not below a cache root"),
        ("thumbs=/var/log/app", "is not below a cache root"),
        ("thumbs=/tmp/cache", "is not below a cache root"),
        ("thumbs=/var/cachefoo/x", "is not below a cache root"),
    ],
)
def test_refusals_run_nothing(fact: str, why: str) -> None:
    """drive() fails on any command it was not given: each refusal ran nothing."""
    [finding] = drive(ClearCache, {"cache": "thumbs"}, {}, facts={"cache_dirs": fact})
    assert finding.kind == "action.refused" and finding.severity.value == "warning"
    assert finding.summary.startswith("did not clear cache thumbs: ") and why in finding.summary, finding.summary
    assert finding.data["fact"] == "cache_dirs"


def test_the_fact_format_and_a_trailing_slash() -> None:
    """NAME=PATH pairs, spaces around them ignored, bad names left out; a trailing `/` is dropped from argv."""
    assert cache_dirs({"cache_dirs": " thumbs = /var/cache/t , bad name=/x,-x=/y,noequals, pages=/srv/p"}) == {
        "thumbs": ["/var/cache/t"],
        "pages": ["/srv/p"],
    }
    assert path_problem("/var/lib/app/cache/") is None
    found = drive(ClearCache, {"cache": "t"}, {("stat", "-c", "%F", "--", "/opt/app/t"): "regular file\n"},
                  facts={"cache_dirs": "t=/opt/app/t/"})  # fmt: skip
    assert [f.kind for f in found] == ["action.refused"]


@pytest.mark.parametrize("bad", ["/var/cache/x", "../x", "a b", "", "-x", ".x", "x;id", "a" * 65])
def test_the_parameter_is_a_name_never_a_path(bad: str) -> None:
    with pytest.raises(ValidationError):
        ClearCacheParams.model_validate({"cache": bad})


def test_sizes_read_as_people_say_them() -> None:
    assert [size(k) for k in (0, 4, 1023, 1536, 12308, 122880, 3 * 1024**2, None)] == [
        "0 KiB", "4 KiB", "1023 KiB", "1.5 MiB", "12 MiB", "120 MiB", "3 GiB", "?",
    ]  # fmt: skip


# -- live: the fault lab's sshd --------------------------------------------------------------------


class _Audit:
    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    def record(self, entry: AuditEntry) -> None:
        self.entries.append(entry)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab("ibl-cc-") as the_lab:
        yield the_lab


def _run(lab: Lab, cache_dirs_fact: str, cache: str) -> tuple[list[Finding], list[AuditEntry]]:
    """clear_cache on the lab host over its real sshd, driven by the runner (as an approved run is)."""
    [target] = resolve("lab", load_settings(str(lab.paths.config)))
    target = target.model_copy(update={"facts": {**target.facts, "cache_dirs": cache_dirs_fact}})
    audit = _Audit()
    runner = Runner(SshExecutor(audit, "test:clear_cache"), deadline=60)
    plan = HostPlan(target=target, runbooks=[ClearCache], params={"clear_cache": {"cache": cache}})
    report = asyncio.run(runner.run([plan]))
    return report.findings, audit.entries


def test_live_the_files_are_deleted_and_the_directory_and_what_links_pointed_to_are_kept(lab: Lab) -> None:
    """A directory under /var/cache with files, a hidden file, a subdirectory and a symbolic link to a
    file outside it: after the run the directory is there and empty, the link's target untouched."""
    base = Path(tempfile.mkdtemp(prefix="incident-bot-test-", dir="/var/cache"))
    try:
        cache = base / "thumbs"
        (cache / "sub" / "deeper").mkdir(parents=True)
        (cache / "a.bin").write_bytes(os.urandom(2 * 1024 * 1024))
        (cache / "sub" / "deeper" / "b.txt").write_text("b\n")
        (cache / ".hidden").write_text("h\n")
        outside = base / "keep.txt"
        outside.write_text("keep\n")
        (cache / "link").symlink_to(outside)
        found, audit = _run(lab, f"thumbs={cache},other=/var/cache/nothing-here", "thumbs")
        [finding] = found
        assert finding.kind == "action.cache_cleared", finding.summary
        assert finding.host == "lab" and finding.runbook == "clear_cache"
        assert finding.data["before_kib"] >= 2048 > finding.data["after_kib"], finding.data
        assert finding.summary.startswith(f"cleared cache thumbs ({cache}) on lab: 2 MiB → ")
        assert cache.is_dir() and list(cache.iterdir()) == []
        assert outside.read_text() == "keep\n"
        sent = [entry.argv[9:] for entry in audit]
        assert sent == [("stat", "-c", "%F", "--", str(cache)), ("du", "-sk", "--", str(cache)),
                        ("find", str(cache), "-xdev", "-mindepth", "1", "-delete"),
                        ("du", "-sk", "--", str(cache))]  # fmt: skip
        assert all(entry.exit_status == 0 for entry in audit)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_live_a_refused_request_sends_no_command(lab: Lab) -> None:
    """An unknown name and a cache root itself: a finding each, and the audit log shows nothing sent."""
    for fact, cache in (("thumbs=/var/cache/x", "pages"), ("thumbs=/var/cache", "thumbs")):
        found, audit = _run(lab, fact, cache)
        assert [f.kind for f in found] == ["action.refused"], [f.summary for f in found]
        assert audit == []
