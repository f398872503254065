"""Helper processes that hold connections open for a scenario, until they are killed.

``python -m bot.lab.holder postgres CONNINFO READY_FILE``
    opens PostgreSQL connections until the server refuses one (``sorry, too many clients already``)
    and holds them: db_connections_exhausted.
``python -m bot.lab.holder socket PATH READY_FILE``
    connects to a unix stream socket without sending anything until the kernel refuses (EAGAIN: the
    listen backlog is full) and holds the connections: worker_saturation, with the workers stopped.

Each writes ``READY_FILE`` with the number of connections held and the refusal it met, then waits for
a signal. The lab knows the helper by pid and kills its process group at repair and down.
"""

from __future__ import annotations

import errno
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

MAX_HELD = 200


def hold_postgres(conninfo: str, ready: Path) -> None:
    held: list[Any] = []
    refusal = "none"
    while len(held) < MAX_HELD:
        try:
            held.append(psycopg.connect(conninfo))
        except psycopg.OperationalError as exc:
            refusal = " ".join(str(exc).split())
            break
    _ready(ready, len(held), refusal)


def hold_socket(path: str, ready: Path) -> None:
    held: list[socket.socket] = []
    refusal = "none"
    while len(held) < MAX_HELD:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(path)
        except BlockingIOError as exc:
            sock.close()
            refusal = f"[Errno {exc.errno}] {errno.errorcode.get(exc.errno or 0, '')}"
            break
        held.append(sock)
    _ready(ready, len(held), refusal)


def _ready(ready: Path, count: int, refusal: str) -> None:
    tmp = ready.with_suffix(".tmp")
    tmp.write_text(f"held={count} refusal={refusal}\n")
    tmp.replace(ready)
    print(f"holding {count} connections; the next one was refused: {refusal}", flush=True)
    while True:
        signal.pause() if hasattr(signal, "pause") else time.sleep(3600)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("postgres", "socket"):
        print(__doc__, file=sys.stderr)
        return 2
    kind, target, ready = argv
    if kind == "postgres":
        hold_postgres(target, Path(ready))
    else:
        hold_socket(target, Path(ready))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
