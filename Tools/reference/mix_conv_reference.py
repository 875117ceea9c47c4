#!/usr/bin/env python3
"""Golden fixtures for MixMAE (MixMIM) and ConvMAE, tiny presets, in PyTorch: float64 values with float32 noise bands.

Writes
    Tests/ModelsTests/Fixtures/mixmae_tiny.bin    (~0.5 MB)
    Tests/ModelsTests/Fixtures/convmae_tiny.bin   (~0.2 MB)
which the Swift golden tests (MixConvGoldenTests.swift) load to check forward, loss, backward and
three AdamW steps.

Regenerate from the repository root (deterministic: fixed seeds, one thread):

    pip install -r Tools/reference/requirements.txt
    python3 Tools/reference/mix_conv_reference.py            # add --full for every param and grad

Both models are written from docs/methods/ (B3-B9 of common.md, mixmae.md, convmae.md and the tiny
presets on those pages), not imported from the official repositories. Module structure and parameter names
mirror the official models_mixmim.py (no prefix) and models_convmae.py, so every <name> below is a
reference state-dict key. Shared pieces (sin-cos table, patchify, ViT block, Swin window helpers,
patch merging, the RandomGenerator twin, the init replay and the fixture layout) come from
mim_reference.py beside this file; see its header for the init replay (init.<name> = [low, high],
one SwiftRandom(0) stream in init order) and the gradient fingerprints.

Self-checks before writing: the MixMAE mixed encoder keeps the two images apart exactly (changing
one image leaves the other's encoder tokens bit-identical), the dual branches predict each unit
from the other half of its own image, and ConvMAE's visible outputs of every stage are
bit-identical when masked input pixels change.

Tensors in mixmae_tiny.bin (B = 2; T-Swin C32, depths 2-2-2, heads 2-4-8, windows 4-4-4 without
shift, 8 px units on a 4x4 grid, r = 0.5 → 8 masked; decoder 32 wide, 1 block, 2 heads):
    config.init_seed, images (2,3,32,32), init.*, param.*, grad.*, grad_norm.*, grad_row_sums.*,
    grad_rows.*, losses_after_steps (3), param_after_3.*       as in mim_reference.py
    mask (1,4,4)           the batch-shared unit mask, 1 = masked (8 of 16)
    latent (2,16,128)      encoder output of the MIXED batch after the final LN (raster order)
    pred (2,16,192)        un-mixed prediction: A_i at masked units, B_π(i) elsewhere
    loss ()                MSE on norm-pixel 8 px targets over all units and images
    odd.images (3,3,32,32), odd.latent (3,16,128), odd.pred (3,16,192), odd.loss ()
                           an odd batch with the same weights and mask: the middle sample pairs
                           with itself (π(i) = B−1−i)
Tensors in convmae_tiny.bin (B = 2; conv 16/32 + ViT 64, patches 2-2-2, depths 1-1-2, 4 heads,
8 px units on a 4x4 grid, r = 0.75 → 4 kept; decoder 32 wide, 1 block, 4 heads):
    config.init_seed, images, init.*, param.*, grad.*, …, losses_after_steps, param_after_3.*
    noise (2,16)           masking noise (B7), no ties
    mask (2,16)            1 = removed (12 ones per row)
    latent (2,4,64)        fused visible tokens after the final LN, in noise order
    pred (2,16,192)        decoder_pred output (patchify order, 8 px patches)
    loss ()                masked MSE on norm-pixel 8 px targets

Every output record (all but the inputs, init.*, param.* and buffer.*) is the float64 value,
and comes with band.<name>: how far float32 computations of it wandered (fixture_io.banded).
"""

import argparse
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep Tools/reference free of __pycache__
from fixture_io import FixtureWriter, Realisation, banded  # noqa: E402
from mim_reference import (  # noqa: E402
    INIT_SEED, Block, Mlp, PatchEmbed, PatchMerging, check_swift_random, init_weights, mae_param_groups,
    patchify, record_params_and_grads, relative_position_index, sincos_2d, train_steps, trainable,
    window_partition, window_reverse)

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "Tests/ModelsTests/Fixtures"

BATCH = 2
IMG = 32
WEIGHT_DECAY = 0.05


def norm_pix_target(imgs, p):
    """B9: per-patch (t − mean) / sqrt(unbiased var + 1e-6)."""
    t = patchify(imgs, p)
    return (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True, unbiased=True) + 1e-6) ** 0.5


# ----------------------------------------------------------------------------------------------
# MixMAE tiny (docs/methods/mixmae.md)
# ----------------------------------------------------------------------------------------------

