"""The versioned schema of the trial store, and the checks every row passes before it is written.

Two tables (DESIGN.md section 4), both flat and typed so that pandas, polars and DuckDB read them
without this package (``trials/README.md`` documents them for those readers):

- ``trials``: one row per trial; every :class:`~tune_schane.finetune.config.TrialConfig` field is its own
  ``config_<field>`` column, typed from :func:`~tune_schane.finetune.config.field_types`.
- ``epochs``: one row per trial per epoch, one float64 column per known metric.

Decisions:

- Unknown metric keys in an epoch row are kept, not dropped and not turned into new columns: they go
  into the one ``extra_metrics`` column as a JSON object of floats. Extra float columns would make
  the part files' schemas differ, which plain readers handle badly (polars refuses to concatenate
  them, ``pd.read_parquet(folder)`` silently keeps only the first file's columns). Values that are
  not numbers are dropped from it; non-finite numbers are written as JSON ``null``.
- Unknown keys in a trial row (or an unknown field in its nested ``config``) are an error: the rows
  come from this package, and a typo there would silently lose a column.
- ``written_at`` defaults to the time of the write call; a given one must be timezone-aware.
- ``versions`` and ``params`` may be given as mappings; they are stored as JSON text (sorted keys).
- Integer values must be integers (``5.0`` is refused for an int64 column, as ``True`` is for a
  number): a silently converted value in a batch-size study is worse than a loud error.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ..errors import BadInput
from ..finetune.config import field_types
from ..finetune.outcomes import EPOCH_METRICS, OBJECTIVE_MODES, STAGES, TEST_METRICS, TRIAL_STATUSES

SCHEMA_VERSION = 1
METADATA_VERSION_KEY = b"tune_schane.schema_version"
METADATA_TABLE_KEY = b"tune_schane.table"
TABLES = ("trials", "epochs")

TIMESTAMP = pa.timestamp("us", tz="UTC")
_ARROW_TYPES = {str: pa.string(), int: pa.int64(), float: pa.float64(), bool: pa.bool_()}

# Columns added to a table after files of schema version 1 were written, without a version change: an older part
# file lacks them and reads as null there (as it does a config_* column of a TrialConfig field added since).
ADDED_COLUMNS = {
    "trials": ("stage", "confirm_job", "val_from", "val_images", "test_top1", "test_top5", "test_loss",
               "test_e2e_top1", "test_epoch", "test_images", "test_epoch_pick"),
    "epochs": ("e2e_top1", "e2e_top5", "e2e_loss", "eval_seconds"),
}
JSON_COLUMNS = ("versions", "params", "extra_metrics")  # text columns that hold a JSON object
KEY_COLUMNS = {"trials": ("sweep_id", "trial_id"), "epochs": ("sweep_id", "trial_id", "epoch")}
NAME_MAX_LENGTH = 200


def config_columns() -> dict[str, pa.DataType]:
    """``config_<field>`` -> Arrow type, for every TrialConfig field in declaration order."""
    return {f"config_{name}": _ARROW_TYPES[base] for name, base in field_types().items()}


@functools.cache
def trials_schema() -> pa.Schema:
    fields = [
        pa.field("sweep_id", pa.string(), nullable=False),
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error", pa.string()),
        *(pa.field(name, dtype) for name, dtype in config_columns().items()),
        pa.field("objective_name", pa.string()),
        pa.field("objective_mode", pa.string()),
        pa.field("best_objective", pa.float64()),
        pa.field("final_objective", pa.float64()),
        pa.field("epochs_run", pa.int64()),
        pa.field("wall_seconds", pa.float64()),
        pa.field("resources_cpu", pa.float64()),
        pa.field("resources_gpu", pa.float64()),
        pa.field("node", pa.string()),
        pa.field("versions", pa.string()),
        pa.field("commit", pa.string()),
        pa.field("written_at", TIMESTAMP, nullable=False),
        pa.field("params", pa.string()),
        # Which stage wrote the row and where its numbers came from (null in stores written before them):
        pa.field("stage", pa.string()),  # search | confirm | train
        pa.field("confirm_job", pa.string()),  # confirm rows: <cell>/<role><rank>/s<seed>, unique per sweep
        pa.field("val_from", pa.string()),  # where the val_* metrics' images came from (train_pool)
        pa.field("val_images", pa.int64()),
        # confirm rows: the one score on test (by the eval_mode's protocol) and the end-to-end classifier's top-1
        *(pa.field(name, pa.float64()) for name in TEST_METRICS),
        pa.field("test_epoch", pa.int64()),  # the epoch whose weights were scored on test
        pa.field("test_images", pa.int64()),
        pa.field("test_epoch_pick", pa.string()),  # final | best_val: how test_epoch was chosen
        # The training length actually run (null in stores written before them): the last report's counters.
        pa.field("steps_run", pa.int64()),  # optimiser steps
        pa.field("samples_seen", pa.int64()),  # training images seen (steps x batch_size)
    ]
    return pa.schema(fields, metadata=_metadata("trials"))


@functools.cache
def epochs_schema() -> pa.Schema:
    fields = [
        pa.field("sweep_id", pa.string(), nullable=False),
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("epoch", pa.int64(), nullable=False),
        pa.field("written_at", TIMESTAMP, nullable=False),
        *(pa.field(name, pa.float64()) for name in EPOCH_METRICS),
        pa.field("extra_metrics", pa.string()),
    ]
    return pa.schema(fields, metadata=_metadata("epochs"))


def schema_for(table: str) -> pa.Schema:
    return trials_schema() if table == "trials" else epochs_schema()


def _metadata(table: str) -> dict[bytes, bytes]:
    return {METADATA_VERSION_KEY: str(SCHEMA_VERSION).encode(), METADATA_TABLE_KEY: table.encode()}


def check_name(kind: str, name: str) -> str:
    """Refuse a sweep or trial id that could escape the store folder or break a file name.

    Ids are not used in the store's own paths, but callers put them in run folders and file names.
    """
    if not isinstance(name, str):
        raise BadInput(f"{kind}: expected a string, got {type(name).__name__}")
    if not name:
        raise BadInput(f"{kind}: must not be empty")
    problems = (
        ("/" in name or "\\" in name, "must not contain a path separator"),
        (".." in name, "must not contain '..'"),
        (name.startswith("."), "must not start with '.'"),
        (any(ord(c) < 32 or 127 <= ord(c) < 160 for c in name), "must not contain control characters"),
        (len(name) > NAME_MAX_LENGTH, f"must be at most {NAME_MAX_LENGTH} characters"),
    )
    for bad, why in problems:
        if bad:
            raise BadInput(f"{kind} {name!r}: {why}")
    return name


# ---------------------------------------------------------------------------------------------
# Row validation (tune_schane.store.records builds the rows; these check them): each returns {column: value}
# for every column of its schema, or raises ValueError.


def validate_trial_row(row: dict[str, Any], now: datetime, where: str) -> dict[str, Any]:
    """Validate one trials row (``config`` may be nested) and fill absent nullable columns."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a dict, got {type(row).__name__}")
    row = dict(row)
    nested = row.pop("config", None)
    if nested is not None:
        if dataclasses.is_dataclass(nested) and not isinstance(nested, type):
            nested = dataclasses.asdict(nested)
        if not isinstance(nested, dict):
            raise ValueError(f"{where}: config must be a mapping, got {type(nested).__name__}")
        for key, value in nested.items():
            column = f"config_{key}"
            if column in row:
                raise ValueError(f"{where}: config field {key!r} given both nested and as {column}")
            row[column] = value
    record = _typed_record(row, trials_schema(), now, where)
    if record["status"] not in TRIAL_STATUSES:
        raise ValueError(f"{where}: status {record['status']!r} is not one of {TRIAL_STATUSES}")
    if record["stage"] is not None and record["stage"] not in STAGES:
        raise ValueError(f"{where}: stage {record['stage']!r} is not one of {STAGES}")
    mode = record["objective_mode"]
    if mode is not None and mode not in OBJECTIVE_MODES:
        raise ValueError(f"{where}: objective_mode {mode!r} is not one of {OBJECTIVE_MODES}")
    if record["epochs_run"] is not None and record["epochs_run"] < 0:
        raise ValueError(f"{where}: epochs_run must be >= 0, got {record['epochs_run']}")
    return record


