#!/usr/bin/env python3
"""Hugging Face ViTMAEForPreTraining interop fixture: a tiny random model saved by transformers.

Writes
    Tests/ModelsTests/Fixtures/hf_vitmae_tiny/config.json        (save_pretrained)
    Tests/ModelsTests/Fixtures/hf_vitmae_tiny/model.safetensors  (save_pretrained, float32)
    Tests/ModelsTests/Fixtures/hf_vitmae_tiny.bin                (MIMF, ~50 KB)
which Tests/ModelsTests/HFInteropTests.swift loads with HFViTMAE.load and compares against.

Regenerate from the repository root (deterministic: fixed seed, one thread):

    pip install -r Tools/reference/requirements.txt     # torch + transformers
    python3 Tools/reference/hf_vitmae_reference.py

Check that transformers loads a directory exported by the Swift code (HFViTMAE.export, or
`mimserve export-hf`): no missing, unexpected or mismatched keys, the same weights as the fixture
directory and the same loss and logits on the fixture's inputs:

    python3 Tools/reference/hf_vitmae_reference.py --check-export DIR

The model is ViTMAEConfig(image 32, patch 4, hidden 64, 2 layers, 4 heads, intermediate 256,
decoder 32 wide, 1 layer, 4 heads, intermediate 128, mask_ratio 0.75, norm_pix_loss, eps 1e-12),
randomly initialised with seed 0 and then made non-trivial: Xavier-uniform linear weights (so
attention is far from uniform), LayerNorm weights 1 + 0.1·N(0,1), every bias 0.05·N(0,1), class
and mask tokens 0.3·N(0,1). The two fixed sin-cos tables are set explicitly to the original MAE
layout (docs/methods/common.md, B2: column part first): transformers 5.x leaves them, and the mask token, at
zero in a freshly constructed model. Note transformers 5.x's save_pretrained names the decoder
layers `decoder.decoder_encoder.layer.i.*` (hub files from 4.x say `decoder.decoder_layers.i.*`);
both forms load in transformers 5.x and in HFViTMAE.load.

Tensors in hf_vitmae_tiny.bin (B = 2, L = 64 tokens, 16 kept):
    pixel_values (2,3,32,32)  input, N(0,1)
    noise (2,64)              masking noise, U[0,1), no ties
    mask (2,64)               1 = removed (48 ones per row)
    latent (2,17,64)          encoder output after vit.layernorm (class token, then the 16 kept
                              tokens in noise order)
    logits (2,64,48)          decoder_pred output without the class row (patchify order)
    loss ()                   masked MSE on norm-pixel targets
All from model(pixel_values, noise=noise) in eval mode.

Every output record (all but the inputs, init.*, param.* and buffer.*) is the float64 value,
and comes with band.<name>: how far float32 computations of it wandered (fixture_io.banded).
"""

import json
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from transformers import ViTMAEConfig, ViTMAEForPreTraining

sys.dont_write_bytecode = True  # keep Tools/reference free of __pycache__
from fixture_io import FixtureWriter, Realisation, banded, export_cli, make_nontrivial  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "Tests/ModelsTests/Fixtures"
MODEL_DIR = FIXTURES / "hf_vitmae_tiny"
FIXTURE = FIXTURES / "hf_vitmae_tiny.bin"
SEED = 0
BATCH = 2


def tiny_config() -> ViTMAEConfig:
    return ViTMAEConfig(
        image_size=32, patch_size=4, num_channels=3, hidden_size=64, num_hidden_layers=2,
        num_attention_heads=4, intermediate_size=256, hidden_act="gelu", qkv_bias=True,
        decoder_hidden_size=32, decoder_num_hidden_layers=1, decoder_num_attention_heads=4,
        decoder_intermediate_size=128, mask_ratio=0.75, norm_pix_loss=True, layer_norm_eps=1e-12,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )


def sincos_2d(grid: int, dim: int) -> torch.Tensor:
    """(1, 1 + G², dim): zero class row, then [sin(xω), cos(xω), sin(yω), cos(yω)] per token
    (y·G + x), ω_k = 10000^(−k/d), d = dim/4, computed in float64 (docs/methods/common.md, B2)."""
    d = dim // 4
    omega = 1.0 / 10000.0 ** (torch.arange(d, dtype=torch.float64) / d)
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64),
                            torch.arange(grid, dtype=torch.float64), indexing="ij")
    x, y = xs.reshape(-1, 1) * omega, ys.reshape(-1, 1) * omega
    table = torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)
    table = torch.cat([torch.zeros(1, dim, dtype=torch.float64), table], dim=0)
    return table.float().unsqueeze(0)


def check_hf_table_layout() -> None:
    """transformers builds [rows | columns] and swaps the halves for the pretrained layout;
    the result must be our column-first table."""
    from transformers.models.vit_mae.modeling_vit_mae import build_2d_sinusoidal_position_embedding
    hf = build_2d_sinusoidal_position_embedding(8, 8, embed_dim=64, cls_token=True)
    hf = torch.cat([hf[..., 32:], hf[..., :32]], dim=-1)
    assert torch.allclose(hf.unsqueeze(0), sincos_2d(8, 64), atol=1e-7), "HF sin-cos layout changed"


