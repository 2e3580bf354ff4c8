"""Helpers for tests that start Ray processes themselves: start, find and end them by PID.

Processes are found by something only this test put on their command line (a loopback address or
a temporary folder), then ended by PID, never by process name, so a developer's own Ray is safe.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_port(host: str = "127.0.0.2") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def pids_with(marker: str) -> list[int]:
    """PIDs of this user's processes whose command line contains ``marker``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline and entry.stat().st_uid == os.getuid():
            out.append(int(entry.name))
    return out


def kill_pids(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def kill_marked(marker: str, timeout: float = 10.0) -> None:
    """SIGKILL everything carrying ``marker`` until nothing is left (Ray respawns nothing once the raylet is gone)."""
    deadline = time.monotonic() + timeout
    while (pids := pids_with(marker)) and time.monotonic() < deadline:
        kill_pids(pids)
        time.sleep(0.3)


def ray_env() -> dict[str, str]:
    env = dict(os.environ)
    env["RAY_AUTH_MODE"] = "token"  # Ray 2.60 token authentication for joining nodes and drivers
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def ray_start(*args: str, temp_dir: Path | None = None) -> None:
    cmd = [str(VENV_BIN / "ray"), "start", *args, "--disable-usage-stats"]
    if temp_dir is not None:
        cmd.append(f"--temp-dir={temp_dir}")
    subprocess.run(cmd, env=ray_env(), check=True, capture_output=True, text=True, timeout=120)
