"""The ``tune-schane`` command line: a table of small subcommands (as Optuna's CLI).

Exit codes (DESIGN.md section 7): 0 success, 2 bad input (one line on stderr, no traceback),
1 anything else. ``main(argv)`` returns the code so tests call it in-process. Heavy modules (torch,
Ray, matplotlib) are imported inside the subcommand that needs them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ..errors import BadInput

DEFAULT_STORE = "trials"


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise BadInput(f"{self.prog}: {message}")


def _cmd_train(args: argparse.Namespace) -> int:
    from ._commands import train_command

    return train_command(args)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from ._commands import sweep_command

    return sweep_command(args)


def _cmd_confirm(args: argparse.Namespace) -> int:
    from ._commands import confirm_command

    return confirm_command(args)


def _cmd_spaces(args: argparse.Namespace) -> int:
    from ._commands import spaces_command

    return spaces_command(args)


def _cmd_status(args: argparse.Namespace) -> int:
    from ._commands import status_command

    return status_command(args)


def _cmd_compact(args: argparse.Namespace) -> int:
    from ..store.compaction import compact_command

    return compact_command(args)


def _cmd_analyze(args: argparse.Namespace) -> int:
    from ..analysis.command import analyze_command

    return analyze_command(args.store, args.sweep, args.out)


def _cmd_export(args: argparse.Namespace) -> int:
    from ..analysis.command import export_command

    return export_command(args.store, args.sweep, args.out, args.by)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tune-schane", description="Tune SupCon / SCHaNe / CLCE fine-tuning on Ray Tune.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name: str, func: Callable[[argparse.Namespace], int], help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    p = add("train", _cmd_train, "Run one trial from a config YAML (no CONFIG: the embedded default).")
    p.add_argument("config", nargs="?", help="trial config YAML, e.g. an exported best.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable), e.g. --set loss=schane --set beta=2")
    p.add_argument("--out", default=None, help="output folder (default: runs/train-<id>)")
    p.add_argument("--store", default=DEFAULT_STORE, help="trial store to record the run in (path or URI)")
    p.add_argument("--sweep-id", default="train", help="sweep id the run is recorded under")
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")

    p = add("sweep", _cmd_sweep, "Run a sweep of a search space on Ray Tune (no SPACE: the default).")
    p.add_argument("space", nargs="?", help="search space: a YAML path or a shipped space's name "
                                            "(`tune-schane spaces` lists them; default: default)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override the space (repeatable): a fixed setting (shots=null), a top-level key "
                        "(max_concurrent=8) or a dotted key (grid.batch_size=[128,256], resources.gpu=1)")
    p.add_argument("--store", default=DEFAULT_STORE, help="trial store (path or pyarrow URI)")
    p.add_argument("--storage", default=None, help="Ray Tune storage folder or URI (default: runs/ray)")
    p.add_argument("--address", default=None,
                   help="join a running Ray cluster: HOST:PORT of its head, or `auto` for the one `ray start` "
                        "recorded on this machine (default: start a private local Ray, never join another)")
    p.add_argument("--no-ship-code", dest="ship_code", action="store_false",
                   help="with --address: do not ship this package's code to the nodes (Ray runtime_env "
                        "working_dir); use the copy installed on every node")
    p.add_argument("--optuna-storage", default=None, metavar="URL",
                   help="keep every cell's Optuna study in this storage as <sweep>/<cell>: sqlite:///studies.db, "
                        "another SQLAlchemy URL, or a journal file path (default: the space's optuna_storage, "
                        "else memory)")
    p.add_argument("--mlflow", default=None, metavar="URI",
                   help="log every trial to MLflow (Ray's MLflowLoggerCallback): a tracking URI such as "
                        "sqlite:///mlflow.db or http://host:5000; experiment = the sweep id")
    p.add_argument("--name", default=None, help="sweep id (default: <space name>-<timestamp>)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted sweep --name")
    p.add_argument("--keep-checkpoints", choices=["best", "none", "all"], default="best",
                   help="what the finished sweep leaves in its Ray storage: the best trial's last checkpoint "
                        "(default), none, or all (Ray's rule: the last 4 of every trial)")
    p.add_argument("--num-samples", type=int, default=None, help="override the space's num_samples")
    p.add_argument("--num-cpus", type=int, default=None, help="local Ray only: CPUs to offer (default: all)")
    p.add_argument("--num-gpus", type=int, default=None,
                   help="local Ray only: GPUs to offer (logical GPUs on a CPU machine test GPU packing)")

    p = add("confirm", _cmd_confirm, "Retrain a sweep's finalists (and the baseline) on fresh seeds; score once "
                                      "on the sealed test split. The numbers to report come from here.")
    p.add_argument("--sweep", default=None, help="sweep id (default: the most recent sweep)")
    p.add_argument("--top", type=int, default=None, help="configs per grid cell (default: the space's confirm.top, "
                                                         "else 1); the baseline's best at each cell is added")
    p.add_argument("--seeds", type=int, default=None,
                   help="fresh seeds per config, never used by the search, the same for every config (default 5)")
    p.add_argument("--epoch", choices=["final", "best_val"], default=None,
                   help="weights scored on test: the final epoch's (default) or the best epoch on val")
    p.add_argument("--store", default=DEFAULT_STORE, help="trial store (path or pyarrow URI)")
    p.add_argument("--storage", default=None, help="Ray Tune storage folder or URI (default: runs/ray)")
    p.add_argument("--address", default=None, help="join a running Ray cluster (as for sweep)")
    p.add_argument("--no-ship-code", dest="ship_code", action="store_false",
                   help="with --address: do not ship this package's code to the nodes")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted confirm (running trials resume from their checkpoints)")
    p.add_argument("--num-cpus", type=int, default=None, help="local Ray only: CPUs to offer (default: all)")
    p.add_argument("--num-gpus", type=int, default=None, help="local Ray only: GPUs to offer")

    add("spaces", _cmd_spaces, "List the shipped search spaces (names `sweep` accepts) with a description.")

    p = add("status", _cmd_status, "List the sweeps in a store with trial counts by status.")
    p.add_argument("--store", default=DEFAULT_STORE, help="trial store (path or pyarrow URI)")

    p = add("compact", _cmd_compact, "Merge each sweep's part files into one file per table (crash-safe).")
    p.add_argument("--store", default=DEFAULT_STORE, help="trial store (path or pyarrow URI)")
    p.add_argument("--sweep", default=None, help="sweep id (default: every sweep)")

    p = add("analyze", _cmd_analyze, "Batch-size sensitivity, importance, plots and an HTML report.")
    p.add_argument("--store", default=DEFAULT_STORE, help="trial store (path or pyarrow URI)")
    p.add_argument("--sweep", default=None, help="sweep id (default: the most recent sweep)")
    p.add_argument("--out", default=None, help="report folder (default: reports/<sweep>)")

    p = add("export", _cmd_export, "Export the best trial config(s) as YAML that `train` reruns.")
    p.add_argument("--store", default=DEFAULT_STORE, help="trial store (path or pyarrow URI)")
    p.add_argument("--sweep", default=None, help="sweep id (default: the most recent sweep)")
    p.add_argument("--by", choices=["loss", "batch_size"], default=None, help="one best config per group")
    p.add_argument("--out", default=".", help="folder for best.yaml (or best-<by>-<value>.yaml files)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except BadInput as exc:
        print(f"tune-schane: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tune-schane: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
