"""What `tune-schane train`, `sweep` and `status` do, behind the argument parsing (cli.py parses)."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from pathlib import Path

from ..errors import BadInput
from ..finetune.config import load_config
from ..store.provenance import new_id


def progress_line(metrics: dict, epochs: int) -> str:
    def fmt(key: str, spec: str = ".3f") -> str:
        value = metrics.get(key, math.nan)
        return "-" if not math.isfinite(value) else format(value, spec)

    protocol = ""  # the last epoch of an eval_mode protocol: val_* are the protocol's, e2e_top1 the classifier's
    if metrics.get("eval_seconds", 0.0) > 0:
        protocol = f"  (protocol {fmt('eval_seconds', '.1f')} s; end-to-end val_top1 {fmt('e2e_top1', '.2f')})"
    return (f"epoch {int(metrics['epoch'])}/{epochs}  val_top1 {fmt('val_top1', '.2f')}  "
            f"top5 {fmt('val_top5', '.2f')}  loss {fmt('train_loss')} (ce {fmt('train_ce')}, "
            f"con {fmt('train_contrastive')})  {fmt('images_per_s', '.0f')} img/s  "
            f"{fmt('epoch_seconds', '.1f')} s" + protocol)


def open_store(uri: str):
    from ..store.trial_store import TrialStore

    return TrialStore(uri)


def train_command(args: argparse.Namespace) -> int:
    from ..finetune.runner import run_trial
    from ..store.records import record_trial
    from ..store.trial_store import check_name
    from ._progress import TrainProgress

    loaded = load_config(args.config, args.overrides)
    config = loaded.config
    sweep_id = check_name("sweep id", args.sweep_id)
    store = open_store(args.store)
    trial_id = new_id(f"{config.loss}-b{config.batch_size}")
    out = Path(args.out) if args.out else Path("runs") / trial_id
    if args.resume and not args.out:
        raise BadInput("--resume needs --out (the folder holding the checkpoint)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"--out {out}: cannot create ({exc.strerror})") from None
    print(f"train {trial_id}: {config.loss} model={config.model} dataset={config.dataset} "
          f"batch={config.batch_size} epochs={config.epochs} -> {out}", flush=True)
    progress = TrainProgress(config.epochs, lambda m: progress_line(m, config.epochs))
    try:
        result = run_trial(config, out, resume=args.resume, on_epoch=progress.epoch_done,
                           wrap_batches=progress.batches)
    finally:
        progress.close()
    params = {"provenance": loaded.provenance} if loaded.provenance else None
    record_trial(store, sweep_id=sweep_id, trial_id=trial_id, status=result.status, config=result.config,
                 history=result.history, resources={"cpu": float(config.num_threads or 0)}, error=result.error,
                 wall_seconds=result.wall_seconds, params=params, stage="train", evaluation=result.evaluation)
    best = result.best_objective()
    print(f"{result.status}: best val_top1 {best:.2f} over {len(result.history)} epochs "
          f"({result.wall_seconds:.1f} s); recorded in {args.store} as {sweep_id}/{trial_id}", flush=True)
    test = (result.evaluation or {}).get("test")
    if test:
        print(f"test_top1 {test['test_top1']:.2f} on {test['test_images']} test images "
              f"(epoch {test['test_epoch']}, {test['test_epoch_pick']})", flush=True)
    if result.status != "completed":
        print(f"tune-schane: trial ended {result.status}: {(result.error or '').splitlines()[0]}",
              file=sys.stderr)
        return 1
    return 0


def _check_local_cluster(args: argparse.Namespace, space) -> None:
    """Refuse trials that can never be placed before Ray starts (a local cluster is this machine)."""
    if args.address and (args.num_cpus is not None or args.num_gpus is not None):
        raise BadInput("--num-cpus/--num-gpus apply to a local Ray only, not with --address")
    if not args.address:
        cpus = float(os.cpu_count() or 1) if args.num_cpus is None else args.num_cpus
        gpus = args.num_gpus
        if gpus is None:  # counting CUDA devices loads torch (seconds): only when a trial asks for a GPU
            asks = any(space.resources_for(batch).get("gpu", 0) > 0 for batch in space.batch_sizes())
            if asks:
                from ..finetune.train import local_gpus

                gpus = local_gpus()
        space.check_cluster(cpus, gpus or 0.0)


def _start_ray(args: argparse.Namespace, space) -> None:
    """Join ``--address`` or start a local Ray, then check the space's trials against what it really has."""
    from .. import ray_tune

    cluster = ray_tune.init_ray(args.address, num_cpus=args.num_cpus, num_gpus=args.num_gpus,
                                ship_code=getattr(args, "ship_code", True))
    space.check_cluster(float(cluster.get("CPU", 0)), float(cluster.get("GPU", 0)))


