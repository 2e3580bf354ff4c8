"""The trial store: append-only Parquet part files on a local folder or any ``pyarrow.fs`` URI.

Layout (documented for readers outside this package in ``trials/README.md``)::

    <store>/trials/part-<UTC timestamp>-<uuid>-s<key>.parquet   rows of one sweep, one file per write
    <store>/trials/sweep=<id, %-encoded>/part-....parquet       that sweep's rows after ``compact``
    <store>/epochs/...                                          the same, one row per trial per epoch
    <store>/spaces/<sweep_id>.yaml                              the search space a sweep ran with

``<key>`` is :func:`sweep_key` of the one sweep a write holds, so that reading one sweep opens only
its own files. A write holding several sweeps, and every file of a store written before keys existed,
has no key (``part-<timestamp>-<uuid>.parquet``): it is read for every sweep and filtered, until
``tune-schane compact`` (``tune_schane.store.compaction``) moves its rows into the partition folders.

Every write makes a new part file: it is written under a hidden temporary name (``.tmp-...``, which
this reader and pyarrow/pandas skip) and then moved into place, so a writer killed mid-write leaves
no partial file that readers see. Nothing is rewritten in place; a resumed sweep writes a trial's
row again and readers keep the last one written (by ``written_at``, then by read order: a sweep's
compacted files by name, then part files by name, which sorts by creation time). Failed, pruned,
diverged and OOM trials keep their rows.

A read opens each part file it needs once, decodes only the columns it needs and checks the file's
schema version (``tune_schane.schema_version`` in the Parquet key-value metadata), table kind and
column types from its footer (``store_layout.PartChecker``), naming the file in a
:class:`BadInput` when one is corrupt, foreign or of another version. Readers never modify the store.

Returned DataFrames have stable dtypes whatever the nulls: int64 columns come back as pandas
``Int64``, bool columns as ``boolean``, float64 columns as ``float64`` (null -> NaN), strings as
pandas' string dtype and ``written_at`` as ``datetime64[us, UTC]``.
"""

from __future__ import annotations

import itertools
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..errors import BadInput
from ..faults import fault_point
from ._layout import Files, PartChecker, list_files, partition_dir, sweep_key
from ._schema import (
    KEY_COLUMNS,
    SCHEMA_VERSION,
    TRIAL_STATUSES,
    check_name,
    schema_for,
    validate_epoch_row,
    validate_trial_row,
)

__all__ = ["SCHEMA_VERSION", "TRIAL_STATUSES", "TrialStore", "check_name", "open_existing", "partition_dir",
           "sweep_key"]

_PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
STATUS_COLUMNS = ("sweep_id", "trial_id", "status", "written_at")  # all that sweeps() reads
_ORDER = "_order"


def open_filesystem(uri: str, what: str) -> tuple[pafs.FileSystem, str]:
    """``(filesystem, root path without trailing slash)`` for a local path or a ``pyarrow.fs`` URI."""
    if "://" in uri:
        try:
            fs, root = pafs.FileSystem.from_uri(uri)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError, ValueError) as exc:
            raise BadInput(f"{what} {uri!r}: cannot open ({exc})") from None
    else:
        fs, root = pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri))
    return fs, root.rstrip("/") or "/"


def open_existing(uri: str | os.PathLike) -> TrialStore:
    """The store a read command (status, compact, analyze, export) reads: it must exist.

    A path that does not exist is bad input, as a typo in it would otherwise read as an empty store;
    an existing folder without trials is a real, empty store, which the command reports as such.
    """
    store = TrialStore(uri)
    kind = store.fs.get_file_info(store.root).type
    if kind == pafs.FileType.NotFound:
        raise BadInput(f"store {store.uri}: no such folder (check the path; a sweep or `train` creates it)")
    if kind == pafs.FileType.File:
        raise BadInput(f"store {store.uri}: is a file, not a folder")
    return store