def build_model() -> ViTMAEForPreTraining:
    torch.manual_seed(SEED)
    model = ViTMAEForPreTraining(tiny_config())
    g = torch.Generator().manual_seed(SEED + 1)
    grid = model.config.image_size // model.config.patch_size
    make_nontrivial(model, g)
    with torch.no_grad():
        for token in (model.vit.embeddings.cls_token, model.decoder.mask_token):
            token.copy_(0.3 * torch.randn(token.shape, dtype=torch.float32, generator=g))
        model.vit.embeddings.position_embeddings.copy_(sincos_2d(grid, model.config.hidden_size))
        model.decoder.decoder_pos_embed.copy_(sincos_2d(grid, model.config.decoder_hidden_size))
    return model.eval()


def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(SEED + 2)
    pixel_values = torch.randn(BATCH, 3, 32, 32, dtype=torch.float32, generator=g)
    noise = torch.rand(BATCH, 64, dtype=torch.float32, generator=g)
    assert all(len(set(row.tolist())) == 64 for row in noise), "noise has ties"
    return pixel_values, noise


def run(model: ViTMAEForPreTraining, pixel_values, noise) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = model(pixel_values, noise=noise)
        latent = model.vit(pixel_values, noise=noise).last_hidden_state
    return {"mask": out.mask, "latent": latent, "logits": out.logits, "loss": out.loss}


def load_checked(directory: Path) -> ViTMAEForPreTraining:
    model, info = ViTMAEForPreTraining.from_pretrained(str(directory), output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    assert not problems, f"{directory}: loading problems {problems}"
    return model.eval()


def read_mimf(path: Path) -> dict[str, torch.Tensor]:
    """The reader twin of fixture_io.FixtureWriter."""
    blob = path.read_bytes()
    assert blob[:4] == b"MIMF"
    version, count = struct.unpack_from("<II", blob, 4)
    assert version == 1
    at, out = 12, {}
    for _ in range(count):
        (n,) = struct.unpack_from("<I", blob, at)
        name = blob[at + 4:at + 4 + n].decode()
        at += 4 + n
        (rank,) = struct.unpack_from("<I", blob, at)
        shape = struct.unpack_from(f"<{rank}I", blob, at + 4)
        at += 4 + 4 * rank
        size = int(np.prod(shape)) if rank else 1
        out[name] = torch.from_numpy(np.frombuffer(blob, "<f4", size, at).copy()).reshape(shape)
        at += 4 * size
    return out


def outputs(real: Realisation) -> FixtureWriter:
    """The fixture's records computed as `real` says (banded() runs it in float64 and float32)."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)  # transformers' own init draws what build_model leaves
    model = real.weights(build_model())
    torch.set_default_dtype(dtype)
    pixel_values, noise = (real.input(t) for t in inputs())
    fx = FixtureWriter()
    fx.add("pixel_values", pixel_values)
    fx.add("noise", noise)
    for k, v in run(model, pixel_values, noise).items():
        fx.add(k, v)
    return fx


def generate() -> None:
    check_hf_table_layout()
    model = build_model()
    pixel_values, noise = inputs()
    result = run(model, pixel_values, noise)

    shutil.rmtree(MODEL_DIR, ignore_errors=True)
    model.save_pretrained(str(MODEL_DIR))
    extra = sorted(p.name for p in MODEL_DIR.iterdir() if p.name not in ("config.json", "model.safetensors"))
    assert not extra, f"unexpected files from save_pretrained: {extra}"
    with safe_open(str(MODEL_DIR / "model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
        assert dtypes == {"F32"}, f"dtypes {dtypes}"
        print(f"{len(list(f.keys()))} tensors, metadata {f.metadata()}")
    # The saved directory alone must reproduce the numbers (the fixed tables survive loading).
    reloaded = run(load_checked(MODEL_DIR), pixel_values, noise)
    for k, v in result.items():
        assert torch.equal(v, reloaded[k]), f"{k} differs after save/load"

    fx = banded(outputs, inputs=("pixel_values", "noise", "mask"))
    size = fx.write(FIXTURE)
    dir_size = sum(p.stat().st_size for p in MODEL_DIR.iterdir())
    print(f"loss {fx['loss']:.8f} (float64); wrote {FIXTURE.name} ({size} B), {MODEL_DIR.name}/ ({dir_size} B)")


def check_export(directory: Path) -> None:
    exported = load_checked(directory)
    reference = load_checked(MODEL_DIR)
    config = json.loads((directory / "config.json").read_text())
    ref_config = json.loads((MODEL_DIR / "config.json").read_text())
    for key, value in ref_config.items():
        if key not in ("transformers_version", "dtype"):
            assert config.get(key) == value, f"config.json {key}: {config.get(key)!r}, fixture has {value!r}"
    ours, theirs = exported.state_dict(), reference.state_dict()
    assert ours.keys() == theirs.keys()
    worst = max((ours[k] - theirs[k]).abs().max().item() for k in ours)
    print(f"no missing/unexpected/mismatched keys; {len(ours)} tensors, max |Δweight| {worst:.3g}")

    fx = read_mimf(FIXTURE)
    result = run(exported, fx["pixel_values"], fx["noise"])
    for k in ("mask", "latent", "logits", "loss"):
        diff = (result[k] - fx[k].reshape(result[k].shape)).abs().max().item()
        print(f"{k}: max |Δ| {diff:.3g}")
        assert diff <= 1e-5 * max(fx[k].abs().max().item(), 1.0), f"{k} differs from the fixture"
    print(f"OK: transformers loads {directory}; loss {result['loss'].item():.8f} "
          f"(fixture {fx['loss'].item():.8f})")


def main() -> None:
    export_cli(__doc__, generate, check_export, loads_with='ViTMAEForPreTraining.from_pretrained')


if __name__ == "__main__":
    main()