class MixWindowAttention(nn.Module):
    """B4 window attention (relative table) plus the MixMIM source mask: −1e30 where the tokens of a
    pair come from different images."""

    def __init__(self, dim, window_size, num_heads):
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, labels=None):
        """x (B·nW, N, C); labels (B·nW, N) source flags (1 = partner image) or None."""
        b_, n, c = x.shape
        qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * self.scale, qkv[1], qkv[2]
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, -1).permute(2, 0, 1).unsqueeze(0)
        if labels is not None:
            differ = (labels[:, :, None] != labels[:, None, :]).float()      # (B·nW, N, N)
            attn = attn - 1e30 * differ.unsqueeze(1)
        attn = attn.softmax(-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b_, n, c))


class MixBlock(nn.Module):
    """Swin block without shift; a map no larger than the window is one window."""

    def __init__(self, dim, res, num_heads, window_size, eps):
        super().__init__()
        self.res = res
        self.window_size = min(window_size, res)
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = MixWindowAttention(dim, self.window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x, token_mask=None):
        b, l, c = x.shape
        ws = self.window_size
        h = window_partition(self.norm1(x).view(b, self.res, self.res, c), ws).view(-1, ws * ws, c)
        labels = None
        if token_mask is not None:                                           # (L,) 0/1
            m = token_mask.view(1, self.res, self.res, 1).expand(b, -1, -1, -1)
            labels = window_partition(m, ws).view(-1, ws * ws)
        h = self.attn(h, labels)
        x = x + window_reverse(h.view(-1, ws, ws, c), ws, self.res, self.res).view(b, l, c)
        return x + self.mlp(self.norm2(x))


class MixLayer(nn.Module):
    def __init__(self, dim, res, depth, num_heads, window_size, eps, downsample):
        super().__init__()
        self.blocks = nn.ModuleList([MixBlock(dim, res, num_heads, window_size, eps) for _ in range(depth)])
        self.downsample = PatchMerging(res, dim, eps) if downsample else None

    def forward(self, x, token_mask=None):
        for blk in self.blocks:
            x = blk(x, token_mask)
        return self.downsample(x) if self.downsample is not None else x


