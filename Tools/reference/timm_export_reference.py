#!/usr/bin/env python3
"""timm encoder fixture: a tiny timm VisionTransformer and SwinTransformer, their weights under
timm's names and their forward_features on fixed images.

Writes
    Tests/ModelsTests/Fixtures/timm_tiny.bin   (MIMF, ~360 KB)
which Tests/ModelsTests/TimmExportTests.swift loads: it puts the weights into our MAE and SimMIM
encoders by the inverse of the export mapping, compares our encoder features with timm's, and
checks that an export holds exactly timm's tensor names and shapes.

Regenerate from the repository root (deterministic: fixed seeds):

    pip install -r Tools/reference/requirements.txt     # torch, numpy, transformers
    pip install timm --no-deps                          # see the note on torchvision below
    python3 Tools/reference/timm_export_reference.py

Check that timm loads directories the Swift code exported (`mimserve export-hf --format timm`, or
the test with TIMM_EXPORT_DIR set, which writes DIR/vit and DIR/swin from the fixture's weights):
`timm.create_model("local-dir:DIR/vit", pretrained=True)` with no missing or unexpected keys,
and the same forward_features as the fixture:

    python3 Tools/reference/timm_export_reference.py --check-export DIR

Models (timm's own init with seed 0, then made non-trivial as in hf_vitmae_reference.py:
LayerNorm weights 1 + 0.1·N(0,1), biases 0.05·N(0,1), relative-position tables and the class
token 0.3·N(0,1)):
    vit   vit_base_patch16_224 with img_size 32, patch 4, embed 32, depth 2, 2 heads, mlp 4
          (LayerNorm eps 1e-6); pos_embed set to the fixed 2-D sin-cos table with a zero class
          row, which is what our MAE holds (docs/methods/common.md, B2).
    swin  swin_base_patch4_window7_224 with img_size 32, patch 2, window 4, embed 8,
          depths (2, 2, 2), heads (2, 2, 4), mlp 4 (eps 1e-5): stage grids 16, 8, 4, so the
          last stage's window covers its whole map and does not shift.

Fine-tuned classifiers (`--format timm` of a fine-tuning checkpoint): the same encoders with a
3-class head (weights and bias 0.3·N(0,1), seed 5), as timm builds them for our poolings:
    vit_token  global_pool "token" (the class token after `norm`)
    vit_avg    global_pool "avg", fc_norm False (the mean of the patch tokens after `norm`)
    swin_avg   global_pool "avg" (the mean over the last map after `norm`)

Tensors (B = 2):
    vit.images (2,3,32,32), swin.images (2,3,32,32)   inputs, N(0,1)
    vit.param.<timm name>, swin.param.<timm name>     every tensor of timm's state_dict except
                                                      its non-persistent buffers
    vit.features (2,65,32)    forward_features: class token then 64 patch tokens, after `norm`
    swin.features (2,4,4,32)  forward_features: NHWC after `norm`
    <classifier>.param.<head name>   the head: head.weight/bias (ViT), head.fc.weight/bias (Swin)
    <classifier>.logits (2,3)        the classifier's forward on vit.images / swin.images
Each *.features is the float64 value with band.<name> (fixture_io.banded).

timm imports torchvision's data utilities (and torchvision.ops for a batch-norm variant) when it
is imported, though neither model here uses them. Where no torchvision matching the installed
torch can be installed, `stub_torchvision` gives the import empty placeholder modules; nothing of
torchvision runs. With a matching torchvision installed the stub is not used.
"""

import enum
import importlib.util
import sys
import types
from pathlib import Path

import torch
import torch.nn as nn

sys.dont_write_bytecode = True  # keep Tools/reference free of __pycache__
from fixture_io import FixtureWriter, Realisation, banded, export_cli  # noqa: E402
from hf_vitmae_reference import read_mimf, sincos_2d  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "Tests/ModelsTests/Fixtures/timm_tiny.bin"
SEED = 0
BATCH = 2

VIT_ARGS = dict(img_size=32, patch_size=4, embed_dim=32, depth=2, num_heads=2, mlp_ratio=4.0)
SWIN_ARGS = dict(img_size=32, patch_size=2, window_size=4, embed_dim=8, depths=(2, 2, 2), num_heads=(2, 2, 4),
                 mlp_ratio=4.0)


def stub_torchvision() -> None:
    if importlib.util.find_spec("torchvision") is not None:
        return

    class Placeholder(types.ModuleType):
        def __getattr__(self, name):
            if name.startswith("__"):
                raise AttributeError(name)
            value = type(name, (), {})
            setattr(self, name, value)
            return value

    names = ["torchvision", "torchvision.ops", "torchvision.ops.misc", "torchvision.transforms",
             "torchvision.transforms.functional", "torchvision.datasets", "torchvision.models",
             "torchvision.models.feature_extraction", "torchvision.utils"]
    for name in names:
        sys.modules[name] = Placeholder(name)
    for name in names[1:]:
        parent, child = name.rsplit(".", 1)
        setattr(sys.modules[parent], child, sys.modules[name])
    sys.modules["torchvision.transforms.functional"].InterpolationMode = enum.Enum(
        "InterpolationMode", "NEAREST BILINEAR BICUBIC BOX HAMMING LANCZOS NEAREST_EXACT")


stub_torchvision()
import timm  # noqa: E402


