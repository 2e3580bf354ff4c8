"""The trial store: append-only Parquet part files on a local folder or any ``pyarrow.fs`` URI.

Layout (documented for readers outside this package in ``trials/README.md``)::

    <store>/trials/part-<UTC timestamp>-<uuid>.parquet   one row per trial
    <store>/epochs/part-<UTC timestamp>-<uuid>.parquet   one row per trial per epoch
    <store>/spaces/<sweep_id>.yaml                      the search space a sweep ran with

Every write makes a new part file: it is written under a hidden temporary name (``.tmp-...``, which
this reader and pyarrow/pandas skip) and then moved into place, so a writer killed mid-write leaves
no partial file that readers see. Nothing is rewritten in place; a resumed sweep writes a trial's
row again and readers keep the last one written (by ``written_at``, then by part file name, which
sorts by creation time). Failed, pruned, diverged and OOM trials keep their rows.

Reading checks every part file's schema version (``tune_schane.schema_version`` in the Parquet
key-value metadata) and table kind, and names the file in a :class:`BadInput` when one is corrupt,
foreign or of another version. Readers never modify the store.

Returned DataFrames have stable dtypes whatever the nulls: int64 columns come back as pandas
``Int64``, bool columns as ``boolean``, float64 columns as ``float64`` (null -> NaN), strings as
pandas' string dtype and ``written_at`` as ``datetime64[us, UTC]``.
"""

from __future__ import annotations

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

from .errors import BadInput
from .faults import fault_point
from .store_schema import (
    KEY_COLUMNS,
    METADATA_TABLE_KEY,
    METADATA_VERSION_KEY,
    SCHEMA_VERSION,
    TRIAL_STATUSES,
    check_name,
    schema_for,
    validate_epoch_row,
    validate_trial_row,
)

__all__ = ["SCHEMA_VERSION", "TRIAL_STATUSES", "TrialStore", "check_name"]

_READ_THREADS = 8  # part files are read concurrently: latency dominates on object stores
_PANDAS_TYPES = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}


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


