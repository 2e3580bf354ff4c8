"""Fault injection for the reliability drills (tests and by hand); inert unless its variable is set.

``TUNE_SCHANE_KILL_AT=<point>[:<n>]`` SIGKILLs the current process the ``n``-th time (default 1)
execution reaches ``fault_point(<point>)``. Points: ``sample`` (the sweep driver hands out a new
config), ``result`` (the driver receives an epoch result, i.e. trials are mid-run), ``store-write``
(a part file is written under its temporary name but not yet moved into place). A SIGKILL cannot
be caught, so this is the harshest way a driver can die; the drills then check ``--resume``.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

KILL_ENV = "TUNE_SCHANE_KILL_AT"
_hits: Counter[str] = Counter()


def fault_point(name: str) -> None:
    spec = os.environ.get(KILL_ENV)
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] >= int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
