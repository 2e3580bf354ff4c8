"""Compaction: merge each sweep's part files into one file per table (``tune-schane compact``).

Why: a sweep writes one part file per trial per table, and a reader pays per file (a footer read
locally, a request on an object store). After compaction a sweep is one file per table in its
partition folder ``<table>/sweep=<id>/``.

Crash-safe at every step, because nothing is deleted before its rows are in place elsewhere:

1. read the sweep's files (its compacted file if any, its keyed part files, every unkeyed one);
2. write their rows, in read order and all of them (superseded rows too: ``first_written_at`` and the
   last-write-wins rule need them), to ``.tmp-<name>`` in the partition folder; rename it;
3. delete the files read in 1. Unkeyed files (old flat stores, multi-sweep writes) go last, once
   every sweep they hold has its compacted file.

A kill between 2 and 3 leaves rows twice, in identical copies; last-write-wins reads the same.
A kill during 2 leaves a hidden ``.tmp-`` file that readers skip. A sweep writing to the same store
meanwhile only adds new part files, which step 3 never deletes (it deletes only what step 1 listed).
A reader that finds a file gone retries from the listing (``TrialStore.read_table``).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone

import pyarrow.compute as pc

from ..errors import BadInput
from ..faults import fault_point
from ._schema import TABLES, check_name, schema_for
from .trial_store import TrialStore, open_existing, partition_dir, sweep_key


@dataclass(frozen=True)
class Compacted:
    table: str
    sweep_id: str
    files_in: int
    rows: int


def compact(store: TrialStore, sweep: str | None = None) -> list[Compacted]:
    """Compact ``sweep`` (None: every sweep) and migrate unkeyed files; return what was merged."""
    done = []
    for table in TABLES:
        files = store.files(table)
        shared_ids = _sweep_ids(store, table, files.shared)
        if sweep is None:
            keyed_ids = set().union(*(_sweep_ids(store, table, p[:1]) for p in files.keyed.values()))
            targets = sorted(set(files.compacted) | keyed_ids | shared_ids)
        else:
            targets = sorted({sweep} | shared_ids)  # unkeyed files may hold it: migrate them all
        merged_all = True
        for sweep_id in targets:
            inputs = files.for_sweep(sweep_id)
            if not files.shared and len(inputs) <= 1 and inputs == files.compacted.get(sweep_id, []):
                continue  # nothing to merge
            try:  # exactly the files listed above: the only ones step 3 deletes
                data = store.scan(table, inputs, sweep=sweep_id)
            except FileNotFoundError:
                merged_all = False
                continue  # a concurrent compaction of this sweep merged them first
            data = data.replace_schema_metadata(schema_for(table).metadata)
            now = datetime.now(timezone.utc)
            name = f"part-{now:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex}.parquet"
            store.write_file(f"{store.root}/{table}/{partition_dir(sweep_id)}", name, data, fault="compact-write")
            fault_point("compact-moved")
            own = files.compacted.get(sweep_id, []) + files.keyed.get(sweep_key(sweep_id), [])
            _delete(store, own)
            done.append(Compacted(table, sweep_id, len(inputs), data.num_rows))
        if merged_all:
            _delete(store, files.shared)  # every sweep they hold has its rows in a merged file now
    return done


def compact_finished_sweep(store: TrialStore, sweep_id: str) -> None:
    """What ``tune-schane sweep`` calls when it ends: a file it cannot read must not fail the sweep."""
    try:
        compact(store, sweep_id)
    except BadInput as exc:
        print(f"tune-schane: warning: sweep {sweep_id} left uncompacted: {exc}", file=sys.stderr)


def _sweep_ids(store: TrialStore, table: str, paths: list[str]) -> set[str]:
    if not paths:
        return set()
    column = store.scan(table, paths, ["sweep_id"])["sweep_id"]
    return set(pc.unique(column).to_pylist())


def _delete(store: TrialStore, paths: list[str]) -> None:
    for path in paths:
        try:
            store.fs.delete_file(path)
        except FileNotFoundError:
            pass  # a concurrent compaction of the same sweep got there first
        fault_point("compact-delete")


def compact_command(args: argparse.Namespace) -> int:
    store = open_existing(args.store)
    if not store.exists():
        print(f"store {args.store}: empty, no trials yet; nothing to compact")
        return 0
    done = compact(store, None if args.sweep is None else check_name("--sweep", args.sweep))
    for item in done:
        print(f"{item.sweep_id} {item.table}: {item.files_in} file(s) -> 1 ({item.rows} rows)")
    if not done:
        print(f"store {args.store}: nothing to compact")
    return 0