class TrialStore:
    """A trial store at a local path or a ``pyarrow.fs`` URI (``file:///abs``, ``s3://bucket/prefix``)."""

    def __init__(self, uri: str | os.PathLike):
        self.uri = os.fspath(uri)
        if not self.uri:
            raise BadInput("store: empty path")
        self.fs, self.root = open_filesystem(self.uri, "store")

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
        data = pa.Table.from_arrays(columns, schema=schema)
        folder = f"{self.root}/{table}"
        self.fs.create_dir(folder, recursive=True)
        name = f"part-{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex}.parquet"
        tmp, final = f"{folder}/.tmp-{name}", f"{folder}/{name}"
        try:
            pq.write_table(data, tmp, filesystem=self.fs)
            fault_point("store-write")
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
        return _dedup(self._load_raw("trials", sweep), "trials")

    def load_epochs(self, sweep: str | None = None) -> pd.DataFrame:
        """One row per (sweep_id, trial_id, epoch), the last one written; sorted by the keys.

        Epochs above the ``epochs_run`` of a trial's current row are left out: they come from an
        attempt that a resumed sweep ran again and ended earlier (see trials/README.md).
        """
        epochs = _dedup(self._load_raw("epochs", sweep), "epochs")
        trials = self.load_trials(sweep)
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
        any of the sweep's trial rows, including rows a resume has since superseded.
        """
        raw = self._load_raw("trials", None)
        trials = _dedup(raw, "trials")
        columns = ["sweep_id", "n_trials", *(f"n_{s}" for s in TRIAL_STATUSES)]
        columns += ["first_written_at", "last_written_at"]
        if trials.empty:
            out = pd.DataFrame({c: pd.Series(dtype="int64") for c in columns})
            out["sweep_id"] = out["sweep_id"].astype(trials["sweep_id"].dtype)
            for c in ("first_written_at", "last_written_at"):
                out[c] = out[c].astype(trials["written_at"].dtype)
            return out
        counts = pd.crosstab(trials["sweep_id"], trials["status"]).reindex(columns=list(TRIAL_STATUSES))
        counts = counts.fillna(0).astype("int64").add_prefix("n_")
        counts.insert(0, "n_trials", counts.sum(axis=1))
        times = raw.groupby("sweep_id")["written_at"].agg(first_written_at="min", last_written_at="max")
        out = counts.join(times).rename_axis(None, axis=1).reset_index()
        return out[columns].sort_values("sweep_id", ignore_index=True)

    def _load_raw(self, table: str, sweep: str | None) -> pd.DataFrame:
        """Every row of every part file (no dedup), plus ``_order``: the write order of rows."""
        schema = schema_for(table)
        paths = self._part_files(table)
        with ThreadPoolExecutor(max_workers=min(_READ_THREADS, max(1, len(paths)))) as pool:
            tables = list(pool.map(lambda p: _read_part(self.fs, p, table, schema, sweep), paths))
        data = pa.concat_tables(tables, promote_options="permissive") if tables else schema.empty_table()
        frame = data.to_pandas(types_mapper=_PANDAS_TYPES.get)
        frame["_order"] = range(len(frame))
        return frame

    def _part_files(self, table: str) -> list[str]:
        """Visible part files, sorted by name (= creation time); hidden and non-Parquet files skipped."""
        folder = f"{self.root}/{table}"
        root_info = self.fs.get_file_info(self.root)
        if root_info.type == pafs.FileType.File:
            raise BadInput(f"store {self.uri}: is a file, not a folder")
        if self.fs.get_file_info(folder).type != pafs.FileType.Directory:
            return []
        infos = self.fs.get_file_info(pafs.FileSelector(folder, recursive=False))
        return sorted(
            i.path for i in infos
            if i.type == pafs.FileType.File and i.base_name.endswith(".parquet")
            and not i.base_name.startswith((".", "_"))
        )  # fmt: skip


def _read_part(fs: pafs.FileSystem, path: str, table: str, schema: pa.Schema, sweep: str | None) -> pa.Table:
    """Read one part file, check its version and kind, conform it to ``schema``; BadInput names it."""
    try:
        with fs.open_input_file(path) as handle:
            data = pq.ParquetFile(handle).read()
    except (pa.ArrowException, OSError) as exc:
        raise BadInput(f"{path}: not a readable Parquet file ({exc})") from None
    meta = data.schema.metadata or {}
    if METADATA_VERSION_KEY not in meta:
        raise BadInput(f"{path}: not a tune-schane part file (no {METADATA_VERSION_KEY.decode()} metadata)")
    version = meta[METADATA_VERSION_KEY].decode(errors="replace")
    if version != str(SCHEMA_VERSION):
        raise BadInput(f"{path}: schema version {version}, this tune-schane reads version {SCHEMA_VERSION}")
    kind = meta.get(METADATA_TABLE_KEY, b"").decode(errors="replace")
    if kind != table:
        raise BadInput(f"{path}: holds a {kind or 'unknown'!r} table, expected {table!r}")
    data = _conform(data, schema, path)
    return data.filter(pc.equal(data["sweep_id"], sweep)) if sweep is not None else data


def _conform(data: pa.Table, schema: pa.Schema, path: str) -> pa.Table:
    """Cast to the current schema. ``config_*`` columns follow TrialConfig as it changes: a missing
    one (a field added since) reads as null, an unknown one (a field removed since) is kept at the end.
    Any other missing column means a damaged file."""
    columns, fields = [], []
    for field in schema:
        if field.name in data.column_names:
            column = data[field.name]
        elif field.name.startswith("config_"):
            column = pa.nulls(len(data), field.type)
        else:
            raise BadInput(f"{path}: column {field.name!r} is missing")
        try:
            columns.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise BadInput(f"{path}: column {field.name!r} has type {column.type}, expected {field.type}") from None
        fields.append(field.with_nullable(True))
    for name in data.column_names:
        if name.startswith("config_") and name not in schema.names:
            columns.append(data[name])
            fields.append(data.schema.field(name).with_nullable(True))
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _dedup(raw: pd.DataFrame, table: str) -> pd.DataFrame:
    """Keep the last written row per key: latest ``written_at``, ties broken by write order."""
    keys = list(KEY_COLUMNS[table])
    out = raw.sort_values(["written_at", "_order"], kind="stable")
    out = out.drop_duplicates(keys, keep="last").sort_values(keys, kind="stable")
    return out.drop(columns="_order").reset_index(drop=True)
