"""sockets: ss -s, TCP and unix listeners; a full accept queue (the lab's worker_saturation) is a warning."""

from __future__ import annotations

from bot.evidence.readers.listeners import SsListeners
from bot.testing import drive, read
from runbooks.sockets import Sockets

from ._fixtures import LAB, fx, result


def test_healthy_host_reports_sockets_and_listeners() -> None:
    findings = drive(Sockets, None, {
        ("ss", "-s"): fx("sockets", "ss-s-healthy.txt"),
        ("ss", "-ltnp"): fx("sockets", "ss-ltnp-healthy.txt"),
        ("ss", "-lxnp"): "",
    })
    kinds = {f.kind: f for f in findings}
    assert kinds["host.sockets"].data["timewait"] == 4
    listeners = kinds["sockets.listening"].data["listeners"]
    assert any(e["address"] == "127.0.0.1:36825" and e["program"] == "nginx" for e in listeners)
    assert "sockets.listen_queue_full" not in kinds


def test_the_saturated_gunicorn_socket_has_a_full_accept_queue() -> None:
    findings = drive(Sockets, None, {
        ("ss", "-s"): fx("sockets", "ss-s-healthy.txt"),
        ("ss", "-ltnp"): fx("sockets", "ss-ltnp-healthy.txt"),
        ("ss", "-lxnp"): fx("sockets", "ss-lxnp-worker-saturation.txt"),
    })
    full = [f for f in findings if f.kind == "sockets.listen_queue_full"]
    assert len(full) == 1
    assert full[0].data["address"] == f"{LAB}/run/gunicorn.sock"
    assert (full[0].data["recv_q"], full[0].data["backlog"], full[0].data["program"]) == (5, 4, "gunicorn")


def test_a_missing_ss_is_a_finding_not_an_exception() -> None:
    missing = result(stderr="timeout: failed to run command 'ss': No such file or directory", exit_status=127)
    findings = drive(Sockets, None, {("ss", "-s"): missing, ("ss", "-ltnp"): missing, ("ss", "-lxnp"): missing})
    assert [f.kind for f in findings] == ["runbook.command_failed"] * 3


def test_a_listener_below_its_backlog_is_not_full() -> None:
    assert "sockets.listen_queue_full" not in {f.kind for f in read(fx("sockets", "ss-ltnp-healthy.txt"),
                                                                   [SsListeners])}
