"""Evaluation protocols beside end-to-end accuracy: a linear probe on the frozen encoder, and two-stage fine-tuning.

A trial's own number is its classifier's accuracy after the last epoch (``eval_mode: end_to_end``): the classifier
trains beside the backbone, on features that move under it. Two other readings of the same trained network
(``eval_mode``; :class:`tune_schane.finetune.trial.Trial` runs one after the last epoch):

``linear_probe`` (the representation-learning protocol: SupContrast ``main_linear.py``, MoCo ``main_lincls.py``)
    The backbone is frozen (eval mode, ``torch.no_grad``) and its pooled features are extracted **once** per image:
    the training images through the val transform (one centre view each, ``DataBundle.train_eval``), val, and test
    when the trial scores it. A fresh linear classifier is fit on the cached training features and scored on
    the cached val (and test) features. No parameter or buffer of the model changes (BatchNorm running stats
    included: eval mode), and the projector and the trial's classifier are not used.

    Decisions. The papers train 100 epochs of SGD on *augmented* images (lr 0.1 for SupContrast, 30 for MoCo,
    whose raw features are badly scaled). With one cached view per image there is no augmentation to average
    over, so the problem is plain multinomial logistic regression, which is solved to convergence instead (as
    SimCLR's transfer evaluation and CLIP's linear probes do, with L-BFGS):

    - features standardised with the training features' mean and std (MAE's linear probe puts a
      ``BatchNorm1d(affine=False)`` in front of its head for the same reason): a linear reparametrisation, so
      the probe is still a linear classifier on the raw features, but one learning rate fits every backbone;
    - objective: mean cross-entropy + ``PROBE_WEIGHT_DECAY / 2 · ‖W‖²`` (bias not penalised). The L2 term is there
      to make the problem strictly convex (one optimum whatever the start, bounded weights on separable
      features), not tuned as a regulariser: fixed and the same for every trial. Larger values cost accuracy
      where it matters (on the 10 digits feature sets measured below, val top-1 at 1e-2 against 1e-4: -14.3
      to +2.1 points, the large losses on the least separable features);
    - full-batch L-BFGS with a strong-Wolfe line search, ``probe_epochs`` iterations (default 100, sklearn's
      ``LogisticRegression`` default; each iteration is at least one pass over the cached features), step length
      ``probe_lr`` (default 1.0, the quasi-Newton step the line search starts from);
    - the start is seeded by the trial's ``init_seed`` (``nn.Linear``'s own init under a forked RNG, so the
      trial's RNG stream is untouched); the optimum is unique, so the seed only moves the start;
    - convergence is checked, not assumed: the fit stops once no entry of the objective's gradient exceeds
      ``CONVERGED_GRAD`` = 1e-4 (sklearn's lbfgs tolerance) and says whether it got there (``converged``),
      with the objective's relative change over the last iteration (``last_change``). The trial writes these
      into ``evaluation.json`` (``protocol``). Measured on digits features (float64, 2 CPU cores, under 5 s per
      fit): ``test_resnet``, random or trained, converges in 13-87 iterations; ``test_vit`` needs 69-293, and
      at the default 100 iterations 3 of its 6 fits stop short (val top-1 0.0-2.1 points below the optimum's,
      ``converged: false``; worst: collapsed features of 3 epochs on 20 shots per class). Raise
      ``probe_epochs`` where ``converged`` is false: a converged fit stops early, so a larger cap costs nothing.

``two_stage`` (LaCViT, Long et al. 2023, arXiv:2303.18013)
    After the trial's (contrastive) epochs the whole network is fine-tuned with plain cross-entropy for
    ``stage2_epochs``, then its classifier is scored. Stage 2 reuses the trial's own loop
    (:func:`.train.train_one_epoch`, the CE loss of ``build_loss("ce", ...)``, the same V views per image)
    with a fresh optimiser of the trial's kind (:func:`.optim.build_optimizer`: the same weight decay and
    layer decay) and a fresh warm-up + cosine schedule over the stage-2 steps, at ``stage2_lr`` (None: the
    trial's own scaled lr). A fresh optimiser: the stage-1 Adam moments belong to another loss.

Nothing here knows Ray or the store; :class:`tune_schane.finetune.trial.Trial` calls these after the last epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from ..losses import build_loss
from .optim import build_optimizer, build_scheduler, scaled_lr
from .train import autocast_for, evaluate, train_one_epoch

if TYPE_CHECKING:
    from .config import TrialConfig

PROBE_WEIGHT_DECAY = 1e-4  # L2 on the probe's weights (standardised features): strict convexity, not regularisation
CONVERGED_GRAD = 1e-4  # converged: no gradient entry of the objective above this (sklearn's lbfgs tolerance)
_SCORE_BATCH = 4096  # cached features scored per batch


@torch.no_grad()
def extract_features(
    backbone: nn.Module, loader: Iterable[tuple[Tensor, Tensor]], device: torch.device, *, amp: bool = False
) -> tuple[Tensor, Tensor]:
    """Pooled features ``[N, d]`` (float32, on ``device``) and labels ``[N]`` of every image ``loader`` yields.

    The backbone runs in eval mode (dropout off, BatchNorm from its running stats, which it does not update) and
    is put back in the mode it was in.
    """
    was_training = backbone.training
    backbone.eval()
    features, labels = [], []
    try:
        for images, targets in loader:
            with autocast_for(device, amp):
                out = backbone(images.to(device, non_blocking=True))
            features.append(out.float())
            labels.append(targets.to(device))
    finally:
        backbone.train(was_training)
    return torch.cat(features), torch.cat(labels)


@dataclass
class ProbeFit:
    """A linear classifier on standardised features, and how its fit went."""

    mean: Tensor  # [d] of the training features
    std: Tensor  # [d]
    linear: nn.Linear  # d -> C, on (x - mean) / std
    iterations: int = 0
    objective: float = math.nan  # mean CE + weight decay term at the end
    train_loss: float = math.nan  # mean CE on the training features at the end
    train_top1: float = math.nan
    last_change: float = math.nan  # relative decrease of the objective over the last iteration
    grad_max: float = math.nan  # largest gradient entry of the objective at the end
    converged: bool = False  # grad_max <= CONVERGED_GRAD
    seconds: float = 0.0

    def logits(self, x: Tensor) -> Tensor:
        return self.linear((x - self.mean) / self.std)

    def stats(self) -> dict[str, float | int | bool]:
        return {"iterations": self.iterations, "objective": self.objective, "train_loss": self.train_loss,
                "train_top1": self.train_top1, "last_change": self.last_change, "grad_max": self.grad_max,
                "converged": self.converged, "fit_seconds": self.seconds}


class _Head(nn.Module):
    """A fitted probe in the model's call shape (``x -> (None, logits)``), so :func:`evaluate` scores it."""

    def __init__(self, fit: ProbeFit) -> None:
        super().__init__()
        self.fit = fit

    def forward(self, x: Tensor) -> tuple[None, Tensor]:
        return None, self.fit.logits(x)