class MixMIM(nn.Module):
    def __init__(self, img_size=32, patch_size=2, embed_dim=32, depths=(2, 2, 2), num_heads=(2, 4, 8),
                 window_size=4, decoder_dim=32, decoder_depth=1, decoder_heads=2, eps=1e-5):
        super().__init__()
        self.grid = img_size // patch_size
        self.stride = patch_size * 2 ** (len(depths) - 1)                   # 8
        self.units = img_size // self.stride                                  # 4
        self.patch_embed = PatchEmbed(patch_size, 3, embed_dim, nn.LayerNorm(embed_dim, eps=eps))
        self.layers = nn.ModuleList([
            MixLayer(embed_dim * 2 ** i, self.grid // 2 ** i, depths[i], num_heads[i], window_size, eps,
                     downsample=i < len(depths) - 1)
            for i in range(len(depths))])
        self.num_features = embed_dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(self.num_features, eps=eps)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.absolute_pos_embed = nn.Parameter(sincos_2d(self.grid, embed_dim, cls_token=False), requires_grad=False)
        self.decoder_pos_embed = nn.Parameter(sincos_2d(self.units, decoder_dim, cls_token=False),
                                              requires_grad=False)
        self.decoder_embed = nn.Linear(self.num_features, decoder_dim)
        self.decoder_blocks = nn.ModuleList([Block(decoder_dim, decoder_heads, 4.0, eps) for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=eps)
        self.decoder_pred = nn.Linear(decoder_dim, self.stride ** 2 * 3)

    def stage_masks(self, unit_mask):
        """Nearest upsampling of the (U, U) unit mask to every stage grid, each flattened (L_k,)."""
        m = unit_mask.view(1, 1, self.units, self.units)
        return [F.interpolate(m, size=(self.grid // 2 ** i,) * 2, mode="nearest").flatten()
                for i in range(len(self.layers))]

    def forward_encoder(self, imgs, unit_mask):
        masks = self.stage_masks(unit_mask)
        x = self.patch_embed(imgs)
        m1 = masks[0].view(1, -1, 1)
        x = x * (1.0 - m1) + x.flip(0) * m1                 # partner π(i) = B−1−i
        x = x + self.absolute_pos_embed
        for layer, m in zip(self.layers, masks):
            x = layer(x, m)
        return self.norm(x)

    def forward_decoder(self, z, unit_mask):
        x = self.decoder_embed(z)
        b, l, c = x.shape
        m = unit_mask.view(1, l, 1)
        t = self.mask_token.expand(b, l, -1)
        x = torch.cat([x * (1 - m) + t * m, x * m + t * (1 - m)], dim=0) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))      # (2B, U², P)

    def forward(self, imgs, unit_mask):
        z = self.forward_encoder(imgs, unit_mask)
        both = self.forward_decoder(z, unit_mask)
        b = imgs.shape[0]
        m = unit_mask.view(1, -1, 1)
        pred = both[:b] * m + both[b:].flip(0) * (1 - m)     # un-mix
        loss = ((pred - norm_pix_target(imgs, self.stride)) ** 2).mean()
        return loss, z, pred, both


def mixmim_param_groups(model):
    """1-D tensors and biases, plus MixMIM's no_weight_decay = {mask_token}."""
    decay, no_decay = [], []
    for name, p in trainable(model):
        (no_decay if p.ndim == 1 or name.endswith(".bias") or "mask_token" in name else decay).append(p)
    return [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]


def check_mixmim(model, images, unit_mask):
    """Exact isolation of the two mixed images, and the dual branches' dependence structure."""
    u = unit_mask.flatten().bool()
    with torch.no_grad():
        z = model.forward_encoder(images, unit_mask)
        changed = images.clone()
        changed[1] += torch.randn(changed[1].shape, generator=torch.Generator().manual_seed(50))
        z2 = model.forward_encoder(changed, unit_mask)
    # Image 0 lives in sample 0 at visible units and in sample 1 (its partner) at masked units.
    assert torch.equal(z[0, ~u], z2[0, ~u]) and torch.equal(z[1, u], z2[1, u]), "images leak across the mix"
    assert not torch.equal(z[1, ~u], z2[1, ~u])
    # Prediction of image 0 at a masked unit depends on image 0 only, and never on the unit itself.
    x = images.clone().requires_grad_(True)
    _, _, pred, _ = model(x, unit_mask)
    k = int(u.nonzero()[0])
    pred[0, k].sum().backward()
    g = x.grad.abs()                                      # (B, 3, H, W)
    assert g[1].sum() == 0, "image 0's prediction reads image 1"
    unit_px = g[0].sum(0).view(model.units, model.stride, model.units, model.stride).sum((1, 3)).flatten()
    assert torch.all(unit_px[u] == 0) and unit_px[~u].sum() > 0, "masked unit predicted from masked units"


def make_mixmae(full: bool, real: Realisation) -> FixtureWriter:
    model = MixMIM()
    bounds = init_weights(model)
    real.weights(model)
    images = real.input(torch.randn(BATCH, 3, IMG, IMG, dtype=torch.float32, generator=torch.Generator().manual_seed(11)))
    noise = torch.rand(16, dtype=torch.float32, generator=torch.Generator().manual_seed(12))
    unit_mask = torch.zeros(16)
    unit_mask[torch.argsort(noise)[:int(16 * 0.5)]] = 1.0   # the smallest noise values are masked
    unit_mask = unit_mask.view(1, 4, 4)
    check_mixmim(model, images, unit_mask)

    model.zero_grad(set_to_none=True)
    loss, latent, pred, _ = model(images, unit_mask)
    assert latent.shape == (BATCH, 16, 128) and pred.shape == (BATCH, 16, 192)
    loss.backward()
    w = FixtureWriter()
    w.add("config.init_seed", INIT_SEED)
    w.add("images", images)
    w.add("mask", unit_mask)
    w.add("latent", latent)
    w.add("pred", pred)
    w.add("loss", loss)
    record_params_and_grads(w, model, bounds, full)
    with torch.no_grad():
        odd = real.input(torch.randn(3, 3, IMG, IMG, dtype=torch.float32, generator=torch.Generator().manual_seed(13)))
        odd_loss, odd_latent, odd_pred, _ = model(odd, unit_mask)
    w.add("odd.images", odd)
    w.add("odd.latent", odd_latent)
    w.add("odd.pred", odd_pred)
    w.add("odd.loss", odd_loss)

    losses, _ = train_steps(model, lambda: model(images, unit_mask)[0], mixmim_param_groups(model),
                            betas=(0.9, 0.95), clip=None)
    w.add("losses_after_steps", torch.tensor(losses))
    params = dict(model.named_parameters())
    for name in ("patch_embed.proj.weight", "mask_token", "layers.0.blocks.1.attn.relative_position_bias_table",
                 "layers.1.downsample.reduction.weight", "decoder_pred.bias"):
        w.add(f"param_after_3.{name}", params[name])
    return w


# ----------------------------------------------------------------------------------------------
# ConvMAE tiny (docs/methods/convmae.md; B6 in docs/methods/common.md)
# ----------------------------------------------------------------------------------------------

class ConvPatchEmbed(nn.Module):
    """Conv kernel = stride, LN over channels (eps 1e-5), GELU; NCHW in and out."""

    def __init__(self, patch, in_chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)
        self.norm = nn.LayerNorm(dim, eps=1e-5)

    def forward(self, x):
        x = self.proj(x)
        return F.gelu(self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


class CMlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class CBlock(nn.Module):
    """B6: y = conv2(dw5x5(M ⊙ conv1(LN(x)))), x += y, x += mlp(LN(x)); LN eps 1e-5."""

    def __init__(self, dim):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-5)
        self.conv1 = nn.Conv2d(dim, dim, 1)
        self.conv2 = nn.Conv2d(dim, dim, 1)
        self.attn = nn.Conv2d(dim, dim, 5, padding=2, groups=dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-5)
        self.mlp = CMlp(dim, 4 * dim)

    def forward(self, x, visible=None):
        y = self.conv1(self.norm1(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))
        if visible is not None:
            y = visible * y
        x = x + self.conv2(self.attn(y))
        return x + self.mlp(self.norm2(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2))


class ConvMAE(nn.Module):
    def __init__(self, img_size=32, patches=(2, 2, 2), dims=(16, 32, 64), depths=(1, 1, 2), num_heads=4,
                 decoder_dim=32, decoder_depth=1, decoder_heads=4, eps=1e-6):
        super().__init__()
        self.g3 = img_size // (patches[0] * patches[1] * patches[2])         # 4
        self.stride = img_size // self.g3                                     # 8
        self.patch_embed1 = ConvPatchEmbed(patches[0], 3, dims[0])
        self.patch_embed2 = ConvPatchEmbed(patches[1], dims[0], dims[1])
        self.patch_embed3 = ConvPatchEmbed(patches[2], dims[1], dims[2])
        self.patch_embed4 = nn.Linear(dims[2], dims[2])
        self.stage1_output_decode = nn.Conv2d(dims[0], dims[2], 4, stride=4)
        self.stage2_output_decode = nn.Conv2d(dims[1], dims[2], 2, stride=2)
        self.pos_embed = nn.Parameter(sincos_2d(self.g3, dims[2], cls_token=False), requires_grad=False)
        self.blocks1 = nn.ModuleList([CBlock(dims[0]) for _ in range(depths[0])])
        self.blocks2 = nn.ModuleList([CBlock(dims[1]) for _ in range(depths[1])])
        self.blocks3 = nn.ModuleList([Block(dims[2], num_heads, 4.0, eps) for _ in range(depths[2])])
        self.norm = nn.LayerNorm(dims[2], eps=eps)
        self.decoder_embed = nn.Linear(dims[2], decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_2d(self.g3, decoder_dim, cls_token=False), requires_grad=False)
        self.decoder_blocks = nn.ModuleList([Block(decoder_dim, decoder_heads, 4.0, eps) for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=eps)
        self.decoder_pred = nn.Linear(decoder_dim, self.stride ** 2 * 3)

    def masking(self, noise, mask_ratio=0.75):
        """B7 at the stage-3 grid; visibility maps upsampled ×4 and ×2 (1 = visible)."""
        n, l = noise.shape
        keep = int(l * (1 - mask_ratio))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        mask = torch.ones(n, l)
        mask[:, :keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        vis = (1 - mask).view(n, 1, self.g3, self.g3)
        vis1 = vis.repeat_interleave(4, 2).repeat_interleave(4, 3)
        vis2 = vis.repeat_interleave(2, 2).repeat_interleave(2, 3)
        return ids_shuffle[:, :keep], ids_restore, mask, vis1, vis2

    def stages(self, imgs, vis1=None, vis2=None):
        x = self.patch_embed1(imgs)
        for blk in self.blocks1:
            x = blk(x, vis1)
        s1 = x
        e1 = self.stage1_output_decode(x).flatten(2).transpose(1, 2)
        x = self.patch_embed2(x)
        for blk in self.blocks2:
            x = blk(x, vis2)
        s2 = x
        e2 = self.stage2_output_decode(x).flatten(2).transpose(1, 2)
        x = self.patch_embed3(x).flatten(2).transpose(1, 2)
        x = self.patch_embed4(x) + self.pos_embed
        return s1, s2, x, e1, e2

    def forward_encoder(self, imgs, noise):
        ids_keep, ids_restore, mask, vis1, vis2 = self.masking(noise)
        s1, s2, x, e1, e2 = self.stages(imgs, vis1, vis2)
        idx = ids_keep.unsqueeze(-1).expand(-1, -1, x.shape[-1])
        x, e1, e2 = torch.gather(x, 1, idx), torch.gather(e1, 1, idx), torch.gather(e2, 1, idx)
        for blk in self.blocks3:
            x = blk(x)
        return self.norm(x + e1 + e2), mask, ids_restore, (s1, s2, vis1, vis2)

    def forward_decoder(self, x, ids_restore):
        x = self.decoder_embed(x)
        t = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] - x.shape[1], 1)
        x = torch.cat([x, t], dim=1)
        x = torch.gather(x, 1, ids_restore.unsqueeze(-1).expand(-1, -1, x.shape[2])) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))

    def forward(self, imgs, noise):
        latent, mask, ids_restore, extra = self.forward_encoder(imgs, noise)
        pred = self.forward_decoder(latent, ids_restore)
        per_patch = ((pred - norm_pix_target(imgs, self.stride)) ** 2).mean(-1)
        loss = (per_patch * mask).sum() / mask.sum()
        return loss, latent, pred, mask, extra