def check_local_data(space) -> None:
    """Refuse, before Ray starts, a space on Debian's Fashion-MNIST when its files are not installed.

    The default sweep is such a space, so the line names the install and the toy space that needs nothing.
    """
    from ..data import fashion_mnist

    datasets = {space.fixed.get("dataset"), *space.grid.get("dataset", [])}
    if "fashion_mnist" not in datasets or space.fixed.get("data_root"):
        return
    root = Path(fashion_mnist.DEFAULT_ROOT)
    missing = [name for name in fashion_mnist.FILES["train"] if not (root / name).is_file()]
    if missing:
        raise BadInput(f"space {space.name}: Fashion-MNIST is not installed ({root / missing[0]} is missing); "
                       f"{fashion_mnist.INSTALL_HINT} (or `make data`), or run the toy space that needs no "
                       "dataset: `tune-schane sweep digits`")


def sweep_command(args: argparse.Namespace) -> int:
    from ..space.catalog import resolve_space
    from ..space.search_space import load_space
    from ..store.compaction import compact_finished_sweep
    from ..store.trial_store import check_name

    space = load_space(resolve_space(args.space), getattr(args, "overrides", None))
    if args.num_samples is not None:
        if args.num_samples < 1:
            raise BadInput(f"--num-samples must be >= 1, got {args.num_samples}")
        space = dataclasses.replace(space, num_samples=args.num_samples)
    if args.resume and not args.name:
        raise BadInput("--resume needs --name (the id of the sweep to continue)")
    sweep_id = check_name("sweep id", args.name or new_id(space.name))
    store = open_store(args.store)
    storage = storage_uri(args.storage or "runs/ray")
    if args.resume and not _experiment_exists(storage, sweep_id):
        raise BadInput(f"--resume: no sweep {sweep_id!r} under {storage}")
    if not getattr(args, "address", None):  # on a cluster the nodes hold the data, not necessarily this machine
        check_local_data(space)
    _check_local_cluster(args, space)
    from ..search.tracking import check_trackers, tracker_lines

    mlflow = getattr(args, "mlflow", None)
    space = check_trackers(space, sweep_id, optuna_storage=getattr(args, "optuna_storage", None), mlflow=mlflow,
                           resume=args.resume)
    from .. import ray_tune

    owned = not ray_tune.ray_running()  # a Ray this process already had (a notebook's) is left running
    try:
        _start_ray(args, space)
        if not args.resume:
            store.write_space(sweep_id, space.source)
        shipped = " (code shipped to the nodes)" if args.address and getattr(args, "ship_code", True) else ""
        print(f"sweep {sweep_id}: {space.path or space.name} -> store {args.store}{shipped}", flush=True)
        print("\n".join(tracker_lines(space, sweep_id, storage, mlflow)), flush=True)
        ray_tune.run_sweep(space, sweep_id=sweep_id, store_uri=args.store, storage_path=storage,
                           resume=args.resume, keep_checkpoints=getattr(args, "keep_checkpoints", "best"),
                           mlflow_uri=mlflow)
        if space.confirm:  # the space asks the sweep to end with its confirm stage
            confirm_stage(store, sweep_id, space, storage, resume=args.resume, **space.confirm)
    finally:
        if owned:
            ray_tune.shutdown()
    compact_finished_sweep(store, sweep_id)  # one file per table for the finished sweep
    print_best(store.load_trials(sweep_id), space.objective_metric, space.objective_mode)
    print(f"sweep {sweep_id} done; `tune-schane analyze --sweep {sweep_id}` for the report", flush=True)
    return 0


