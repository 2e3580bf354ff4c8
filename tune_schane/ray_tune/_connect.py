"""How a sweep reaches Ray: its own local Ray, or a cluster that answers, with this project's code shipped.

Addressing follows Ray's own words, made strict:

- no ``--address``: ``ray.init(address="local")``, a private Ray for this sweep. It never joins
  another one, not the cluster ``ray start`` recorded in ``<ray temp>/ray_current_cluster`` (a
  head that died without ``ray stop`` leaves that file behind, and plain ``ray.init()`` then waits
  on the dead address forever), nor the one in ``RAY_ADDRESS``;
- ``--address auto``: the cluster Ray itself would pick (``RAY_ADDRESS``, else the recorded one,
  else a head process running on this machine);
- ``--address HOST:PORT`` (or ``ray://HOST:PORT``): that head.

Before joining, the head is asked to answer: a TCP connection and an HTTP/2 handshake (Ray's GCS
is a gRPC server and answers the client preface with a SETTINGS frame), within
:data:`PROBE_TIMEOUT_S`. An address that does not answer is bad input, in one line, instead of
Ray's endless "Failed to connect to GCS" retries. With ``RAY_USE_TLS`` set only TCP is checked.

Joining a cluster ships the code (:func:`shipped_code`): ``tune_schane`` (its ``analysis`` included) is
copied into a staging folder that becomes the job's ``runtime_env`` ``working_dir``, which Ray
uploads once and unpacks on every node (under its ``runtime_resources`` folder), first on the
workers' ``PYTHONPATH``. A node then needs only the dependencies. ``working_dir``, not
``py_modules``: with ``py_modules`` Ray also puts the driver's current folder first on the workers'
``sys.path``, so on a node that shares the driver's filesystem (NFS, or the loopback test cluster)
a driver started in a clone would import the clone instead of the shipped copy.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import BadInput
from ._private_apis import ray_recorded_address, ray_resolve_auto

PROBE_TIMEOUT_S = 10.0  # per step (connect, handshake): a dead address is refused within ~20 s at worst
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + empty SETTINGS
SHIPPED_PACKAGES = ("tune_schane",)  # tune_schane.analysis inside it (copied through its link)


def split_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``HOST:PORT``, ``ray://HOST:PORT`` or ``[v6]:PORT``; BadInput otherwise."""
    text = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput(f"--address {address}: expected HOST:PORT of a Ray head (or `auto`)")
    return host, int(port)


def probe(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """None when a gRPC (HTTP/2) server answers at ``host:port``, else why not, in a few words."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return None  # a TLS head would need the handshake first: the open port has to do
            sock.settimeout(timeout)
            sock.sendall(HTTP2_PREFACE)
            head = b""
            deadline = time.monotonic() + timeout
            while len(head) < 9 and time.monotonic() < deadline:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        return f"no answer within {timeout:.0f} s"
    except ConnectionRefusedError:
        return "connection refused"
    except OSError as exc:
        return exc.strerror or str(exc)
    if len(head) < 9 or head[3] != 0x04:
        return "something answers there, but not a Ray head (no gRPC handshake)"
    return None


def _auto_target() -> tuple[str, str]:
    """``(host:port, where it came from)`` for ``--address auto``, found as Ray finds it."""
    recorded, address_file = ray_recorded_address()
    if os.environ.get("RAY_ADDRESS"):
        where = "from RAY_ADDRESS"
    elif recorded:
        where = f"recorded in {address_file}"
    else:
        where = "a head running on this machine"
    try:
        target = ray_resolve_auto()
    except (ConnectionError, ValueError):
        raise BadInput("--address auto: no running Ray cluster found on this machine "
                       "(start one with `ray start --head`, or give HOST:PORT)") from None
    if target is None:
        raise BadInput("--address auto: no running Ray cluster found on this machine")
    return target, where


def checked_address(address: str) -> str:
    """``address`` as ``ray.init`` takes it, once its head answered; BadInput (one line) when not."""
    if address == "local":
        return address
    if address == "auto":
        target, where = _auto_target()
        reason = probe(*split_address(target))
        if reason:
            raise BadInput(f"--address auto: the Ray cluster {where} ({target}) does not answer ({reason}); "
                           "`ray stop` clears a dead cluster's record, or give --address HOST:PORT")
        return address  # Ray resolves `auto` itself (and then enables token auth as for a local cluster)
    reason = probe(*split_address(address))
    if reason:
        raise BadInput(f"--address {address}: no Ray cluster answers there ({reason})")
    return address


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@contextlib.contextmanager
def shipped_code(enabled: bool = True) -> Iterator[dict | None]:
    """The ``runtime_env`` that ships this project's packages (None when ``enabled`` is False).

    The staging folder only has to outlive ``ray.init``, which uploads it to the cluster.
    """
    if not enabled:
        yield None
        return
    staging = Path(tempfile.mkdtemp(prefix="tune-schane-code-"))
    try:
        for name in SHIPPED_PACKAGES:
            source = _package_dir(name)
            if source is not None:
                shutil.copytree(source, staging / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        yield {"working_dir": str(staging)}
    finally:
        shutil.rmtree(staging, ignore_errors=True)
