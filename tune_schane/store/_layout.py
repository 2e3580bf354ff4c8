"""The store's file layout (names, partition folders, listing) and the checks of a part file's footer.

See ``tune_schane/store/trial_store.py`` for what the layout guarantees and ``trials/README.md`` for readers
outside this package.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ..errors import BadInput
from ._schema import ADDED_COLUMNS, METADATA_TABLE_KEY, METADATA_VERSION_KEY, SCHEMA_VERSION

_KEYED = re.compile(r"-s([0-9a-f]{16})\.parquet$")
PARTITION_PREFIX = "sweep="


def sweep_key(sweep_id: str) -> str:
    """16 hex digits naming a sweep in part file names (ids may hold spaces, colons, 200 characters)."""
    return hashlib.sha256(sweep_id.encode()).hexdigest()[:16]


def partition_dir(sweep_id: str) -> str:
    """The Hive-style folder name of a sweep's compacted files: ``sweep=<%-encoded id>``."""
    return PARTITION_PREFIX + quote(sweep_id, safe="")


@dataclass
class Files:
    """The visible files of one table, as the store's layout groups them (paths sorted by name)."""

    compacted: dict[str, list[str]]  # sweep_id -> files in its partition folder
    keyed: dict[str, list[str]]  # sweep key -> part files of that one sweep
    shared: list[str]  # part files without a key: any sweep (old stores, multi-sweep writes)

    def for_sweep(self, sweep: str | None) -> list[str]:
        """Every file that may hold rows of ``sweep`` (None: all), in read order."""
        if sweep is None:
            compacted = [p for s in sorted(self.compacted) for p in self.compacted[s]]
            parts = [p for k in self.keyed.values() for p in k] + self.shared
        else:
            compacted = self.compacted.get(sweep, [])
            parts = self.keyed.get(sweep_key(sweep), []) + self.shared
        return compacted + sorted(parts, key=_base_name)


def _base_name(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def list_files(fs: pafs.FileSystem, folder: str, sweep: str | None = None) -> Files:
    """List a table folder's visible files (hidden ``.``/``_`` and non-Parquet names skipped).

    With ``sweep``, only that sweep's partition folder is listed: the other sweeps' folders cost
    nothing (the flat part files of every sweep are one listing).
    """
    out = Files({}, {}, [])
    if fs.get_file_info(folder).type != pafs.FileType.Directory:
        return out
    wanted = None if sweep is None else partition_dir(sweep)
    for entry in sorted(fs.get_file_info(pafs.FileSelector(folder)), key=lambda i: i.base_name):
        if entry.base_name.startswith((".", "_")):
            continue
        if entry.type == pafs.FileType.Directory and entry.base_name.startswith(PARTITION_PREFIX):
            if wanted is not None and entry.base_name != wanted:
                continue
            listed = fs.get_file_info(pafs.FileSelector(entry.path))
            out.compacted[unquote(entry.base_name[len(PARTITION_PREFIX) :])] = sorted(
                i.path for i in listed if _visible_part(i)
            )
        elif _visible_part(entry):
            match = _KEYED.search(entry.base_name)
            (out.keyed.setdefault(match.group(1), []) if match else out.shared).append(entry.path)
    return out


def _visible_part(info: pafs.FileInfo) -> bool:
    return (
        info.type == pafs.FileType.File
        and info.base_name.endswith(".parquet")
        and not info.base_name.startswith((".", "_"))
    )


class PartChecker:
    """Checks the footers of one table's part files; each distinct footer schema is checked once.

    Part files mostly share one schema, so the serialized Arrow schema that pyarrow keeps in every
    footer (with the file's version and table keys) is the cache key: a file whose key was seen costs
    a dictionary lookup. A file without that key (not written by pyarrow) is checked in full.
    """

    def __init__(self, table: str, schema: pa.Schema):
        self.table, self.schema = table, schema
        self.schemas: list[pa.Schema] = []  # distinct footer schemas, in the order first seen
        self.extra: dict[str, pa.Field] = {}  # config_* columns found beyond ``schema``
        self._seen: dict[tuple, int] = {}

    def check(self, path: str, part: pq.ParquetFile) -> int:
        """Check an open part file's footer (BadInput names ``path``); return its schema's index."""
        meta = part.metadata.metadata or {}
        key = (meta.get(b"ARROW:schema"), meta.get(METADATA_VERSION_KEY), meta.get(METADATA_TABLE_KEY))
        if key[0] is not None and key in self._seen:
            return self._seen[key]
        physical = part.schema_arrow
        _check_part(path, physical, self.table, self.schema)
        for field in physical:
            if field.name.startswith("config_") and field.name not in self.schema.names:
                self.extra.setdefault(field.name, field.with_nullable(True))
        self.schemas.append(physical)
        if key[0] is not None:
            self._seen[key] = len(self.schemas) - 1
        return len(self.schemas) - 1


def _check_part(path: str, physical: pa.Schema, table: str, schema: pa.Schema) -> None:
    """Check one part file's version, kind and columns; BadInput names it."""
    meta = physical.metadata or {}
    if METADATA_VERSION_KEY not in meta:
        raise BadInput(f"{path}: not a tune-schane part file (no {METADATA_VERSION_KEY.decode()} metadata)")
    version = meta[METADATA_VERSION_KEY].decode(errors="replace")
    if version != str(SCHEMA_VERSION):
        raise BadInput(f"{path}: schema version {version}, this tune-schane reads version {SCHEMA_VERSION}")
    kind = meta.get(METADATA_TABLE_KEY, b"").decode(errors="replace")
    if kind != table:
        raise BadInput(f"{path}: holds a {kind or 'unknown'!r} table, expected {table!r}")
    for field in schema:
        index = physical.get_field_index(field.name)
        if index < 0:
            if field.name.startswith("config_") or field.name in ADDED_COLUMNS.get(table, ()):
                continue  # a TrialConfig field or a column added since: reads as null
            raise BadInput(f"{path}: column {field.name!r} is missing")
        found = physical.field(index).type
        if found != field.type and found != pa.null():
            raise BadInput(f"{path}: column {field.name!r} has type {found}, expected {field.type}")
