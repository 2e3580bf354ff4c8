"""Where a sweep's Optuna studies live: ``--optuna-storage URL`` (or ``optuna_storage:`` in a space file).

Without a storage each grid cell's study lives in the driver's memory (and in Ray's searcher
checkpoint). With one, every cell's study is written there as the sweep runs, under the name
``<sweep>/<cell key>`` (``ablation-1/loss=ce,batch_size=16``; ``<sweep>/all`` without a grid), so
``optuna-dashboard``, ``optuna.load_study`` and ``optuna.get_all_study_names`` open it, and a
``--resume`` continues the same studies. The URL forms:

- ``sqlite:///path/studies.db`` (or any SQLAlchemy URL: ``postgresql://...``, ``mysql://...``, whose
  driver is installed): Optuna's ``RDBStorage``;
- a file path (no ``://``), e.g. ``runs/studies.log``: an Optuna journal file
  (``JournalStorage(JournalFileBackend(path))``), created if missing. Journal files suit network
  file systems and many writers better than SQLite; ``optuna-dashboard`` opens either.

Everything here runs before Ray starts, and every problem is one :class:`BadInput` line. No Ray in
this module: the searchers in :mod:`tune_schane.ray_tune._searchers` open storages through it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import BadInput

SQLITE_MAGIC = b"SQLite format 3\x00"


def cell_key(cell: dict[str, Any]) -> str:
    """``loss=ce,batch_size=16`` (grid axes in file order); ``all`` for a space without a grid."""
    return ",".join(f"{name}={value}" for name, value in cell.items()) or "all"


def study_name(sweep_id: str, cell: dict[str, Any]) -> str:
    return f"{sweep_id}/{cell_key(cell)}"


def open_storage(url: str) -> Any:
    """The Optuna storage behind ``url`` (see the module docstring); BadInput naming it if unusable."""
    import optuna

    where = f"optuna storage {url!r}"
    if not isinstance(url, str) or not url.strip():
        raise BadInput(f"{where}: expected sqlite:///file.db, another SQLAlchemy URL or a journal file path")
    if "://" not in url:
        path = Path(url).expanduser()
        if path.is_dir():
            raise BadInput(f"{where}: is a folder; give a journal file path (e.g. {path}/studies.log)")
        if path.is_file():
            with open(path, "rb") as fh:
                if fh.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC:
                    raise BadInput(f"{where}: is an SQLite database; open it as sqlite:///{path.resolve()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            backend = optuna.storages.journal.JournalFileBackend(str(path.resolve()))
        except OSError as exc:
            raise BadInput(f"{where}: cannot open the journal file ({exc.strerror or exc})") from None
        return optuna.storages.JournalStorage(backend)
    try:
        file = local_file(url)
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.RDBStorage(url)
    except ImportError as exc:
        raise BadInput(f"{where}: its database driver is not installed ({exc})") from None
    except Exception as exc:  # sqlalchemy's ArgumentError (not a URL), OperationalError (cannot open), ...
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BadInput(f"{where}: cannot open ({first})") from None


def local_file(url: str) -> Path | None:
    """The file behind a journal path or an ``sqlite:///`` URL (None for a database server)."""
    if "://" not in url:
        return Path(url).expanduser()
    if url.startswith("sqlite:"):
        from sqlalchemy.engine import make_url

        try:
            database = make_url(url).database
        except Exception:
            return None  # open_storage names the problem
        return Path(database).expanduser() if database and database != ":memory:" else None
    return None


def absolute(url: str) -> str:
    """``url`` with a relative journal path or SQLite file made absolute (a resumed driver may start elsewhere)."""
    file = local_file(url)
    if file is None or file.is_absolute():
        return url
    if "://" not in url:
        return str(file.resolve())
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=str(file.resolve())).render_as_string(hide_password=False)


def sweep_study_names(storage: Any, sweep_id: str) -> list[str]:
    """Names of the studies in ``storage`` that belong to ``sweep_id``."""
    return sorted(s.study_name for s in storage.get_all_studies() if s.study_name.startswith(f"{sweep_id}/"))


def check_storage(url: str, sweep_id: str, *, resume: bool) -> None:
    """Before Ray starts: the storage opens; a new sweep's studies are not there yet, a resumed one's are.

    A new sweep writing into an old sweep's studies would mix two sweeps' trials in one TPE history;
    a resumed sweep whose studies are elsewhere (it started with another storage, or none: Ray
    restores the storage its searcher started with) would leave this one empty without a word.
    """
    file = local_file(url)
    if file is not None and not file.exists():  # nothing stored yet: check the folder, create nothing
        if resume:
            raise BadInput(f"optuna storage {url!r}: {file} does not exist, so it holds no study of sweep "
                           f"{sweep_id!r} (a resumed sweep keeps the storage it started with)")
        folder = next((p for p in file.resolve().parents if p.exists()), None)
        if folder is None or not folder.is_dir() or not os.access(folder, os.W_OK):
            raise BadInput(f"optuna storage {url!r}: cannot create {file} (folder {folder} is not writable)")
        return
    existing = sweep_study_names(open_storage(url), sweep_id)
    if existing and not resume:
        raise BadInput(f"optuna storage {url!r} already holds study {existing[0]!r}; pick another --name, or "
                       "--resume that sweep")
    if resume and not existing:
        raise BadInput(f"optuna storage {url!r} holds no study of sweep {sweep_id!r}: a resumed sweep keeps the "
                       "storage it started with (leave --optuna-storage out, or give that one)")