class TrialStore:
    """A trial store at a local path or a ``pyarrow.fs`` URI (``file:///abs``, ``s3://bucket/prefix``)."""

    def __init__(self, uri: str | os.PathLike):
        self.uri = os.fspath(uri)
        if not self.uri:
            raise BadInput("store: empty path")
        self.fs, self.root = open_filesystem(self.uri, "store")
        self.unreadable: list[str] = []  # set by sweeps(): one line per file it had to leave out

    def __repr__(self) -> str:
        return f"TrialStore({self.uri!r})"

    # --- writing ---------------------------------------------------------------------------
    def write_trials(self, rows: list[dict[str, Any]]) -> str | None:
        """Append trial rows as one new part file; return its path (None when ``rows`` is empty).

        ``config`` may be a nested mapping (or TrialConfig) and is flattened to ``config_*``.
        Every row is validated before anything is written (ValueError naming the row and column).
        """
        now = datetime.now(timezone.utc)
        records = [validate_trial_row(row, now, f"trials row {i}") for i, row in enumerate(rows)]
        return self._write("trials", records, now)

    def write_epochs(self, rows: list[dict[str, Any]]) -> str | None:
        """Append per-epoch metric rows as one new part file; unknown metrics go to ``extra_metrics``."""
        now = datetime.now(timezone.utc)
        records = [validate_epoch_row(row, now, f"epochs row {i}") for i, row in enumerate(rows)]
        return self._write("epochs", records, now)

    def _write(self, table: str, records: list[dict[str, Any]], now: datetime) -> str | None:
        if not records:
            return None
        schema = schema_for(table)
        columns = [pa.array([r[f.name] for r in records], type=f.type) for f in schema]
        sweeps = {r["sweep_id"] for r in records}
        key = f"-s{sweep_key(next(iter(sweeps)))}" if len(sweeps) == 1 else ""
        name = f"part-{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex}{key}.parquet"
        return self.write_file(f"{self.root}/{table}", name, pa.Table.from_arrays(columns, schema=schema))

    def write_file(self, folder: str, name: str, data: pa.Table, fault: str = "store-write") -> str:
        """Write ``data`` as ``folder/name`` through a hidden temporary file and a rename."""
        self.fs.create_dir(folder, recursive=True)
        tmp, final = f"{folder}/.tmp-{name}", f"{folder}/{name}"
        try:
            pq.write_table(data, tmp, filesystem=self.fs)
            fault_point(fault)
            self.fs.move(tmp, final)
        except BaseException:
            try:
                self.fs.delete_file(tmp)
            except OSError:
                pass  # never written, or already moved: nothing to clean
            raise
        return final

    def write_space(self, sweep_id: str, text: str) -> str:
        """Keep a sweep's search-space YAML beside its rows (``<store>/spaces/<sweep_id>.yaml``), atomically."""
        folder = f"{self.root}/spaces"
        self.fs.create_dir(folder, recursive=True)
        final = f"{folder}/{check_name('sweep', sweep_id)}.yaml"
        tmp = f"{folder}/.tmp-{uuid.uuid4().hex}.yaml"
        with self.fs.open_output_stream(tmp) as out:
            out.write(text.encode())
        self.fs.move(tmp, final)
        return final

    def read_space(self, sweep_id: str) -> str | None:
        """The search-space YAML a sweep ran with, or None (single ``train`` runs have none)."""
        path = f"{self.root}/spaces/{check_name('sweep', sweep_id)}.yaml"
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with self.fs.open_input_stream(path) as src:
            return src.read().decode(errors="replace")

    # --- reading ---------------------------------------------------------------------------
    def exists(self) -> bool:
        """True when the folder exists and holds a ``trials/`` or ``epochs/`` folder."""
        info = self.fs.get_file_info([self.root, f"{self.root}/trials", f"{self.root}/epochs"])
        if info[0].type == pafs.FileType.File:
            raise BadInput(f"store {self.uri}: is a file, not a folder")
        return any(i.type == pafs.FileType.Directory for i in info[1:])

    def load_trials(self, sweep: str | None = None) -> pd.DataFrame:
        """One row per (sweep_id, trial_id), the last one written; sorted by sweep and trial."""
        return _dedup(_to_pandas(self.read_table("trials", sweep)), "trials")

    def load_epochs(self, sweep: str | None = None) -> pd.DataFrame:
        """One row per (sweep_id, trial_id, epoch), the last one written; sorted by the keys.

        Epochs above the ``epochs_run`` of a trial's current row are left out: they come from an
        attempt that a resumed sweep ran again and ended earlier (see trials/README.md).
        """
        epochs = _dedup(_to_pandas(self.read_table("epochs", sweep)), "epochs")
        columns = ["sweep_id", "trial_id", "written_at", "epochs_run"]
        trials = _dedup(_to_pandas(self.read_table("trials", sweep, columns)), "trials")
        if epochs.empty or trials.empty:
            return epochs
        limit = trials.set_index(["sweep_id", "trial_id"])["epochs_run"]
        keys = pd.MultiIndex.from_frame(epochs[["sweep_id", "trial_id"]])
        allowed = limit.reindex(keys).to_numpy(dtype="float64", na_value=float("inf"))
        keep = epochs["epoch"].to_numpy(dtype="float64") <= allowed
        return epochs[keep].reset_index(drop=True)

    def sweeps(self) -> pd.DataFrame:
        """One row per sweep: ``n_trials``, ``n_<status>`` for each status, first/last ``written_at``.

        Counts are over the latest row of each trial; ``first_written_at`` is the earliest write of
        any of the sweep's trial rows, including rows a resume has since superseded. A sweep with an
        unreadable file does not hide the others: its counts are left empty (NA) where its id is
        known, and :attr:`unreadable` names the file (``analyze`` of that sweep refuses, naming it).
        A broken file without a sweep key (see module doc) could hold any sweep: BadInput.
        """
        files = self.files("trials")
        self.unreadable = []
        good, broken = [], []
        for paths in [*files.compacted.values(), *files.keyed.values()]:  # one sweep per group
            try:
                good.append(self.scan("trials", paths, list(STATUS_COLUMNS)))
            except BadInput as exc:
                self.unreadable.append(str(exc))
                broken.append(paths)
        shared = self.scan("trials", files.shared, list(STATUS_COLUMNS))  # raises: could be any sweep
        tables = [*good, shared]
        raw = _to_pandas(pa.concat_tables(tables)) if tables else _to_pandas(_empty("trials", STATUS_COLUMNS))
        trials = _dedup(raw, "trials")
        columns = ["sweep_id", "n_trials", *(f"n_{s}" for s in TRIAL_STATUSES)]
        columns += ["first_written_at", "last_written_at"]
        if trials.empty:
            out = pd.DataFrame({c: pd.Series(dtype="int64") for c in columns})
            out["sweep_id"] = out["sweep_id"].astype(trials["sweep_id"].dtype)
            for c in ("first_written_at", "last_written_at"):
                out[c] = out[c].astype(trials["written_at"].dtype)
        else:
            counts = pd.crosstab(trials["sweep_id"], trials["status"]).reindex(columns=list(TRIAL_STATUSES))
            counts = counts.fillna(0).astype("int64").add_prefix("n_")
            counts.insert(0, "n_trials", counts.sum(axis=1))
            times = raw.groupby("sweep_id")["written_at"].agg(first_written_at="min", last_written_at="max")
            out = counts.join(times).rename_axis(None, axis=1).reset_index()[columns]
        names = {s for paths in broken for s in self._readable_sweep_ids(paths)} - set(out["sweep_id"])
        if names:
            out = out.astype({c: "Int64" for c in columns[1:-2]})
            extra = pd.DataFrame({"sweep_id": pd.Series(sorted(names), dtype=out["sweep_id"].dtype)})
            out = pd.concat([out, extra.reindex(columns=columns)], ignore_index=True).astype(out.dtypes.to_dict())
        return out.sort_values("sweep_id", ignore_index=True)

    def _readable_sweep_ids(self, paths: list[str]) -> set[str]:
        """Sweep ids that the readable files among ``paths`` (one sweep's group) name."""
        for path in paths:
            try:
                return set(self.scan("trials", [path], ["sweep_id"])["sweep_id"].to_pylist())
            except BadInput:
                continue
        return set()

    def read_table(self, table: str, sweep: str | None, columns: list[str] | None = None) -> pa.Table:
        """Every row (no dedup) that may belong to ``sweep``, in read order, with ``_order`` added.

        A file that vanishes under the read (a concurrent ``compact`` deleted it after writing its
        rows elsewhere) makes the read start again from the listing.
        """
        for attempt in range(3):
            try:
                paths = self.files(table, sweep).for_sweep(sweep)
                data = self.scan(table, paths, columns, sweep)
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
        return data.append_column(_ORDER, pa.array(range(len(data)), pa.int64()))

    def scan(
        self, table: str, paths: list[str], columns: list[str] | None = None, sweep: str | None = None
    ) -> pa.Table:
        """The rows of ``paths`` in that order (of ``sweep`` only, if given), projected to ``columns``.

        Each part file is opened once: its footer is checked (version, kind, column types; a bad file
        is refused by name) and only the wanted columns are decoded. Files are read by one thread per
        core (8 at most) on a local disk, 16 at a time on a remote filesystem (a request per file).
        ``columns=None`` reads every column, plus ``config_*`` columns of fields removed since.
        """
        schema = schema_for(table)
        checker = PartChecker(table, schema)
        read = None if columns is None else list(columns)
        if read is not None and sweep is not None and "sweep_id" not in read:
            read.append("sweep_id")  # for the filter; dropped after it

        def one(path: str) -> tuple[int, pa.Table]:
            return self._read_part(path, read, checker)

        local = isinstance(self.fs, pafs.LocalFileSystem)
        workers = min(len(paths), min(os.cpu_count() or 1, 8) if local else 16)
        if workers < 2:
            pieces = [one(p) for p in paths]
        else:
            with ThreadPoolExecutor(workers) as pool:  # decoding releases the GIL; a remote read waits on I/O
                pieces = list(pool.map(one, paths))
        fields = [f.with_nullable(True) for f in schema] + list(checker.extra.values())
        unified = pa.schema(fields, metadata=schema.metadata)
        target = pa.schema([unified.field(c) for c in read or unified.names], metadata=schema.metadata)
        runs: list[pa.Table] = []  # consecutive files with one footer schema are concatenated as is
        for _, group in itertools.groupby(pieces, key=lambda piece: piece[0]):
            runs.append(_conform(pa.concat_tables([t for _, t in group]), target))
        data = pa.concat_tables(runs).combine_chunks() if runs else target.empty_table()  # a chunk per file is slow
        if sweep is not None:
            data = data.filter(pc.equal(data["sweep_id"], sweep))
        return data if columns is None else data.select(columns)

    def _read_part(self, path: str, columns: list[str] | None, checker: PartChecker) -> tuple[int, pa.Table]:
        """One part file's ``columns`` (those it has) and the index of its footer schema."""
        try:
            with self.fs.open_input_file(path) as source:
                part = pq.ParquetFile(source)
                index = checker.check(path, part)
                names = checker.schemas[index].names
                present = names if columns is None else [c for c in columns if c in names]
                return index, part.read(columns=present, use_threads=False)
        except (FileNotFoundError, BadInput):
            raise
        except (pa.ArrowException, OSError) as exc:
            raise BadInput(f"{path}: not a readable Parquet file ({exc})") from None

    def files(self, table: str, sweep: str | None = None) -> Files:
        """A table's visible files, grouped as the layout says (see ``store_layout.list_files``)."""
        if self.fs.get_file_info(self.root).type == pafs.FileType.File:
            raise BadInput(f"store {self.uri}: is a file, not a folder")
        return list_files(self.fs, f"{self.root}/{table}", sweep)


