"""Ray addressing (tune_schane/ray_tune/_connect.py): a head that does not answer is bad input, fast.

The stale-cluster case is the one seen in practice: a head that died without `ray stop` stays
recorded in `<ray temp>/ray_current_cluster`. The file is written under a private RAY_TMPDIR, never
the machine's /tmp/ray. That a sweep without --address ignores such a file and starts its own Ray is
shown by the wheel test (tests/test_wheel.py), which runs its sweep with one in place.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.support.raykit import free_port
from tune_schane.cli.main import main
from tune_schane.errors import BadInput
from tune_schane.ray_tune._connect import probe, split_address


def test_split_address_forms():
    assert split_address("127.0.0.2:6379") == ("127.0.0.2", 6379)
    assert split_address("ray://head.example:10001") == ("head.example", 10001)
    assert split_address("[::1]:6379") == ("::1", 6379)
    for bad in ("head", "head:", "head:port", ":6379", "head:70000"):
        with pytest.raises(BadInput, match="HOST:PORT"):
            split_address(bad)


def _serve_once(reply: bytes | None) -> tuple[int, threading.Thread, socket.socket]:
    """A loopback server that accepts one connection and sends ``reply`` (None: says nothing)."""
    server = socket.socket()
    server.bind(("127.0.0.2", 0))
    server.listen(1)

    def run():
        conn, _ = server.accept()
        with conn:
            conn.recv(64)
            if reply is not None:
                conn.sendall(reply)
            time.sleep(0.7)  # open until the client has read (its timeout is 0.5 s)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return server.getsockname()[1], thread, server


def test_probe_tells_a_ray_head_from_a_dead_port_and_from_other_servers():
    assert probe("127.0.0.2", free_port()) == "connection refused"
    settings = bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # what a gRPC server (Ray's GCS) answers first
    for reply, expected in ((settings, None), (b"HTTP/1.1 400 Bad Request\r\n\r\n", "not a Ray head"),
                            (None, "no answer within")):
        port, thread, server = _serve_once(reply)
        with server:
            result = probe("127.0.0.2", port, timeout=0.5)
            thread.join(timeout=5)
        assert result == expected or (expected and expected in result), (reply, result)


@pytest.mark.parametrize("argv", [["--address", "auto"], ["--address", "{dead}"]], ids=["stale-auto", "dead"])
def test_sweep_refuses_a_head_that_does_not_answer(tmp_path, monkeypatch, capsys, argv):
    dead = f"127.0.0.2:{free_port()}"
    (tmp_path / "ray").mkdir()
    (tmp_path / "ray" / "ray_current_cluster").write_text(dead)  # a dead head, recorded as current
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    start = time.monotonic()
    code = main(["sweep", *(a.replace("{dead}", dead) for a in argv), "--store", str(tmp_path / "store"),
                 "--storage", str(tmp_path / "runs")])
    took = time.monotonic() - start
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1, err
    assert dead in err[0] and "connection refused" in err[0], err[0]
    if argv[1] == "auto":
        assert "recorded in" in err[0] and "ray_current_cluster" in err[0] and "does not answer" in err[0], err[0]
    else:
        assert "no Ray cluster answers" in err[0], err[0]
    assert took < 30
    assert not (tmp_path / "store").exists() and not (tmp_path / "runs").exists()