def fit_linear_probe(
    features: Tensor, labels: Tensor, num_classes: int, *, epochs: int, lr: float, seed: int,
    weight_decay: float = PROBE_WEIGHT_DECAY,
) -> ProbeFit:
    """Fit a linear classifier on cached ``features [N, d]`` with full-batch L-BFGS (see the module docstring).

    In float64: the objective's changes near the optimum are below float32's resolution, where the strong-Wolfe
    search would stall. Stops after ``epochs`` iterations or when the gradient's largest entry is at most
    ``CONVERGED_GRAD`` (converged).
    """
    start = time.perf_counter()
    x = features.detach().double()
    y = labels.detach().long()
    mean, std = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    z = (x - mean) / std
    with torch.random.fork_rng(devices=[]):  # the trial's own RNG stream goes on untouched
        torch.manual_seed(seed)
        linear = nn.Linear(x.shape[1], num_classes, dtype=torch.float64)
    linear = linear.to(x.device)
    optimizer = torch.optim.LBFGS(linear.parameters(), lr=lr, max_iter=epochs, max_eval=2 * epochs + 25,
                                  tolerance_grad=CONVERGED_GRAD, tolerance_change=1e-12, history_size=20,
                                  line_search_fn="strong_wolfe")

    def objective() -> Tensor:
        return F.cross_entropy(linear(z), y) + 0.5 * weight_decay * linear.weight.pow(2).sum()

    def closure() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = objective()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
        final = float(closure().detach())  # and the gradient at the end, for the convergence check
    grad_max = max(float(p.grad.abs().max()) for p in linear.parameters())
    state = optimizer.state[linear.weight]
    before_last = state.get("prev_loss", final)  # the objective before L-BFGS's last iteration
    with torch.no_grad():
        logits = linear(z)
        train_loss = float(F.cross_entropy(logits, y))
        train_top1 = 100.0 * float((logits.argmax(1) == y).double().mean())
    linear.requires_grad_(False)
    return ProbeFit(mean, std, linear, iterations=int(state.get("n_iter", 0)), objective=final,
                    train_loss=train_loss, train_top1=train_top1,
                    last_change=max(before_last - final, 0.0) / max(abs(final), 1e-12), grad_max=grad_max,
                    converged=grad_max <= CONVERGED_GRAD, seconds=time.perf_counter() - start)


def score_probe(fit: ProbeFit, features: Tensor, labels: Tensor, device: torch.device) -> dict[str, float]:
    """``val_top1``, ``val_top5``, ``val_loss`` of the probe on cached features, as :func:`evaluate` scores a model."""
    loader = DataLoader(TensorDataset(features, labels), batch_size=_SCORE_BATCH, shuffle=False)
    return evaluate(_Head(fit), loader, device)