def confirm_command(args: argparse.Namespace) -> int:
    """``tune-schane confirm``: retrain a finished sweep's finalists on fresh seeds, score once on test."""
    import yaml

    from ..analysis.command import resolve_sweep
    from ..space.schema import CONFIRM_DEFAULTS
    from ..space.search_space import parse_space
    from ..store.compaction import compact_finished_sweep

    store, sweep_id, _ = resolve_sweep(args.store, args.sweep)
    text = store.read_space(sweep_id)
    if text is None:
        raise BadInput(f"sweep {sweep_id}: the store holds no search space for it (a `tune-schane train` run?); "
                       "confirm needs a sweep")
    space = parse_space(yaml.safe_load(text) or {}, source=text, where=f"sweep {sweep_id}'s space")
    settings = {**CONFIRM_DEFAULTS, **(space.confirm or {})}
    for key in ("top", "seeds", "epoch"):
        if getattr(args, key, None) is not None:
            settings[key] = getattr(args, key)
    _check_local_cluster(args, space)
    storage = storage_uri(args.storage or "runs/ray")
    from .. import ray_tune

    owned = not ray_tune.ray_running()
    try:
        _start_ray(args, space)
        confirm_stage(store, sweep_id, space, storage, resume=args.resume, **settings)
    finally:
        if owned:
            ray_tune.shutdown()
    compact_finished_sweep(store, sweep_id)
    return 0


def confirm_stage(store, sweep_id: str, space, storage: str, *, top: int, seeds: int, epoch: str,
                  resume: bool = False) -> None:
    """Plan the confirm jobs from the store, run those it lacks on the Ray already started, print the result."""
    from .. import ray_tune
    from ..search.confirm import pending_jobs, plan_confirm

    trials = store.load_trials(sweep_id)
    jobs = plan_confirm(trials, space, top=top, seeds=seeds, epoch=epoch)
    todo = pending_jobs(jobs, trials)
    configs = len({(job.cell, job.role, job.rank) for job in jobs})
    print(f"confirm {sweep_id}: {configs} configs x {seeds} fresh seeds ({jobs[0].seed}..{jobs[-1].seed} "
          f"range, shared by every config) = {len(jobs)} trials, {len(todo)} to run; {space.max_epochs} epochs, "
          f"no pruning; test scored once at the {'final epoch' if epoch == 'final' else 'best epoch on val'}",
          flush=True)
    if todo:
        ray_tune.run_confirm(jobs, space, sweep_id=sweep_id, store_uri=store.uri, storage_path=storage,
                             resume=resume)
    print_confirm(store.load_trials(sweep_id))


def print_confirm(trials) -> None:
    """The confirm results per cell (analysis.confirmed): test first, the search's value labelled optimistic."""
    from ..analysis.confirmed import summary_lines

    print("\n".join(summary_lines(trials)) or "confirm: no completed confirm trial", flush=True)


def storage_uri(text: str) -> str:
    """Ray Tune's storage: a pyarrow filesystem URI as given, or a local path made absolute (Ray needs that)."""
    return text if "://" in text else str(Path(text).expanduser().resolve())


def _experiment_exists(storage: str, sweep_id: str) -> bool:
    import pyarrow.fs as pafs

    from ..store.trial_store import open_filesystem

    fs, root = open_filesystem(storage, "--storage")
    return fs.get_file_info(f"{root}/{sweep_id}").type == pafs.FileType.Directory


def print_best(trials, metric: str, mode: str, top: int = 5) -> None:
    if trials.empty:
        print("no trials recorded")
        return
    from ..search.confirm import search_rows

    trials = search_rows(trials)
    counts = trials["status"].value_counts().to_dict()
    print("search trials by status: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    ranked = trials.dropna(subset=["best_objective"]).sort_values("best_objective", ascending=(mode == "min"))
    columns = ["trial_id", "status", "config_loss", "config_batch_size", "config_tau", "config_beta",
               "config_lam", "config_lr", "epochs_run", "best_objective"]
    print(f"best search trials by {metric} ({mode}): selection (optimistic), picked and scored on val; "
          "`tune-schane confirm` scores the finalists on fresh seeds and the test split")
    print(ranked[columns].head(top).to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def status_command(args: argparse.Namespace) -> int:
    from ..store.trial_store import open_existing

    store = open_existing(args.store)  # a missing path is a typo (exit 2), not an empty store
    sweeps = store.sweeps()
    for line in store.unreadable:  # a broken file of one sweep hides none of the others
        print(f"tune-schane: warning: {line} (its sweep is listed without counts)", file=sys.stderr)
    if sweeps.empty:
        print(f"store {args.store}: empty, no trials yet")
        return 0
    print(sweeps.to_string(index=False))
    return 0


def spaces_command(args: argparse.Namespace) -> int:
    """The shipped spaces: short name (what ``sweep NAME`` takes) and the first line of its description."""
    from ..space.catalog import SPACES_DIR, catalog

    rows = catalog()
    width = max(len(name) for name, _ in rows)
    for name, description in rows:
        print(f"{name:<{width}}  {description}")
    print(f"(files in {SPACES_DIR}; `tune-schane sweep NAME` runs one, a path runs your own)")
    return 0
