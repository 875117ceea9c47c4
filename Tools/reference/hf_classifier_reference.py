#!/usr/bin/env python3
"""Hugging Face image-classification fixture: a tiny ViTForImageClassification and
SwinForImageClassification, their weights under transformers' names and their logits.

Writes
    Tests/ModelsTests/Fixtures/hf_classifier_tiny.bin   (MIMF)
which Tests/ModelsTests/HFClassifierExportTests.swift loads: it puts the weights into our
fine-tuning classifier (an MAE encoder pooled by its class token; a SimMIM encoder pooled by the
mean) by the export's names, compares our logits with transformers', and checks that an export
holds exactly transformers' tensor names, shapes and values.

Regenerate from the repository root (deterministic: fixed seeds):

    pip install -r Tools/reference/requirements.txt     # torch + transformers
    python3 Tools/reference/hf_classifier_reference.py

Check that transformers loads directories the Swift code exported (`mimserve export-hf
--format hf` of a fine-tuning checkpoint, or the test with HF_EXPORT_DIR set, which writes
DIR/vit_cls and DIR/swin_cls from the fixture's weights): AutoModelForImageClassification loads
each with no missing, unexpected or mismatched keys, holds the fixture's weights and gives the
fixture's logits:

    python3 Tools/reference/hf_classifier_reference.py --check-export DIR

Models (3 labels; transformers' init with seed 0, then made non-trivial: Xavier-uniform linear
weights, LayerNorm weights 1 + 0.1·N(0,1), every bias 0.05·N(0,1), relative-position tables and
the class token 0.3·N(0,1)):
    vit   ViTConfig(image 32, patch 4, hidden 32, 2 layers, 2 heads, intermediate 128, eps 1e-6);
          position_embeddings set to the fixed 2-D sin-cos table with a zero class row, which is
          what our MAE holds (docs/methods/common.md, B2). It classifies the class token after
          the final LayerNorm.
    swin  SwinConfig(image 32, patch 2, embed 8, depths (2, 2, 2), heads (2, 2, 4), window 4,
          mlp 4, eps 1e-5): it classifies the mean of the last stage's tokens after the final
          LayerNorm.

Tensors (B = 2):
    <kind>.images (2,3,32,32)     inputs, N(0,1)
    <kind>.param.<hf name>        every tensor of the model's model.safetensors (save_pretrained)
    <kind>.logits (2,3)           the classifier's output, float64 with band.<kind>.logits
"""

import json
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file
from transformers import AutoModelForImageClassification, SwinConfig, SwinForImageClassification, ViTConfig, \
    ViTForImageClassification

sys.dont_write_bytecode = True  # keep Tools/reference free of __pycache__
from fixture_io import FixtureWriter, Realisation, banded, export_cli, make_nontrivial  # noqa: E402
from hf_vitmae_reference import read_mimf, sincos_2d  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "Tests/ModelsTests/Fixtures/hf_classifier_tiny.bin"
SEED = 0
BATCH = 2
LABELS = 3
KINDS = ("vit", "swin")


def config(kind: str):
    labels = {"id2label": {i: f"LABEL_{i}" for i in range(LABELS)}, "label2id": {f"LABEL_{i}": i for i in range(LABELS)}}
    if kind == "vit":
        return ViTConfig(image_size=32, patch_size=4, num_channels=3, hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=2, intermediate_size=128, hidden_act="gelu", layer_norm_eps=1e-6,
                         qkv_bias=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, **labels)
    return SwinConfig(image_size=32, patch_size=2, num_channels=3, embed_dim=8, depths=[2, 2, 2], num_heads=[2, 2, 4],
                      window_size=4, mlp_ratio=4.0, qkv_bias=True, hidden_act="gelu", use_absolute_embeddings=False,
                      layer_norm_eps=1e-5, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                      drop_path_rate=0.0, **labels)