@dataclass
class ProtocolOutcome:
    """A protocol's scores (``val_*`` keys: what the trial reports as its last epoch's val_* or its test score)."""

    val: dict[str, float]
    test: dict[str, float] | None = None
    info: dict = field(default_factory=dict)  # evaluation.json's "protocol": how the protocol ran


def linear_probe(
    model: nn.Module, train_loader: Iterable, eval_loaders: dict[str, Iterable], device: torch.device, *,
    num_classes: int, epochs: int, lr: float, seed: int, amp: bool = False,
) -> ProtocolOutcome:
    """Freeze ``model.backbone``, cache its features once, fit a probe on the train ones, score ``eval_loaders``.

    ``train_loader`` yields ``(image, label)`` of the training images through the val transform;
    ``eval_loaders`` maps ``"val"`` (and ``"test"``) to loaders of the same shape.
    """
    backbone = model.backbone
    train_x, train_y = extract_features(backbone, train_loader, device, amp=amp)
    fit = fit_linear_probe(train_x, train_y, num_classes, epochs=epochs, lr=lr, seed=seed)
    scores = {}
    for name, loader in eval_loaders.items():
        x, y = extract_features(backbone, loader, device, amp=amp)
        scores[name] = score_probe(fit, x, y, device)
    info = {"eval_mode": "linear_probe", "train_images": int(train_y.shape[0]), "features": int(train_x.shape[1]),
            "weight_decay": PROBE_WEIGHT_DECAY, **fit.stats()}
    return ProtocolOutcome(scores["val"], scores.get("test"), info)


def two_stage(
    model: nn.Module, epoch_loader: Callable[[int], Iterable], eval_loaders: dict[str, Iterable],
    device: torch.device, *, epochs: int, steps_per_epoch: int, lr: float, optimizer: str, weight_decay: float,
    layer_decay: float | None, warmup_epochs: float, amp: bool = False, chunk: int | None = None,
) -> ProtocolOutcome:
    """Stage 2 of LaCViT: ``epochs`` of plain CE on the whole network, then score ``eval_loaders``.

    ``epoch_loader(k)`` gives stage 2's ``k``-th epoch of training batches (1-based; the trial seeds it).
    Raises :class:`.train.TrialStopped` as the trial's own epochs do (a diverged stage 2 ends the trial).
    """
    loss_fn = build_loss("ce", None, None, None)
    opt = build_optimizer(model, optimizer, lr, weight_decay, layer_decay)
    scheduler = build_scheduler(opt, epochs=epochs, steps_per_epoch=steps_per_epoch, warmup_epochs=warmup_epochs)
    train_losses = []
    for k in range(1, epochs + 1):
        out = train_one_epoch(model, epoch_loader(k), loss_fn, opt, scheduler, device, amp=amp, chunk=chunk)
        train_losses.append(out["train_loss"])
    scores = {name: evaluate(model, loader, device, amp=amp) for name, loader in eval_loaders.items()}
    info = {"eval_mode": "two_stage", "stage2_epochs": epochs, "stage2_lr": lr, "stage2_train_loss": train_losses}
    return ProtocolOutcome(scores["val"], scores.get("test"), info)


def run_protocol(
    config: TrialConfig, model: nn.Module, device: torch.device, *, num_classes: int, probe_loader: Iterable,
    stage2_loader: Callable[[int], Iterable], eval_loaders: dict[str, Iterable], steps_per_epoch: int, seed: int,
) -> ProtocolOutcome:
    """The ``config.eval_mode`` protocol (``linear_probe`` or ``two_stage``) on the trained ``model``.

    ``probe_loader``: the training images through the val transform; ``stage2_loader(k)``: stage 2's k-th epoch
    of training batches; ``eval_loaders``: ``"val"`` (and ``"test"``); ``seed``: the trial's init seed.
    """
    if config.eval_mode == "linear_probe":
        return linear_probe(model, probe_loader, eval_loaders, device, num_classes=num_classes,
                            epochs=config.probe_epochs, lr=config.probe_lr, seed=seed, amp=config.amp)
    if config.eval_mode == "two_stage":
        base = config.lr if config.stage2_lr is None else config.stage2_lr
        return two_stage(model, stage2_loader, eval_loaders, device, epochs=config.stage2_epochs,
                         steps_per_epoch=steps_per_epoch,
                         lr=scaled_lr(base, config.batch_size, config.lr_rule, config.lr_ref_batch),
                         optimizer=config.optimizer, weight_decay=config.weight_decay, layer_decay=config.layer_decay,
                         warmup_epochs=config.warmup_epochs, amp=config.amp, chunk=config.contrastive_chunk)
    raise ValueError(f"eval_mode {config.eval_mode!r} has no protocol to run")