def perturb(model: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.LayerNorm):
                module.weight.copy_(1 + 0.1 * torch.randn(module.weight.shape, dtype=torch.float32, generator=g))
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.copy_(0.05 * torch.randn(p.shape, dtype=torch.float32, generator=g))
            elif name.endswith("relative_position_bias_table") or name == "cls_token":
                p.copy_(0.3 * torch.randn(p.shape, dtype=torch.float32, generator=g))


def build(kind: str) -> nn.Module:
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)  # the same init draws in every realisation
    try:
        torch.manual_seed(SEED)
        if kind == "vit":
            model = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0, **VIT_ARGS)
            perturb(model, SEED + 1)
            with torch.no_grad():
                model.pos_embed.copy_(sincos_2d(VIT_ARGS["img_size"] // VIT_ARGS["patch_size"], VIT_ARGS["embed_dim"]))
        else:
            model = timm.create_model("swin_base_patch4_window7_224", pretrained=False, num_classes=0, **SWIN_ARGS)
            perturb(model, SEED + 2)
    finally:
        torch.set_default_dtype(dtype)
    return model.eval()


CLASSIFIERS = {"vit_token": ("vit", dict(global_pool="token")),
               "vit_avg": ("vit", dict(global_pool="avg", fc_norm=False)),
               "swin_avg": ("swin", dict(global_pool="avg"))}
CLASSES = 3


def build_classifier(name: str) -> nn.Module:
    """The encoder of `build(kind)` under a seeded head, built as timm builds a classifier."""
    kind, args = CLASSIFIERS[name]
    encoder = build(kind)
    architecture = "vit_base_patch16_224" if kind == "vit" else "swin_base_patch4_window7_224"
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        model = timm.create_model(architecture, pretrained=False, num_classes=CLASSES,
                                  **(VIT_ARGS if kind == "vit" else SWIN_ARGS), **args)
    finally:
        torch.set_default_dtype(dtype)
    missing, unexpected = model.load_state_dict(encoder.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("head.") for k in missing), (missing, unexpected)
    g = torch.Generator().manual_seed(SEED + 5)
    with torch.no_grad():
        for k in missing:
            p = model.get_parameter(k)
            p.copy_(0.3 * torch.randn(p.shape, dtype=torch.float32, generator=g))
    return model.eval()


def head_names(model: nn.Module):
    return [k for k in model.state_dict() if k.startswith("head.")]


def images(kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(SEED + (3 if kind == "vit" else 4))
    return torch.randn(BATCH, 3, 32, 32, dtype=torch.float32, generator=g)


def outputs(real: Realisation) -> FixtureWriter:
    fx = FixtureWriter()
    for kind in ("vit", "swin"):
        model = build(kind)
        x = real.input(images(kind))
        fx.add(f"{kind}.images", x)
        for name, t in model.state_dict().items():
            fx.add(f"{kind}.param.{name}", t)
        model = real.weights(model)
        with torch.no_grad():
            fx.add(f"{kind}.features", model.forward_features(x))
    for name, (kind, _) in CLASSIFIERS.items():
        model = build_classifier(name)
        x = real.input(images(kind))
        for k in head_names(model):
            fx.add(f"{name}.param.{k}", model.state_dict()[k])
        model = real.weights(model)
        with torch.no_grad():
            fx.add(f"{name}.logits", model(x))
    return fx


def generate() -> None:
    fx = banded(outputs, inputs=("vit.images", "vit.param.", "swin.images", "swin.param.")
                + tuple(f"{name}.param." for name in CLASSIFIERS))
    size = fx.write(FIXTURE)
    print(f"wrote {FIXTURE.name} ({size} B)")


def check_export(directory: Path) -> None:
    fx = read_mimf(FIXTURE)
    for kind in ("vit", "swin"):
        model = timm.create_model(f"local-dir:{directory / kind}", pretrained=True).eval()
        reference = build(kind)
        ours, theirs = model.state_dict(), reference.state_dict()
        assert ours.keys() == theirs.keys(), f"{kind}: keys differ: {ours.keys() ^ theirs.keys()}"
        worst = max((ours[k] - theirs[k]).abs().max().item() for k in ours)
        with torch.no_grad():
            features = model.forward_features(fx[f"{kind}.images"])
        diff = (features - fx[f"{kind}.features"]).abs().max().item()
        print(f"{kind}: timm loads it ({len(ours)} tensors, max |Δweight| {worst:.3g}); forward_features max |Δ| {diff:.3g}")
        assert worst == 0 and diff <= 1e-5, f"{kind}: the export differs from the fixture"
    for name, (kind, _) in CLASSIFIERS.items():
        if not (directory / name).exists():
            continue
        model = timm.create_model(f"local-dir:{directory / name}", pretrained=True).eval()
        reference = build_classifier(name)
        ours, theirs = model.state_dict(), reference.state_dict()
        assert ours.keys() == theirs.keys(), f"{name}: keys differ: {ours.keys() ^ theirs.keys()}"
        worst = max((ours[k] - theirs[k]).abs().max().item() for k in ours)
        with torch.no_grad():
            logits = model(fx[f"{kind}.images"])
        diff = (logits - fx[f"{name}.logits"]).abs().max().item()
        print(f"{name}: timm loads it ({len(ours)} tensors, max |Δweight| {worst:.3g}); logits max |Δ| {diff:.3g}")
        assert worst == 0 and diff <= 1e-5, f"{name}: the export differs from the fixture"
    print("OK")


def main() -> None:
    export_cli(__doc__, generate, check_export, loads_with="timm.create_model('local-dir:…'), as DIR/vit and DIR/swin")


if __name__ == "__main__":
    main()
