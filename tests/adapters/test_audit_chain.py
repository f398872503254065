"""The audit hash chain on a JSON-lines file: the documented encoding, linear appends under flock from
several writers, and ``incident-bot audit verify --jsonl`` finding an edit, a deletion, a reordering,
a torn line, and truncation against --expect-head, with its exit codes (0 intact, 1 broken, 2 usage)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from bot.adapters.audit import JsonlAuditor, read_jsonl_chain
from bot.core.audit_chain import GENESIS, canonical, entry_hash, verify
from bot.core.ports import AuditEntry

T0 = datetime(2026, 11, 30, 3, 25, tzinfo=UTC)


def entry(n: int, kind: str = "command") -> AuditEntry:
    return AuditEntry.model_validate({
        "at": T0 + timedelta(seconds=n), "trigger": "incident 1", "host": "web-1", "argv": ("tail", "-n", str(n)),
        "exit_status": 0, "duration": 0.25, "output_sha256": "a" * 64, "kind": kind,
    })  # fmt: skip


def log_of(path: Path, count: int) -> list[str]:
    auditor = JsonlAuditor(path)
    for n in range(count):
        auditor.record(entry(n))
    return path.read_text().splitlines(keepends=True)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", "audit", "verify", *args], check=False, capture_output=True, text=True, timeout=60
    )


def test_the_canonical_encoding_is_sorted_compact_json_with_utc_microseconds() -> None:
    at_plus_two = (T0 + timedelta(seconds=1)).astimezone(timezone(timedelta(hours=2)))
    shifted = entry(1).model_copy(update={"at": at_plus_two, "argv": ("grep", "é")})
    assert canonical(shifted, GENESIS).decode() == (
        '{"argv":["grep","é"],"at":"2026-11-30T03:25:01.000000Z","duration":0.25,"error":null,"exit_status":0,'
        f'"host":"web-1","kind":"command","output_sha256":"{"a" * 64}","prev":"{GENESIS}","trigger":"incident 1"}}'
    )
    in_utc = shifted.model_copy(update={"at": T0 + timedelta(seconds=1)})
    assert entry_hash(shifted, GENESIS) == entry_hash(in_utc, GENESIS)
    assert entry_hash(in_utc, GENESIS) != entry_hash(in_utc, "1" * 64)


def test_each_line_carries_the_hash_of_the_line_before_and_its_own(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = [json.loads(line) for line in log_of(path, 3)]
    assert [line["prev"] for line in lines] == [GENESIS, lines[0]["hash"], lines[1]["hash"]]
    assert [line["hash"] for line in lines] == [entry_hash(entry(n), lines[n]["prev"]) for n in range(3)]
    verdict = verify(read_jsonl_chain(path))
    assert (verdict.intact, verdict.chained, verdict.legacy, verdict.head) == (True, 3, 0, lines[2]["hash"])


def test_approvals_and_role_decisions_are_chained_with_their_kind(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    auditor = JsonlAuditor(path)
    auditor.record(entry(0, "approval"))
    auditor.record(entry(1, "role"))
    assert [i.entry.kind for i in read_jsonl_chain(path) if i.entry] == ["approval", "role"]
    path.write_text(path.read_text().replace('"kind": "role"', '"kind": "command"'))
    assert verify(read_jsonl_chain(path)).where == "2"


def test_an_edited_line_is_reported_as_a_hash_mismatch_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = log_of(path, 4)
    lines[1] = lines[1].replace('"exit_status": 0', '"exit_status": 1')
    path.write_text("".join(lines))
    verdict = verify(read_jsonl_chain(path))
    assert (verdict.intact, verdict.where, verdict.chained) == (False, "2", 1)
    assert verdict.problem is not None and verdict.problem.startswith("hash mismatch")


def test_a_deleted_line_is_reported_as_a_prev_mismatch_on_the_line_after(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = log_of(path, 4)
    path.write_text("".join(lines[:1] + lines[2:]))
    verdict = verify(read_jsonl_chain(path))
    assert (verdict.intact, verdict.where) == (False, "2")
    assert verdict.problem is not None and verdict.problem.startswith("prev mismatch")


def test_swapped_lines_are_reported_where_the_order_breaks(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = log_of(path, 4)
    path.write_text("".join([lines[0], lines[2], lines[1], lines[3]]))
    verdict = verify(read_jsonl_chain(path))
    assert (verdict.intact, verdict.where) == (False, "2")
    assert verdict.problem is not None and verdict.problem.startswith("prev mismatch")


def test_truncation_passes_alone_and_is_caught_by_the_recorded_head(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = log_of(path, 3)
    head = verify(read_jsonl_chain(path)).head
    path.write_text("".join(lines[:2]))
    alone = verify(read_jsonl_chain(path))
    assert (alone.intact, alone.chained) == (True, 2)
    anchored = verify(read_jsonl_chain(path), head)
    assert not anchored.intact and anchored.problem is not None and "truncated" in anchored.problem


def test_a_recorded_head_still_matches_after_more_entries_are_appended(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    log_of(path, 2)
    head = verify(read_jsonl_chain(path)).head
    JsonlAuditor(path).record(entry(5))
    verdict = verify(read_jsonl_chain(path), head)
    assert (verdict.intact, verdict.since_expected, verdict.chained) == (True, 1, 3)


def test_legacy_lines_before_the_chain_are_skipped_but_not_after_it(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    legacy = json.dumps(entry(0).model_dump(mode="json", exclude={"kind"})) + "\n"
    path.write_text(legacy * 2)
    JsonlAuditor(path).record(entry(1))
    verdict = verify(read_jsonl_chain(path))
    assert (verdict.intact, verdict.legacy, verdict.chained) == (True, 2, 1)
    with path.open("a") as handle:
        handle.write(legacy)
    late = verify(read_jsonl_chain(path))
    assert (late.intact, late.where) == (False, "4")


def test_a_torn_last_line_is_kept_apart_from_the_next_entry_and_reported(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = log_of(path, 2)
    path.write_text("".join(lines) + lines[0][:40])
    assert verify(read_jsonl_chain(path)).problem == "incomplete line (a write was cut short)"
    JsonlAuditor(path).record(entry(9))
    text = path.read_text().splitlines()
    assert len(text) == 4 and json.loads(text[3])["argv"] == ["tail", "-n", "9"]
    verdict = verify(read_jsonl_chain(path))
    assert (verdict.intact, verdict.where, verdict.problem) == (False, "3", "not a JSON audit entry")


def test_writers_appending_at_once_leave_one_linear_chain(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"

    def append(worker: int) -> None:
        auditor = JsonlAuditor(path)  # one auditor (and file descriptor) per writer, as separate processes
        for n in range(25):
            auditor.record(entry(worker * 100 + n))

    threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    verdict = verify(read_jsonl_chain(path))
    assert (verdict.intact, verdict.chained) == (True, 100)


def test_cli_verify_exits_0_intact_1_broken_or_truncated_2_on_bad_usage(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    lines = log_of(path, 3)
    intact = cli("--jsonl", str(path))
    head = verify(read_jsonl_chain(path)).head
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout == f"audit log intact: 3 chained entries, head {head}\n"

    path.write_text("".join(lines[:2]))
    truncated = cli("--jsonl", str(path), "--expect-head", head.upper())
    assert truncated.returncode == 1 and truncated.stdout.count("\n") == 1 and "truncated" in truncated.stdout

    path.write_text("".join([lines[0], lines[1].replace("web-1", "web-2"), lines[2]]))
    broken = cli("--jsonl", str(path))
    assert broken.returncode == 1
    assert broken.stdout.startswith("audit log broken at line 2: hash mismatch") and broken.stdout.count("\n") == 1

    for bad in (["--jsonl", str(path), "--expect-head", "abc"], ["--jsonl", str(path), "--config", "x.yaml"],
                ["--jsonl", str(tmp_path / "missing.jsonl")]):  # fmt: skip
        usage = cli(*bad)
        assert usage.returncode == 2, usage
        assert usage.stderr.startswith("incident-bot: error: ") and usage.stderr.count("\n") == 1
