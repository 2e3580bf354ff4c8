"""Model, weights loading, optimiser groups, learning-rate rule and schedule."""

from __future__ import annotations

import itertools
import math

import pytest
import timm
import torch
from safetensors.torch import save_file

from tune_schane.errors import BadInput
from tune_schane.finetune.model import ContrastiveClassifier, build_model
from tune_schane.finetune.optim import build_optimizer, build_scheduler, param_groups, scaled_lr, warmup_cosine


@pytest.mark.parametrize("name", ["test_vit", "test_resnet", "test_convnext"])
def test_forward_shapes_and_unit_norm(name):
    model = build_model(name, num_classes=7, img_size=32, proj_dim=16)
    z, logits = model(torch.randn(4, 3, 32, 32))
    assert z.shape == (4, 16) and logits.shape == (4, 7)
    torch.testing.assert_close(z.norm(dim=1), torch.ones(4))


def test_detach_classifier_keeps_ce_out_of_the_backbone():
    torch.manual_seed(0)
    model = build_model("test_vit", num_classes=3, img_size=32)
    _, logits = model(torch.randn(2, 3, 32, 32), detach_classifier=True)
    logits.sum().backward()
    assert model.classifier.weight.grad is not None
    assert all(p.grad is None for p in model.backbone.parameters())


def _source_backbone(name="test_vit", img_size=32):
    torch.manual_seed(1)
    kwargs = {"img_size": img_size} if "vit" in name else {}
    return timm.create_model(name, pretrained=False, num_classes=5, **kwargs)


def test_weights_from_local_safetensors_load_into_the_backbone(tmp_path):
    source = _source_backbone()
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))  # head.* included: ignored
    model = build_model("test_vit", num_classes=3, img_size=32, weights=str(path))
    for key, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[key])


def test_weights_from_torch_file_with_wrapper_prefix(tmp_path):
    source = _source_backbone("test_resnet")
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    model = build_model("test_resnet", num_classes=3, weights=str(path))
    for key, value in model.backbone.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[key])


def test_vit_weights_at_another_input_size_are_resampled(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in _source_backbone(img_size=64).state_dict().items()}, str(path))
    model = build_model("test_vit", num_classes=3, img_size=32, weights=str(path))
    assert model(torch.randn(1, 3, 32, 32))[1].shape == (1, 3)


def test_torch_weights_are_loaded_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {"x": torch.zeros(1)}, "payload": ContrastiveClassifier}, path)  # a class: not allowed
    with pytest.raises(BadInput, match="not a readable state dict"):
        build_model("test_vit", num_classes=3, img_size=32, weights=str(path))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_text("not a tensor file"), "not a readable state dict"),
        (lambda p: save_file({"unrelated": torch.zeros(2)}, str(p)), "lacks"),
    ],
)
def test_bad_weight_files_are_refused(tmp_path, make, message):
    path = tmp_path / "w.safetensors"
    make(path)
    with pytest.raises(BadInput, match=message):
        build_model("test_vit", num_classes=3, img_size=32, weights=str(path))


def test_weights_with_wrong_shapes_are_refused(tmp_path):
    path = tmp_path / "w.safetensors"
    other = timm.create_model("test_vit2", num_classes=0)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    with pytest.raises(BadInput, match="weights"):
        build_model("test_vit", num_classes=3, img_size=32, weights=str(path))


def test_unknown_model_and_unreachable_hub_are_bad_input(monkeypatch):
    with pytest.raises(BadInput, match="unknown timm model"):
        build_model("no_such_net", num_classes=3)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(BadInput, match="pretrained weights not reachable"):
        build_model("resnet18.a1_in1k", num_classes=3, pretrained=True)


@pytest.mark.parametrize(("rule", "expected"), [("none", 1e-3), ("linear", 0.5e-3), ("sqrt", 1e-3 / math.sqrt(2))])
def test_lr_rules(rule, expected):
    assert scaled_lr(1e-3, 128, rule, 256) == pytest.approx(expected)
    with pytest.raises(BadInput):
        scaled_lr(1e-3, 128, "cubic", 256)


def test_no_weight_decay_on_biases_norms_and_tokens():
    model = build_model("test_vit", num_classes=3, img_size=32)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = param_groups(model, 1e-3, 0.05, None)
    assert sum(len(g["params"]) for g in groups) == len(names)
    for group in groups:
        for p in group["params"]:
            no_decay = p.ndim <= 1 or names[id(p)].endswith(("pos_embed", "cls_token"))
            assert (group["weight_decay"] == 0.0) == no_decay, names[id(p)]


def test_layer_decay_scales_early_layers_and_keeps_heads_at_full_lr():
    model = build_model("test_vit", num_classes=3, img_size=32)
    groups = param_groups(model, 1e-3, 0.05, 0.5)
    names = {id(p): n for n, p in model.named_parameters()}
    lr_of = {names[id(p)]: g["lr"] for g in groups for p in g["params"]}
    assert lr_of["classifier.weight"] == pytest.approx(1e-3)
    assert lr_of["backbone.patch_embed.proj.weight"] < lr_of["backbone.blocks.0.attn.qkv.weight"] < 1e-3
    with pytest.raises(BadInput, match="layer_decay"):
        param_groups(torch.nn.Linear(2, 2), 1e-3, 0.05, 0.5)


def test_warmup_then_cosine_to_zero():
    model = build_model("test_resnet", num_classes=3)
    opt = build_optimizer(model, "adamw", 1.0, 0.0)
    sched = build_scheduler(opt, epochs=2, steps_per_epoch=10, warmup_epochs=0.5)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:5] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert all(a >= b for a, b in itertools.pairwise(lrs[4:]))
    assert warmup_cosine(20, 20, 5) == pytest.approx(0.0)
    with pytest.raises(BadInput):
        build_optimizer(model, "lamb", 1.0, 0.0)