def build_model(kind: str) -> nn.Module:
    torch.manual_seed(SEED)
    model = (ViTForImageClassification if kind == "vit" else SwinForImageClassification)(config(kind))
    make_nontrivial(model, torch.Generator().manual_seed(SEED + 1), tables=("relative_position_bias_table", "cls_token"))
    with torch.no_grad():
        if kind == "vit":
            model.vit.embeddings.position_embeddings.copy_(sincos_2d(8, 32))
    return model.eval()


def images(kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(SEED + 2 + KINDS.index(kind))
    return torch.randn(BATCH, 3, 32, 32, dtype=torch.float32, generator=g)


def saved_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors as save_pretrained writes them: transformers 5.x renames modules in memory
    (`attention.q_proj`, `vit.layers`) but saves the names every release reads
    (`attention.attention.query`, `vit.encoder.layer`), and those are what an export must hold."""
    with tempfile.TemporaryDirectory() as d:
        model.save_pretrained(d)
        return load_file(str(Path(d) / "model.safetensors"))


def logits(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(pixel_values=pixel_values).logits


def outputs(real: Realisation) -> FixtureWriter:
    fx = FixtureWriter()
    for kind in KINDS:
        dtype = torch.get_default_dtype()
        torch.set_default_dtype(torch.float32)  # transformers' own init draws what build_model leaves
        model = build_model(kind)
        torch.set_default_dtype(dtype)
        # The weights as built (float32), before a realisation converts or nudges them.
        for name, t in sorted(saved_tensors(model).items()):
            fx.add(f"{kind}.param.{name}", t)
        model = real.weights(model)
        x = real.input(images(kind))
        fx.add(f"{kind}.images", x)
        fx.add(f"{kind}.logits", logits(model, x))
    return fx


def generate() -> None:
    fx = banded(outputs, inputs=tuple(f"{k}.{part}" for k in KINDS for part in ("images", "param.")))
    size = fx.write(FIXTURE)
    print(f"wrote {FIXTURE.name} ({size} B); logits vit {fx['vit.logits'].ravel()[:3]}, swin {fx['swin.logits'].ravel()[:3]}")


def check_export(directory: Path) -> None:
    fx = read_mimf(FIXTURE)
    for kind, sub in (("vit", "vit_cls"), ("swin", "swin_cls")):
        path = directory / sub
        model, info = AutoModelForImageClassification.from_pretrained(str(path), output_loading_info=True)
        problems = {k: v for k, v in info.items() if v}
        assert not problems, f"{path}: loading problems {problems}"
        want = "ViTForImageClassification" if kind == "vit" else "SwinForImageClassification"
        assert type(model).__name__ == want, f"{path}: built {type(model).__name__}, expected {want}"
        model = model.eval()
        saved = json.loads((path / "config.json").read_text())
        assert saved["architectures"] == [want] and len(saved["id2label"]) == LABELS, saved
        prefix = f"{kind}.param."
        weights = {k[len(prefix):]: v for k, v in fx.items() if k.startswith(prefix)}
        written = load_file(str(path / "model.safetensors"))
        assert written.keys() == weights.keys(), f"{path}: names differ: {sorted(written.keys() ^ weights.keys())}"
        worst = max((written[k] - weights[k].reshape(written[k].shape)).abs().max().item() for k in written)
        state = model.state_dict()
        out = logits(model, fx[f"{kind}.images"])
        diff = (out - fx[f"{kind}.logits"].reshape(out.shape)).abs().max().item()
        print(f"{sub}: {type(model).__name__}, {len(state)} tensors, max |Δweight| {worst:.3g}, logits max |Δ| {diff:.3g}")
        assert worst == 0, f"{path}: weights differ from the fixture's"
        assert diff <= 1e-5 * max(fx[f"{kind}.logits"].abs().max().item(), 1.0), f"{path}: logits differ from the fixture"
    print(f"OK: transformers loads both classifiers in {directory}")


def main() -> None:
    export_cli(__doc__, generate, check_export, loads_with="AutoModelForImageClassification.from_pretrained")


if __name__ == "__main__":
    main()
