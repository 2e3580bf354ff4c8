"""Where a result came from: package versions, the project's git commit, the machine, ids."""

from __future__ import annotations

import functools
import json
import platform
import re
import subprocess
import uuid
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

PACKAGES = ("tune-schane", "torch", "torchvision", "timm", "ray", "optuna", "pyarrow")


@functools.lru_cache(maxsize=1)
def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    return out


def versions_json() -> str:
    return json.dumps(versions(), sort_keys=True)


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The project's commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    root = Path(__file__).resolve().parents[2]  # the clone (tune_schane/store/provenance.py)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def new_id(prefix: str) -> str:
    """``<prefix>-YYYYmmdd-HHMMSS-<6 hex>``: sortable, unique, safe as a file name."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{safe_prefix(prefix)}-{stamp}-{uuid.uuid4().hex[:6]}"


def safe_prefix(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "run"