def validate_epoch_row(row: dict[str, Any], now: datetime, where: str) -> dict[str, Any]:
    """Validate one epochs row; unknown numeric keys go into ``extra_metrics`` (see module doc)."""
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected a dict, got {type(row).__name__}")
    schema = epochs_schema()
    known = {key: value for key, value in row.items() if key in schema.names}
    extra = {key: value for key, value in row.items() if key not in schema.names}
    if extra:
        if known.get("extra_metrics") is not None:
            raise ValueError(f"{where}: give extra metrics as keys or as extra_metrics, not both")
        known["extra_metrics"] = _extra_json(extra)
    record = _typed_record(known, schema, now, where)
    if record["epoch"] < 1:
        raise ValueError(f"{where}: epoch must be >= 1 (epochs are 1-based), got {record['epoch']}")
    return record


def _typed_record(row: dict[str, Any], schema: pa.Schema, now: datetime, where: str) -> dict[str, Any]:
    unknown = sorted(set(row) - set(schema.names))
    if unknown:
        raise ValueError(f"{where}: unknown column(s) {', '.join(map(repr, unknown))}")
    record = {}
    for field in schema:
        value = row.get(field.name)
        if value is None or value is pd.NA:
            value = now if field.name == "written_at" else None
        if value is None:
            if not field.nullable:
                raise ValueError(f"{where}: {field.name} is required")
        else:
            value = _check_value(field, value, where)
        record[field.name] = value
    for key in ("sweep_id", "trial_id"):
        try:
            check_name(key, record[key])
        except BadInput as exc:
            raise BadInput(f"{where}: {exc}") from None
    return record


def _check_value(field: pa.Field, value: Any, where: str) -> Any:
    name, dtype = field.name, field.type
    if name in JSON_COLUMNS and isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    ok = False
    if dtype == pa.string():
        ok = isinstance(value, str)
    elif dtype == pa.int64():
        ok = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
        value = int(value) if ok else value
    elif dtype == pa.float64():
        ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
        value = float(value) if ok else value
    elif dtype == pa.bool_():
        ok = isinstance(value, (bool, np.bool_))
        value = bool(value) if ok else value
    elif dtype == TIMESTAMP:
        ok = isinstance(value, datetime) and value.tzinfo is not None
        if isinstance(value, datetime) and not ok:
            raise ValueError(f"{where}: {name} must be timezone-aware, got {value!r}")
        value = value.astimezone(timezone.utc) if ok else value
    if not ok:
        raise ValueError(f"{where}: {name} must be {dtype} or None, got {type(value).__name__} {value!r}")
    return value


def _extra_json(extra: dict[str, Any]) -> str | None:
    out = {}
    for key, value in sorted(extra.items(), key=lambda kv: str(kv[0])):
        if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
            out[str(key)] = float(value) if math.isfinite(value) else None
    return json.dumps(out, sort_keys=True) if out else None