def _empty(table: str, columns) -> pa.Table:
    schema = schema_for(table)
    return pa.schema([schema.field(c) for c in columns]).empty_table()


def _conform(data: pa.Table, target: pa.Schema) -> pa.Table:
    """``data`` with ``target``'s columns in its order: missing ones null, null-typed ones cast."""
    arrays = []
    for field in target:
        if field.name not in data.column_names:
            arrays.append(pa.nulls(data.num_rows, field.type))
            continue
        column = data[field.name]
        if column.type != field.type:
            try:
                column = column.cast(field.type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise BadInput(f"part files disagree on column {field.name!r}: {exc}") from None
        arrays.append(column)
    return pa.Table.from_arrays(arrays, schema=target)


def _to_pandas(data: pa.Table) -> pd.DataFrame:
    frame = data.to_pandas(types_mapper=_PANDAS_TYPES.get)
    if _ORDER not in frame.columns:
        frame[_ORDER] = range(len(frame))
    return frame


def _dedup(raw: pd.DataFrame, table: str) -> pd.DataFrame:
    """Keep the last written row per key: latest ``written_at``, ties broken by read order."""
    keys = list(KEY_COLUMNS[table])
    out = raw.sort_values(["written_at", _ORDER], kind="stable")
    out = out.drop_duplicates(keys, keep="last").sort_values(keys, kind="stable")
    return out.drop(columns=_ORDER).reset_index(drop=True)
