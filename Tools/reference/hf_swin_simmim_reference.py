#!/usr/bin/env python3
"""Hugging Face SwinForMaskedImageModeling interop fixture: a tiny random SimMIM saved by transformers.

Writes
    Tests/ModelsTests/Fixtures/hf_swin_simmim_tiny/config.json        (save_pretrained)
    Tests/ModelsTests/Fixtures/hf_swin_simmim_tiny/model.safetensors  (save_pretrained, float32)
    Tests/ModelsTests/Fixtures/hf_swin_simmim_tiny.bin                (MIMF)
which Tests/ModelsTests/HFSwinSimMIMTests.swift loads with HFSwinSimMIM.load and compares against.

Regenerate from the repository root (deterministic: fixed seeds, one thread):

    pip install -r Tools/reference/requirements.txt     # torch + transformers
    python3 Tools/reference/hf_swin_simmim_reference.py

Check that transformers loads a directory exported by the Swift code (`mimserve export-hf` of a
SimMIM model, or the test with HF_EXPORT_DIR set, which exports the fixture model to DIR): no
missing, unexpected or mismatched keys, the fixture's weights, and the fixture's loss and
reconstruction on the fixture's inputs:

    python3 Tools/reference/hf_swin_simmim_reference.py --check-export DIR

The model is SwinConfig(image 32, patch 2, embed 8, depths (2, 2, 2), heads (2, 2, 4), window 4,
mlp 4, eps 1e-5, encoder_stride 8): stage grids 16, 8, 4, so the last stage's window covers its
map and does not shift. Randomly initialised with seed 0, then made non-trivial: Xavier-uniform
linear weights, LayerNorm weights 1 + 0.1·N(0,1), every bias 0.05·N(0,1), relative-position
tables and the mask token 0.3·N(0,1) (transformers leaves the mask token at zero).

Tensors in hf_swin_simmim_tiny.bin (B = 2; 8-px mask units on a 4×4 grid, 60% masked):
    pixel_values (2,3,32,32)   input, N(0,1)
    unit_mask (2,4,4)          1 = masked (10 of 16 per sample)
    latent (2,16,32)           swin last_hidden_state (after swin.layernorm)
    reconstruction (2,3,32,32) decoder output after the pixel shuffle
    loss ()                    L1 on masked pixels (HF's masked_im_loss)
All from model(pixel_values, bool_masked_pos=unit_mask upsampled to the 16×16 tokens) in eval
mode. Every output record comes with band.<name> (fixture_io.banded).
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors import safe_open
from transformers import SwinConfig, SwinForMaskedImageModeling

sys.dont_write_bytecode = True  # keep Tools/reference free of __pycache__
from fixture_io import FixtureWriter, Realisation, banded, export_cli, make_nontrivial  # noqa: E402
from hf_vitmae_reference import read_mimf  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "Tests/ModelsTests/Fixtures"
MODEL_DIR = FIXTURES / "hf_swin_simmim_tiny"
FIXTURE = FIXTURES / "hf_swin_simmim_tiny.bin"
SEED = 0
BATCH = 2
UNITS = 4       # unit grid side (8-px units on 32 px)
TOKENS_PER_UNIT = 4  # 8 px / patch 2


def tiny_config() -> SwinConfig:
    return SwinConfig(
        image_size=32, patch_size=2, num_channels=3, embed_dim=8, depths=[2, 2, 2], num_heads=[2, 2, 4],
        window_size=4, mlp_ratio=4.0, qkv_bias=True, hidden_act="gelu", use_absolute_embeddings=False,
        layer_norm_eps=1e-5, encoder_stride=8, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        drop_path_rate=0.0,
    )


def build_model() -> SwinForMaskedImageModeling:
    torch.manual_seed(SEED)
    model = SwinForMaskedImageModeling(tiny_config())
    make_nontrivial(model, torch.Generator().manual_seed(SEED + 1), tables=("relative_position_bias_table", "mask_token"))
    return model.eval()


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(SEED + 2)
    pixel_values = torch.randn(BATCH, 3, 32, 32, dtype=torch.float32, generator=g)
    masked = int(UNITS * UNITS * 0.6)
    order = torch.stack([torch.randperm(UNITS * UNITS, generator=g) for _ in range(BATCH)])
    unit_mask = (order < masked).float().reshape(BATCH, UNITS, UNITS)
    return pixel_values, unit_mask


def token_mask(unit_mask: torch.Tensor) -> torch.Tensor:
    up = unit_mask.repeat_interleave(TOKENS_PER_UNIT, 1).repeat_interleave(TOKENS_PER_UNIT, 2)
    return up.reshape(unit_mask.shape[0], -1).bool()


def run(model: SwinForMaskedImageModeling, pixel_values, unit_mask) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        bool_masked_pos = token_mask(unit_mask)
        out = model(pixel_values, bool_masked_pos=bool_masked_pos)
        latent = model.swin(pixel_values, bool_masked_pos=bool_masked_pos).last_hidden_state
    return {"latent": latent, "reconstruction": out.reconstruction, "loss": out.loss}


def load_checked(directory: Path) -> SwinForMaskedImageModeling:
    model, info = SwinForMaskedImageModeling.from_pretrained(str(directory), output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    assert not problems, f"{directory}: loading problems {problems}"
    return model.eval()


def outputs(real: Realisation) -> FixtureWriter:
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)  # transformers' own init draws what build_model leaves
    model = real.weights(build_model())
    torch.set_default_dtype(dtype)
    pixel_values, unit_mask = inputs()
    pixel_values = real.input(pixel_values)
    fx = FixtureWriter()
    fx.add("pixel_values", pixel_values)
    fx.add("unit_mask", unit_mask)
    for k, v in run(model, pixel_values, real.input(unit_mask)).items():
        fx.add(k, v)
    return fx


def generate() -> None:
    model = build_model()
    pixel_values, unit_mask = inputs()
    result = run(model, pixel_values, unit_mask)
    shutil.rmtree(MODEL_DIR, ignore_errors=True)
    model.save_pretrained(str(MODEL_DIR))
    extra = sorted(p.name for p in MODEL_DIR.iterdir() if p.name not in ("config.json", "model.safetensors"))
    assert not extra, f"unexpected files from save_pretrained: {extra}"
    with safe_open(str(MODEL_DIR / "model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
        assert dtypes == {"F32"}, f"dtypes {dtypes}"
        print(f"{len(list(f.keys()))} tensors, metadata {f.metadata()}")
    reloaded = run(load_checked(MODEL_DIR), pixel_values, unit_mask)
    for k, v in result.items():
        assert torch.equal(v, reloaded[k]), f"{k} differs after save/load"
    fx = banded(outputs, inputs=("pixel_values", "unit_mask"))
    size = fx.write(FIXTURE)
    dir_size = sum(p.stat().st_size for p in MODEL_DIR.iterdir())
    print(f"loss {fx['loss']:.8f} (float64); wrote {FIXTURE.name} ({size} B), {MODEL_DIR.name}/ ({dir_size} B)")


def check_export(directory: Path) -> None:
    exported = load_checked(directory)
    reference = load_checked(MODEL_DIR)
    config = json.loads((directory / "config.json").read_text())
    ref_config = json.loads((MODEL_DIR / "config.json").read_text())
    for key in ("image_size", "patch_size", "embed_dim", "depths", "num_heads", "window_size", "mlp_ratio",
                "layer_norm_eps", "encoder_stride", "model_type", "use_absolute_embeddings", "qkv_bias", "hidden_act"):
        assert config.get(key) == ref_config[key], f"config.json {key}: {config.get(key)!r}, fixture has {ref_config[key]!r}"
    ours, theirs = exported.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    worst = max((ours[k] - theirs[k]).abs().max().item() for k in ours)
    print(f"no missing/unexpected/mismatched keys; {len(ours)} tensors, max |Δweight| {worst:.3g}")
    fx = read_mimf(FIXTURE)
    result = run(exported, fx["pixel_values"], fx["unit_mask"])
    for k in ("latent", "reconstruction", "loss"):
        diff = (result[k] - fx[k].reshape(result[k].shape)).abs().max().item()
        print(f"{k}: max |Δ| {diff:.3g}")
        assert diff <= 1e-5 * max(fx[k].abs().max().item(), 1.0), f"{k} differs from the fixture"
    print(f"OK: transformers loads {directory}; loss {result['loss'].item():.8f} (fixture {fx['loss'].item():.8f})")


def main() -> None:
    export_cli(__doc__, generate, check_export, loads_with='SwinForMaskedImageModeling.from_pretrained')


if __name__ == "__main__":
    main()
