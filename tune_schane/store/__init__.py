"""The Parquet trial store: where to add a column or change how trials are written and read.

- :mod:`.trial_store`: ``TrialStore`` (one row per trial, one per trial-epoch; append-only part files);
- :mod:`._schema`: the tables' columns and their types, row validation, the schema version;
- :mod:`._layout`: where the part files live (partitions by sweep) and how they are listed;
- :mod:`.compaction`: one file per table and sweep once a sweep ends (``tune-schane compact``);
- :mod:`.records`: store rows from a trial's outputs, whoever ran it; :mod:`.provenance`: ids, code and versions.

The names below are the store's public surface (DESIGN.md section 7: ``tune_schane.store.TrialStore``).
"""

from ..finetune.outcomes import TRIAL_STATUSES
from ._layout import partition_dir, sweep_key
from ._schema import SCHEMA_VERSION, check_name
from .trial_store import TrialStore, open_existing, open_filesystem

__all__ = ["SCHEMA_VERSION", "TRIAL_STATUSES", "TrialStore", "check_name", "open_existing", "open_filesystem",
           "partition_dir", "sweep_key"]
