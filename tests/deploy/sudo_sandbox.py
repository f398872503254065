"""Run the real ``sudo`` against a sudoers file without installing it: a private mount namespace.

:func:`run_in_sandbox` starts ``unshare --mount`` (mounts stay private to that process tree) and, in
it, this module as a script: it bind-mounts copies of /etc/passwd, /etc/group and /etc/shadow that add
the bot's account, and the given sudoers file over /etc/sudoers, puts an empty tmpfs over /var/log (and
over any other directory asked for, such as /var/cache), writes the files and symbolic links the spec
asks for (and, when asked, stand-in programs on an empty tmpfs over /usr/local/bin, for programs this
machine lacks), then runs each check and prints the results as JSON.
Nothing outside the namespace sees any of it. Checks are either ``list`` (``sudo -l -U USER [-u
ACCOUNT] -- ARGV``: is the command allowed, without running it) or ``run`` (ARGV run as the bot's user,
for real: a whole command line as the SSH adapter sends it, ``env … timeout … sudo -n …``).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

USER = "incident-bot"
#: What every sandbox sudoers starts with: what Debian's has, minus its includes; root may run anything.
BASE = (
    "Defaults env_reset\n"
    'Defaults secure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n'
    "root ALL=(ALL:ALL) ALL\n"
)


def missing_tools() -> list[str]:
    """The programs the sandbox needs that this machine lacks (Debian packages in parentheses)."""
    needed = {"sudo": "sudo", "visudo": "sudo", "unshare": "util-linux", "setpriv": "util-linux", "mount": "mount"}
    return [f"{tool} ({package})" for tool, package in needed.items() if shutil.which(tool) is None]


def run_in_sandbox(
    sudoers: str,
    checks: list[dict[str, Any]],
    files: dict[str, str] | None = None,
    programs: dict[str, str] | None = None,
    *,
    tmpfs: tuple[str, ...] = (),
    links: dict[str, str] | None = None,
) -> list[Any]:
    """Results of ``checks`` under ``sudoers`` (BASE + the text given), one per check, in order.

    ``tmpfs``: more directories to hide under an empty tmpfs (besides /var/log), before anything is
    written; ``files`` are written 0600 root (their directories 0755); ``links`` (path → target) are
    symbolic links; ``programs`` (names → script text) become executables in /usr/local/bin of the
    namespace (an empty tmpfs there)."""
    if os.geteuid() != 0:
        raise AssertionError("the sudoers tests need root (a mount namespace and sudo -l -U)")
    absent = missing_tools()
    if absent:
        raise AssertionError(f"missing: {', '.join(absent)}; install with apt-get install sudo util-linux mount")
    with tempfile.TemporaryDirectory(prefix="ib-sudo-") as tmp:
        spec = Path(tmp) / "spec.json"
        spec.write_text(
            json.dumps(
                {
                    "sudoers": BASE + sudoers,
                    "checks": checks,
                    "files": files or {},
                    "programs": programs or {},
                    "tmpfs": list(tmpfs),
                    "links": links or {},
                }
            )
        )
        done = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "--", sys.executable, __file__, str(spec)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"sandbox failed ({done.returncode}): {done.stderr.strip()}")
        results: list[Any] = json.loads(done.stdout)
        return results


def _free_id() -> int:
    taken = {entry.pw_uid for entry in pwd.getpwall()}
    return next(n for n in range(64990, 60000, -1) if n not in taken)


def _bind(text: str, target: str, work: Path, mode: int) -> None:
    copy = work / Path(target).name
    copy.write_text(text)
    copy.chmod(mode)
    subprocess.run(["mount", "--bind", str(copy), target], check=True)


def _account(work: Path) -> tuple[int, int]:
    """The bot's account in the namespace's passwd/group/shadow (an existing one is reused)."""
    try:
        entry = pwd.getpwnam(USER)
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        pass
    uid = _free_id()
    _bind(Path("/etc/passwd").read_text() + f"{USER}:x:{uid}:{uid}::/nonexistent:/bin/sh\n", "/etc/passwd", work, 0o644)
    _bind(Path("/etc/group").read_text() + f"{USER}:x:{uid}:\n", "/etc/group", work, 0o644)
    _bind(Path("/etc/shadow").read_text() + f"{USER}:*:19000:0:99999:7:::\n", "/etc/shadow", work, 0o640)
    return uid, uid


def _sandbox(spec: dict[str, Any]) -> list[Any]:
    work = Path(tempfile.mkdtemp(prefix="ib-sudo-ns-"))
    uid, gid = _account(work)
    sudoers = work / "sudoers"
    sudoers.write_text(spec["sudoers"])
    sudoers.chmod(0o440)
    check = subprocess.run(["visudo", "-c", "-f", str(sudoers)], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        return [{"visudo": (check.stdout + check.stderr).strip()}]
    subprocess.run(["mount", "--bind", str(sudoers), "/etc/sudoers"], check=True)
    for directory in ["/var/log", *spec["tmpfs"]]:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", directory], check=True)
    for path, text in spec["files"].items():
        target = Path(path)
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o600)
    for path, pointed in spec["links"].items():
        Path(path).parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        Path(path).symlink_to(pointed)
    if spec["programs"]:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/usr/local/bin"], check=True)
        for name, text in spec["programs"].items():
            program = Path("/usr/local/bin") / name
            program.write_text(text)
            program.chmod(0o755)
    results: list[Any] = []
    for item in spec["checks"]:
        argv = item["argv"]
        if item["kind"] == "list":
            account = ["-u", item["account"]] if item.get("account") else []
            done = subprocess.run(
                ["sudo", "-l", "-U", USER, *account, "--", *argv], capture_output=True, text=True, check=False
            )
        else:
            as_bot = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
            done = subprocess.run([*as_bot, *argv], capture_output=True, text=True, check=False, cwd="/", timeout=60)
        results.append({"rc": done.returncode, "stdout": done.stdout, "stderr": done.stderr})
    return results


if __name__ == "__main__":
    print(json.dumps(_sandbox(json.loads(Path(sys.argv[1]).read_text()))))