def check_convmae(model, images, noise):
    """Perturbing masked pixels leaves every visible output of every stage bit-identical."""
    with torch.no_grad():
        latent, mask, _, (s1, s2, vis1, vis2) = model.forward_encoder(images, noise)
        pix = (1 - mask).view(-1, 1, model.g3, model.g3).repeat_interleave(model.stride, 2) \
            .repeat_interleave(model.stride, 3)
        changed = images + (1 - pix) * 5 * torch.randn(images.shape, generator=torch.Generator().manual_seed(60))
        latent2, _, _, (t1, t2, _, _) = model.forward_encoder(changed, noise)
    assert torch.equal(latent, latent2), "visible latents read masked pixels"
    assert torch.equal(s1 * vis1, t1 * vis1) and torch.equal(s2 * vis2, t2 * vis2), "conv stages leak"
    assert not torch.equal(s1, t1)


def make_convmae(full: bool, real: Realisation) -> FixtureWriter:
    model = ConvMAE()
    bounds = init_weights(model)
    real.weights(model)
    images = real.input(torch.randn(BATCH, 3, IMG, IMG, dtype=torch.float32, generator=torch.Generator().manual_seed(21)))
    noise = torch.rand(BATCH, 16, dtype=torch.float32, generator=torch.Generator().manual_seed(22))
    assert all(len(set(row.tolist())) == 16 for row in noise), "ties in the masking noise"
    check_convmae(model, images, noise)

    loss, latent, pred, mask, _ = model(images, noise)
    assert latent.shape == (BATCH, 4, 64) and pred.shape == (BATCH, 16, 192)
    assert torch.all(mask.sum(1) == 12)
    model.zero_grad(set_to_none=True)
    loss.backward()
    w = FixtureWriter()
    w.add("config.init_seed", INIT_SEED)
    w.add("images", images)
    w.add("noise", noise)
    w.add("mask", mask)
    w.add("latent", latent)
    w.add("pred", pred)
    w.add("loss", loss)
    record_params_and_grads(w, model, bounds, full)

    losses, _ = train_steps(model, lambda: model(images, noise)[0], mae_param_groups(model),
                            betas=(0.9, 0.95), clip=None)
    w.add("losses_after_steps", torch.tensor(losses))
    params = dict(model.named_parameters())
    for name in ("patch_embed1.proj.weight", "blocks1.0.attn.weight", "blocks2.0.mlp.fc1.weight",
                 "stage1_output_decode.bias", "mask_token", "decoder_pred.bias"):
        w.add(f"param_after_3.{name}", params[name])
    return w


# Records stored as they are (inputs, initial weights, exact tables); every other record gets a band.
INPUTS = ("config.", "images", "noise", "mask", "primary", "secondary", "odd.images", "init.", "param.", "buffer.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="store every param.<name> and grad.<name> in full")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    check_swift_random()
    for name, make in (("mixmae_tiny", make_mixmae), ("convmae_tiny", make_convmae)):
        w = banded(lambda real: make(args.full, real), INPUTS)
        path = args.out_dir / f"{name}.bin"
        size = w.write(path)
        print(f"{name}: loss {w['loss']:.7g}, after steps 1-3 {w['losses_after_steps'].tolist()}")
        print(f"  wrote {len(w.records)} tensors, {size} bytes ({size / 1024:.1f} KiB) to {path}")


if __name__ == "__main__":
    main()
