"""The model of a trial: a timm backbone, a projection head for the contrastive loss, a linear classifier.

DESIGN.md section 2. The backbone is created with ``num_classes=0`` so it returns pooled features of
width ``d``; the projection head is the SupCon MLP ``d -> d -> proj_dim`` followed by L2
normalisation; the classifier is one linear layer on the backbone features (not on the projection),
so CE and the contrastive term share the backbone but not their heads.

Pretrained weights come from timm's hub when asked (``pretrained=True``, needs the network or a warm
Hugging Face cache) or from a local file (``weights:``): a ``.safetensors`` file, or a ``.pt``/``.pth``
file read with ``torch.load(weights_only=True)`` so that a foreign checkpoint cannot run code.
A local file must cover every backbone tensor with the right shape; classifier-head tensors of the
source model (``head.*``, ``fc.*``, ``classifier.*``) are ignored because our heads are new.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import BadInput

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
    backbone = _create_backbone(timm, name, pretrained=pretrained, img_size=img_size, drop_path_rate=drop_path_rate)
    if weights:
        load_backbone_weights(backbone, weights)
    return ContrastiveClassifier(backbone, backbone.num_features, num_classes, proj_dim)


def _create_backbone(timm, name: str, *, pretrained: bool, img_size: int | None, drop_path_rate: float) -> nn.Module:
    kwargs: dict = {"num_classes": 0}
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    if img_size is not None:
        kwargs["img_size"] = img_size  # ViT-like models fix their position embeddings to the input size
    try:
        try:
            return timm.create_model(name, pretrained=pretrained, **kwargs)
        except TypeError as exc:
            if "img_size" not in str(exc):
                raise
            kwargs.pop("img_size")  # convolutional nets take any input size and refuse the argument
            return timm.create_model(name, pretrained=pretrained, **kwargs)
    except TypeError as exc:
        raise BadInput(f"model {name!r}: {exc}") from None
    except Exception as exc:
        if not pretrained:
            raise
        raise BadInput(
            f"model {name!r}: pretrained weights not reachable ({type(exc).__name__}); "
            "connect to the hub, warm the HF cache, or give weights: PATH to a local file"
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


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> None:
    """Load a local state dict into the backbone: every backbone tensor present with its shape."""
    state = {_strip_wrapper(k): v for k, v in read_state_dict(path).items()}
    state = {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIXES)}
    own = backbone.state_dict()
    if "pos_embed" in own and "pos_embed" in state and state["pos_embed"].shape != own["pos_embed"].shape:
        state["pos_embed"] = _resample_pos_embed(backbone, state["pos_embed"])
    missing = [k for k in own if k not in state]
    if missing:
        raise BadInput(f"weights: {path} lacks {len(missing)} backbone tensors (first: {missing[0]!r})")
    wrong = [k for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if wrong:
        k = wrong[0]
        got, need = tuple(state[k].shape), tuple(own[k].shape)
        raise BadInput(f"weights: {path}: {k!r} has shape {got}, the model needs {need}")
    backbone.load_state_dict({k: state[k] for k in own}, strict=True)


def _resample_pos_embed(backbone: nn.Module, pos_embed: torch.Tensor) -> torch.Tensor:
    """ViT weights trained at another input size: interpolate the position grid, as timm's hub loader does."""
    from timm.layers import resample_abs_pos_embed

    grid = getattr(getattr(backbone, "patch_embed", None), "grid_size", None)
    prefix = 0 if getattr(backbone, "no_embed_class", False) else getattr(backbone, "num_prefix_tokens", 1)
    if grid is None:
        return pos_embed
    return resample_abs_pos_embed(pos_embed, new_size=list(grid), num_prefix_tokens=prefix)


def _strip_wrapper(key: str) -> str:
    for prefix in _WRAPPER_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key
