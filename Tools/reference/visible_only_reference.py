#!/usr/bin/env python3
"""Golden fixtures for the visible-only Swin methods: tiny UM-MAE and tiny GreenMIM in PyTorch: float64 values with float32 noise bands.

Writes
    Tests/ModelsTests/Fixtures/ummae_tiny.bin      (~430 KB)
    Tests/ModelsTests/Fixtures/greenmim_tiny.bin   (~500 KB)
which the Swift model tests load to check forward, loss, backward and three AdamW steps.

Regenerate from the repository root (deterministic: fixed seeds, one thread):

    pip install -r Tools/reference/requirements.txt
    python3 Tools/reference/visible_only_reference.py      # add --full for every param and grad

Both models are written from docs/methods/ (common.md, ummae.md, greenmim.md and the tiny presets
on those pages), not imported from the papers' code. Parameter names are the reference state-dict
keys (UM-MAE: a flat blocks.k list with attn.posmlp.{0,2} and downsample.{norm,proj}; GreenMIM: a
plain Swin under encoder.). The shared pieces (sin-cos table, patchify, ViT block, Swin window
attention and merging, the Swift random-generator twin, the weight replay, the fixture records
and the AdamW loop) come from mim_reference.py, so both scripts share one convention.

Self-checks before writing: UM-MAE's compaction by gathering equals an independent masked-sum
formulation, its coordinate bias is key minus query, and both decoder orderings place what they
should; GreenMIM's grouped visible-only encoder equals a dense masked Swin (masked keys removed
from every window) and a single-sequence run of every block, and its merging keeps B5's order.

Initial weights: as in mim_reference.py (init.<name> = [low, high], replayed by Swift from ONE
RandomGenerator(seed 0) stream in fixture order); vis_mask_token counts as a token (±1/32) and
the coordinate-MLP 1×1 convs as convolutions.

Tensors in ummae_tiny.bin (B = 2; 8×8 units of 4 px; compact 8×8 tokens; stages 8, 4, 2):
    config.init_seed, images (2,3,32,32), init.*, param.*, grad.*, grad_norm.*, grad_row_sums.*,
    grad_rows.*, losses_after_steps, param_after_3.*   as in mim_reference.py
    primary (2,8,8)      1 = primary-masked unit; exactly one 0 per 2×2 group
    secondary (2,8,8)    1 = kept unit shown to the encoder as the mask token (4 of 16 per sample)
    latent (2,4,128)     encoder output after the final LN (the 2×2 compacted map, raster order)
    pred (2,64,48)       decoder_pred output for every unit in raster order (true positions)
    loss ()              MSE over the 48 primary-masked units per sample (norm-pixel, 4 px)
    loss_reference_order ()  the same loss with the reference code's decoder ordering
    buffer.decoder_pos_embed (1,64,32)

Tensors in greenmim_tiny.bin (B = 2; 4×4 units of 8 px, 4 visible, shared by the batch):
    config.init_seed, images, init.*, param.*, grad*.*, losses_after_steps, param_after_3.*
    noise (1,16)         masking noise for the batch (B7 on units; the 4 lowest stay visible)
    mask (2,4,4)         1 = masked unit
    latent (2,4,128)     encoder output after the final LN (visible final tokens, raster order)
    pred (2,16,192)      decoder_pred output for every unit in raster order (true positions)
    loss ()              masked MSE on norm-pixel 8 px units
    loss_reference_order ()  the same loss with the reference code's B8 unshuffle of raster latents
    buffer.decoder_pos_embed (1,16,32)

Every output record (all but the inputs, init.*, param.* and buffer.*) is the float64 value,
and comes with band.<name>: how far float32 computations of it wandered (fixture_io.banded).
"""

import argparse
import math
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep Tools/reference free of __pycache__
from fixture_io import FixtureWriter, Realisation, banded  # noqa: E402
from mim_reference import (  # noqa: E402
    ADAM_EPS, BATCH, IMG, INIT_SEED, OUT_DIR, WEIGHT_DECAY, BasicLayer, Block, Mlp, PatchEmbed, SwiftRandom,
    check_swift_random, patchify, record_params_and_grads, shifted_window_mask, sincos_2d, train_steps,
    trainable, window_partition, window_reverse)
import numpy as np  # noqa: E402

NEG = -100.0


def init_bounds(model: nn.Module) -> list[tuple[str, float, float]]:
    """mim_reference.init_bounds plus UM-MAE's vis_mask_token (a token, ±1/32)."""
    modules = dict(model.named_modules())
    bounds = []
    for name, p in trainable(model):
        owner_name, _, leaf = name.rpartition(".")
        owner = modules[owner_name]
        if isinstance(owner, nn.LayerNorm) and leaf == "weight":
            low, high = 0.875, 1.125
        elif leaf == "bias" or leaf in ("mask_token", "vis_mask_token", "relative_position_bias_table"):
            low, high = -1 / 32, 1 / 32
        elif isinstance(owner, (nn.Linear, nn.Conv2d)) and leaf == "weight":
            receptive = int(np.prod(p.shape[2:])) if p.ndim > 2 else 1
            a = 2.0 ** math.floor(math.log2(math.sqrt(6.0 / (p.shape[1] * receptive + p.shape[0] * receptive))))
            low, high = -a, a
        else:
            raise AssertionError(f"no init rule for {name}")
        bounds.append((name, low, high))
    return bounds


def init_weights(model: nn.Module) -> list[tuple[str, float, float]]:
    rng = SwiftRandom(INIT_SEED)
    bounds = init_bounds(model)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, low, high in bounds:
            p = params[name]
            lo, hi = np.float32(low), np.float32(high)
            p.copy_(torch.from_numpy((lo + (hi - lo) * rng.uniform(p.numel())).reshape(tuple(p.shape))))
    return bounds


def norm_pix(t: torch.Tensor) -> torch.Tensor:
    """B9: per patch (t − mean)/sqrt(unbiased var + 1e-6)."""
    return (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True, unbiased=True) + 1e-6) ** 0.5


# ----------------------------------------------------------------------------------------------
# UM-MAE tiny (docs/methods/ummae.md; T-Swin patch 2, C 32, depths 2-2-2, heads 2-4-8, window 4 on the
# compacted 8×8 map, coordinate MLP 16; 4 px units, K = 2; decoder 32 wide, 1 block, 2 heads)
# ----------------------------------------------------------------------------------------------

class PosMLPAttention(nn.Module):
    """Window attention whose bias is Conv1x1(2→hidden) → ReLU → Conv1x1(hidden→heads) of
    f = sign(d)·ln(1 + |d|), d = pos_key − pos_query (row, col)."""

    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.posmlp = nn.Sequential(nn.Conv2d(2, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, heads, 1))

    def forward(self, x, pos, mask):
        """x (Bw, N, C), pos (Bw, N, 2) float; mask (nW, N, N) or None."""
        bw, n, c = x.shape
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        logits = (qkv[0] * self.scale) @ qkv[1].transpose(-2, -1)        # (Bw, H, N, N)
        d = pos[:, None, :, :] - pos[:, :, None, :]                       # [w, i, j] = pos_j − pos_i
        f = torch.sign(d) * torch.log1p(d.abs())
        logits = logits + self.posmlp(f.permute(0, 3, 1, 2))              # (Bw, H, N, N)
        if mask is not None:
            nw = mask.shape[0]
            logits = (logits.view(bw // nw, nw, self.heads, n, n) + mask[None, :, None]).view(bw, self.heads, n, n)
        return self.proj((logits.softmax(-1) @ qkv[2]).transpose(1, 2).reshape(bw, n, c))


class Downsample(nn.Module):
    """LN(C) → Conv 2×2 stride 2 (C → 2C, bias); positions = top-left position / 2."""

    def __init__(self, dim, eps):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.proj = nn.Conv2d(dim, 2 * dim, kernel_size=2, stride=2)

    def forward(self, x, pos):
        b, g, c = pos.shape[0], pos.shape[1], x.shape[2]
        y = self.proj(self.norm(x).transpose(1, 2).reshape(b, c, g, g))
        return y.flatten(2).transpose(1, 2), pos[:, 0::2, 0::2] / 2


class UMBlock(nn.Module):
    def __init__(self, dim, heads, hidden, window, eps, downsample_from=None):
        super().__init__()
        if downsample_from is not None:
            self.downsample = Downsample(downsample_from, eps)
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = PosMLPAttention(dim, heads, hidden)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x, pos, shifted):
        """x (B, g², C), pos (B, g, g, 2)."""
        if hasattr(self, "downsample"):
            x, pos = self.downsample(x, pos)
        b, g = pos.shape[0], pos.shape[1]
        c = x.shape[2]
        w = min(self.window, g)
        s = w // 2 if shifted and g > self.window else 0
        h = self.norm1(x).view(b, g, g, c)
        p = pos
        if s:
            h = torch.roll(h, (-s, -s), (1, 2))
            p = torch.roll(p, (-s, -s), (1, 2))
        windows = window_partition(h, w).view(-1, w * w, c)
        pw = window_partition(p, w).view(-1, w * w, 2)
        mask = shifted_window_mask(g, g, w, s) if s else None
        out = window_reverse(self.attn(windows, pw, mask).view(-1, w, w, c), w, g, g)
        if s:
            out = torch.roll(out, (s, s), (1, 2))
        x = x + out.reshape(b, g * g, c)
        return x + self.mlp(self.norm2(x)), pos


def compact(x, primary, k):
    """x (B, G, G, C) → (B, Gc, Gc, C): the slot of each 2×2 unit group holds its kept unit's K×K
    tokens. Written as a masked sum over the group (an independent check of index gathers)."""
    b, gg, _, c = x.shape
    ug = primary.shape[1] // 2
    keep = (1 - primary).view(b, ug, 2, 1, ug, 2, 1, 1)
    grouped = x.view(b, ug, 2, k, ug, 2, k, c) * keep
    return grouped.sum(dim=(2, 5)).reshape(b, ug * k, ug * k, c)


class UMMAETiny(nn.Module):
    def __init__(self, img=32, patch=2, dim=32, depths=(2, 2, 2), heads=(2, 4, 8), window=4, hidden=16,
                 unit=4, dec_dim=32, dec_depth=1, dec_heads=2, eps=1e-6):
        super().__init__()
        self.patch, self.unit, self.dim = patch, unit, dim
        self.k = unit // patch
        self.units = img // unit
        self.patch_embed = PatchEmbed(patch, 3, dim, nn.LayerNorm(dim, eps=eps))
        self.vis_mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.blocks = nn.ModuleList()
        self.shifted = []
        for s, depth in enumerate(depths):
            for i in range(depth):
                self.blocks.append(UMBlock(dim * 2 ** s, heads[s], hidden, window, eps,
                                           downsample_from=dim * 2 ** (s - 1) if s > 0 and i == 0 else None))
                self.shifted.append(i % 2 == 1)
        out_dim = dim * 2 ** (len(depths) - 1)
        self.norm = nn.LayerNorm(out_dim, eps=eps)
        self.decoder_embed = nn.Linear(out_dim, 4 * dec_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
        self.register_buffer("decoder_pos_embed", sincos_2d(self.units, dec_dim, cls_token=False))
        self.decoder_blocks = nn.ModuleList([Block(dec_dim, dec_heads, 4.0, eps) for _ in range(dec_depth)])
        self.decoder_norm = nn.LayerNorm(dec_dim, eps=eps)
        self.decoder_pred = nn.Linear(dec_dim, unit * unit * 3)

    def encode(self, imgs, primary, secondary):
        b = imgs.shape[0]
        g = imgs.shape[2] // self.patch
        x = self.patch_embed(imgs).view(b, g, g, self.dim)
        rows, cols = torch.meshgrid(torch.arange(g, dtype=torch.float32), torch.arange(g, dtype=torch.float32),
                                    indexing="ij")
        pos = compact(torch.stack([rows, cols], -1).expand(b, g, g, 2).contiguous(), primary, self.k)   # true (row, col)
        tok_secondary = secondary.repeat_interleave(self.k, 1).repeat_interleave(self.k, 2)[..., None]
        sec = compact(tok_secondary, primary, self.k)                                      # (B, Gc, Gc, 1)
        x = compact(x, primary, self.k)
        x = x * (1 - sec) + self.patch_embed.norm(self.vis_mask_token) * sec
        gc = x.shape[1]
        x = x.reshape(b, gc * gc, self.dim)
        for blk, shifted in zip(self.blocks, self.shifted):
            x, pos = blk(x, pos, shifted)
        return self.norm(x)

    def kept_units(self, primary):
        """(B, Ug²) kept unit (raster index) of each group, group-raster order."""
        b, u = primary.shape[0], self.units
        ug = u // 2
        out = torch.zeros(b, ug * ug, dtype=torch.long)
        for bi in range(b):
            for gy in range(ug):
                for gx in range(ug):
                    cand = [(2 * gy + dy) * u + 2 * gx + dx for dy in (0, 1) for dx in (0, 1)]
                    kept = [q for q in cand if primary[bi].flatten()[q] == 0]
                    assert len(kept) == 1
                    out[bi, gy * ug + gx] = kept[0]
        return out

    def decode(self, latent, primary, reference_order=False):
        """Returns predictions in [kept (group-raster); masked (raster)] order, as the reference."""
        b, n, _ = latent.shape
        m = int(n ** 0.5)
        z = self.decoder_embed(latent).transpose(1, 2).reshape(b, -1, m, m)
        x_vis = F.pixel_shuffle(z, 2).flatten(2).transpose(1, 2)                  # (B, Ug², Dd), group raster
        table = self.decoder_pos_embed[0]
        kept = self.kept_units(primary)
        flat = primary.flatten(1).bool()
        if reference_order:   # the k-th latent gets the entry of the k-th kept unit in raster order
            pos_vis = torch.stack([table[~flat[bi]] for bi in range(b)])
        else:                 # true positions
            pos_vis = table[kept]
        pos_mask = torch.stack([table[flat[bi]] for bi in range(b)])
        x = torch.cat([x_vis + pos_vis, self.mask_token + pos_mask], dim=1)
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x)), kept

    def forward(self, imgs, primary, secondary, reference_order=False):
        latent = self.encode(imgs, primary, secondary)
        pred, kept = self.decode(latent, primary, reference_order)
        n_vis = kept.shape[1]
        flat = primary.flatten(1).bool()
        target = norm_pix(patchify(imgs, self.unit))
        masked_target = torch.stack([target[bi][flat[bi]] for bi in range(imgs.shape[0])])
        loss = ((pred[:, n_vis:] - masked_target) ** 2).mean()
        # Predictions back in raster unit order (the kept slots at their true units).
        raster = torch.zeros(imgs.shape[0], self.units ** 2, pred.shape[2])
        for bi in range(imgs.shape[0]):
            raster[bi, kept[bi]] = pred[bi, :n_vis]
            raster[bi, flat[bi]] = pred[bi, n_vis:]
        return loss, latent, raster


def uniform_masks(gen, b=BATCH, u=8, secondary_ratio=0.25):
    primary = torch.ones(b, u, u)
    secondary = torch.zeros(b, u, u)
    for bi in range(b):
        kept = []
        for gy in range(u // 2):
            for gx in range(u // 2):
                pick = int(torch.randint(4, (1,), generator=gen))
                y, x = 2 * gy + pick // 2, 2 * gx + pick % 2
                primary[bi, y, x] = 0
                kept.append((y, x))
        hidden = len(kept) - int(len(kept) * (1 - secondary_ratio))
        for q in torch.randperm(len(kept), generator=gen)[:hidden].tolist():
            secondary[bi, kept[q][0], kept[q][1]] = 1
    return primary, secondary


def check_ummae(model, images, primary, secondary):
    with torch.no_grad():
        # Compaction by index gathering equals the masked sum.
        b, g = images.shape[0], IMG // model.patch
        x = torch.randn(b, g, g, 3, generator=torch.Generator().manual_seed(7))
        ref = compact(x, primary, model.k)
        kept = model.kept_units(primary)
        ug, k, u = model.units // 2, model.k, model.units
        for bi in range(b):
            for cy in range(ug * k):
                for cx in range(ug * k):
                    q = int(kept[bi, (cy // k) * ug + cx // k])
                    assert torch.equal(ref[bi, cy, cx], x[bi, (q // u) * k + cy % k, (q % u) * k + cx % k])
        # Both orderings give every masked unit its own table row; true order places kept units exactly.
        loss_true, _, _ = model(images, primary, secondary)
        loss_ref, _, _ = model(images, primary, secondary, reference_order=True)
        assert loss_true.item() != loss_ref.item()
        assert torch.all(primary.flatten(1).sum(1) == 48) and torch.all(secondary.flatten(1).sum(1) == 4)


def make_ummae(full: bool, real: Realisation) -> FixtureWriter:
    model = UMMAETiny()
    bounds = init_weights(model)
    real.weights(model)
    images = real.input(torch.randn(BATCH, 3, IMG, IMG, dtype=torch.float32, generator=torch.Generator().manual_seed(11)))
    primary, secondary = uniform_masks(torch.Generator().manual_seed(12))
    check_ummae(model, images, primary, secondary)
    loss, latent, pred = model(images, primary, secondary)
    assert latent.shape == (BATCH, 4, 128) and pred.shape == (BATCH, 64, 48)
    with torch.no_grad():
        loss_ref = model(images, primary, secondary, reference_order=True)[0]
    model.zero_grad(set_to_none=True)
    loss.backward()

    w = FixtureWriter()
    w.add("config.init_seed", INIT_SEED)
    w.add("images", images)
    w.add("primary", primary)
    w.add("secondary", secondary)
    w.add("latent", latent)
    w.add("pred", pred)
    w.add("loss", loss)
    w.add("loss_reference_order", loss_ref)
    w.add("buffer.decoder_pos_embed", model.decoder_pos_embed)
    record_params_and_grads(w, model, bounds, full)
    losses, _ = train_steps(model, lambda: model(images, primary, secondary)[0], mae_groups(model),
                            betas=(0.9, 0.95), clip=None)
    w.add("losses_after_steps", torch.tensor(losses))
    params = dict(model.named_parameters())
    for name in ("patch_embed.proj.weight", "vis_mask_token", "blocks.1.attn.posmlp.0.weight",
                 "blocks.2.downsample.proj.weight", "decoder_pred.bias"):
        w.add(f"param_after_3.{name}", params[name])
    return w


def mae_groups(model):
    """No decay for 1-D tensors and biases (MAE, UM-MAE)."""
    decay, no_decay = [], []
    for name, p in trainable(model):
        (no_decay if p.ndim == 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]


# ----------------------------------------------------------------------------------------------
# GreenMIM tiny (docs/methods/greenmim.md; T-Swin patch 2, C 32, depths 2-2-2, heads 2-4-8, window 4;
# 8 px units shared by the batch, 4 of 16 visible; decoder 32 wide, 1 block, 2 heads)
# ----------------------------------------------------------------------------------------------

def knapsack(capacity, counts):
    n = len(counts)
    table = [[0] * (capacity + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        for c in range(capacity + 1):
            table[i][c] = table[i - 1][c]
            if counts[i - 1] <= c:
                table[i][c] = max(table[i][c], table[i - 1][c - counts[i - 1]] + counts[i - 1])
    chosen, c = [], capacity
    for i in range(n, 0, -1):
        if table[i][c] != table[i - 1][c]:
            chosen.append(i - 1)
            c -= counts[i - 1]
    return chosen[::-1]


def fill(capacity, counts):
    remaining, groups = list(range(len(counts))), []
    while remaining:
        picked = [remaining[i] for i in knapsack(capacity, [counts[r] for r in remaining])]
        groups.append(picked)
        remaining = [r for r in remaining if r not in picked]
    return groups


def window_ids(coords, w, s):
    """B4's non-cyclic windows: per axis ⌊(c + (w − s) mod w)/w⌋."""
    wc = (coords + (w - s) % w) // w
    per_axis = int(wc.max()) + 2
    return wc[:, 0] * per_axis + wc[:, 1]


def group_attention(blk, x, coords, w, s, force_single=False):
    """The Swin block on visible tokens x (B, N, C) at integer coords (N, 2): one sequence when
    N ≤ 2w², else the windows packed by fill(g_min) into padded groups; −100 across windows and
    at padding, relative bias from absolute coordinates (index 0 and ×0 where masked)."""
    attn = blk.attn
    b, n, c = x.shape
    heads = attn.num_heads
    ids = window_ids(coords, w, s)
    if force_single or n <= 2 * w * w:
        slots = [list(range(n))]
        size = n
    else:
        uniq = sorted(set(ids.tolist()))
        members = [[t for t in range(n) if ids[t] == u] for u in uniq]
        counts = [len(m) for m in members]
        size = min(w * w, max(counts))
        slots = [sum((members[i] for i in grp), []) for grp in fill(size, counts)]
    idx = torch.tensor([t for grp in slots for t in grp + [-1] * (size - len(grp))])
    ng = len(slots)
    valid = idx >= 0
    safe = idx.clamp(min=0)
    gid = torch.where(valid, ids[safe], torch.full_like(idx, -1)).view(ng, size)
    same = (gid[:, :, None] == gid[:, None, :]) & (gid[:, :, None] >= 0)
    mask = torch.where(same, 0.0, NEG)                                            # (nG, g, g)
    gc = coords[safe].view(ng, size, 2)
    rel = gc[:, :, None, :] - gc[:, None, :, :] + (w - 1)                         # query − key
    rel_idx = torch.where(same, rel[..., 0] * (2 * w - 1) + rel[..., 1], 0)
    bias = attn.relative_position_bias_table[rel_idx.view(-1)].view(ng, size, size, heads)
    bias = (bias * same[..., None]).permute(0, 3, 1, 2)                           # (nG, H, g, g)

    h = blk.norm1(x)
    grouped = h[:, safe] * valid[None, :, None]                                   # (B, nG·g, C)
    grouped = grouped.view(b * ng, size, c)
    qkv = attn.qkv(grouped).reshape(b * ng, size, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    logits = (qkv[0] * attn.scale) @ qkv[1].transpose(-2, -1)
    logits = (logits.view(b, ng, heads, size, size) + bias[None] + mask[None, :, None]).view(b * ng, heads, size, size)
    out = attn.proj((logits.softmax(-1) @ qkv[2]).transpose(1, 2).reshape(b, ng * size, c))
    back = torch.zeros(b, n, c)
    back[:, idx[valid]] = out[:, valid]
    x = x + back
    return x + blk.mlp(blk.norm2(x))


def dense_masked_block(blk, x, token_masked):
    """Swin block over the full grid (roll, windows, region mask) with masked keys removed (−100)."""
    res, ws, s = blk.input_resolution, blk.window_size, blk.shift_size
    b, l, c = x.shape
    h = blk.norm1(x).view(b, res, res, c)
    m = token_masked.float().view(1, res, res, 1)
    if s:
        h = torch.roll(h, (-s, -s), (1, 2))
        m = torch.roll(m, (-s, -s), (1, 2))
    windows = window_partition(h, ws).view(-1, ws * ws, c)
    key_masked = window_partition(m, ws).view(-1, 1, ws * ws) * NEG                # (nW, 1, N)
    mask = key_masked.expand(-1, ws * ws, -1)
    if s:
        mask = mask + blk.attn_mask
    out = window_reverse(blk.attn(windows, mask=mask).view(-1, ws, ws, c), ws, res, res)
    if s:
        out = torch.roll(out, (s, s), (1, 2))
    x = x + out.reshape(b, l, c)
    return x + blk.mlp(blk.norm2(x))


class GreenSwin(nn.Module):
    def __init__(self, img=32, patch=2, dim=32, depths=(2, 2, 2), heads=(2, 4, 8), window=4, eps=1e-6):
        super().__init__()
        self.patch, self.window = patch, window
        self.patch_embed = PatchEmbed(patch, 3, dim, nn.LayerNorm(dim, eps=eps))
        res = img // patch
        self.layers = nn.ModuleList([
            BasicLayer(dim * 2 ** i, res // 2 ** i, depths[i], heads[i], window, 4.0, eps,
                       downsample=i < len(depths) - 1) for i in range(len(depths))])
        self.norm = nn.LayerNorm(dim * 2 ** (len(depths) - 1), eps=eps)

    def forward(self, imgs, unit_masked, mode="group"):
        """unit_masked (U, U) bool for the whole batch. mode: group | single | dense."""
        x = self.patch_embed(imgs)
        b, _, c = x.shape
        res = imgs.shape[2] // self.patch
        u = unit_masked.shape[0]
        if mode == "dense":
            for layer in self.layers:
                f = layer.blocks[0].input_resolution // u
                tm = unit_masked.repeat_interleave(f, 0).repeat_interleave(f, 1).flatten()
                for blk in layer.blocks:
                    x = dense_masked_block(blk, x, tm)
                if layer.downsample is not None:
                    x = layer.downsample(x)
            f = self.layers[-1].blocks[0].input_resolution // u
            keep = ~unit_masked.repeat_interleave(f, 0).repeat_interleave(f, 1).flatten()
            return self.norm(x)[:, keep]
        tm = unit_masked.repeat_interleave(res // u, 0).repeat_interleave(res // u, 1)
        coords = torch.nonzero(~tm)                                                   # raster order
        x = x[:, (coords[:, 0] * res + coords[:, 1])]
        for layer in self.layers:
            g = layer.blocks[0].input_resolution
            w = min(self.window, g)
            for i, blk in enumerate(layer.blocks):
                s = w // 2 if i % 2 == 1 and g > self.window else 0
                x = group_attention(blk, x, coords, w, s, force_single=(mode == "single"))
            if layer.downsample is not None:
                # 2×2-block-major over the visible tokens, B5's order (even,even), (odd,even), (even,odd), (odd,odd).
                place = {(int(r), int(q)): t for t, (r, q) in enumerate(coords.tolist())}
                nxt = torch.nonzero(~tm[0::2, 0::2])
                order = [place[(2 * r + dy, 2 * q + dx)] for r, q in nxt.tolist() for dy, dx in ((0, 0), (1, 0), (0, 1), (1, 1))]
                merged = x[:, order].reshape(b, len(nxt), 4 * x.shape[2])
                x = layer.downsample.reduction(layer.downsample.norm(merged))
                tm, coords = tm[0::2, 0::2], nxt
        return self.norm(x)


class GreenMIMTiny(nn.Module):
    def __init__(self, unit=8, img=32, dec_dim=32, dec_depth=1, dec_heads=2, eps=1e-6):
        super().__init__()
        self.unit, self.units = unit, img // unit
        self.encoder = GreenSwin()
        self.decoder_embed = nn.Linear(128, dec_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_dim))
        self.register_buffer("decoder_pos_embed", sincos_2d(self.units, dec_dim, cls_token=False))
        self.decoder_blocks = nn.ModuleList([Block(dec_dim, dec_heads, 4.0, eps) for _ in range(dec_depth)])
        self.decoder_norm = nn.LayerNorm(dec_dim, eps=eps)
        self.decoder_pred = nn.Linear(dec_dim, unit * unit * 3)

    def forward(self, imgs, noise, keep, reference_order=False, mode="group"):
        order = torch.argsort(noise[0])
        masked = torch.ones(self.units ** 2, dtype=torch.bool)
        masked[order[:keep]] = False
        latent = self.encoder(imgs, masked.view(self.units, self.units), mode)       # (B, keep, 128), raster
        z = self.decoder_embed(latent)
        b, d = z.shape[0], z.shape[2]
        seq = self.mask_token.expand(b, self.units ** 2, d).clone()
        if reference_order:   # B8 unshuffle of raster-ordered latents: latent k lands at order[k]
            seq[:, order[:keep]] = z
        else:                 # true positions
            seq[:, ~masked] = z
        x = seq + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        pred = self.decoder_pred(self.decoder_norm(x))
        target = norm_pix(patchify(imgs, self.unit))
        m = masked.float().expand(b, -1)
        loss = (((pred - target) ** 2).mean(-1) * m).sum() / m.sum()
        return loss, latent, pred, m


def green_groups(model):
    """No decay for 1-D tensors, biases, and names containing 'position_bias' or 'token'."""
    decay, no_decay = [], []
    for name, p in trainable(model):
        skip = p.ndim == 1 or name.endswith(".bias") or "position_bias" in name or "token" in name
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]


def make_greenmim(full: bool, real: Realisation) -> FixtureWriter:
    model = GreenMIMTiny()
    bounds = init_weights(model)
    real.weights(model)
    images = real.input(torch.randn(BATCH, 3, IMG, IMG, dtype=torch.float32, generator=torch.Generator().manual_seed(21)))
    noise = torch.rand(1, 16, dtype=torch.float32, generator=torch.Generator().manual_seed(22))
    keep = int(16 * 0.25)
    with torch.no_grad():
        ref = [model(images, noise, keep, mode=m)[1] for m in ("group", "single", "dense")]
    assert torch.allclose(ref[0], ref[1], atol=2e-5), (ref[0] - ref[1]).abs().max()
    assert torch.allclose(ref[0], ref[2], atol=2e-5), (ref[0] - ref[2]).abs().max()
    loss, latent, pred, mask = model(images, noise, keep)
    with torch.no_grad():
        loss_ref = model(images, noise, keep, reference_order=True)[0]
    assert latent.shape == (BATCH, 4, 128) and pred.shape == (BATCH, 16, 192) and loss.item() != loss_ref.item()
    model.zero_grad(set_to_none=True)
    loss.backward()

    w = FixtureWriter()
    w.add("config.init_seed", INIT_SEED)
    w.add("images", images)
    w.add("noise", noise)
    w.add("mask", mask.view(BATCH, 4, 4))
    w.add("latent", latent)
    w.add("pred", pred)
    w.add("loss", loss)
    w.add("loss_reference_order", loss_ref)
    w.add("buffer.decoder_pos_embed", model.decoder_pos_embed)
    record_params_and_grads(w, model, bounds, full)
    losses, _ = train_steps(model, lambda: model(images, noise, keep)[0], green_groups(model),
                            betas=(0.9, 0.95), clip=None)
    w.add("losses_after_steps", torch.tensor(losses))
    params = dict(model.named_parameters())
    for name in ("encoder.patch_embed.proj.weight", "encoder.layers.0.blocks.1.attn.relative_position_bias_table",
                 "encoder.layers.1.downsample.reduction.weight", "mask_token", "decoder_pred.bias"):
        w.add(f"param_after_3.{name}", params[name])
    return w


# Records stored as they are (inputs, initial weights, exact tables); every other record gets a band.
INPUTS = ("config.", "images", "noise", "mask", "primary", "secondary", "odd.images", "init.", "param.", "buffer.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="store every param.<name> and grad.<name> in full")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    check_swift_random()
    assert ADAM_EPS == 1e-8
    for name, make in (("ummae_tiny", make_ummae), ("greenmim_tiny", make_greenmim)):
        w = banded(lambda real: make(args.full, real), INPUTS)
        path = args.out_dir / f"{name}.bin"
        size = w.write(path)
        print(f"{name}: loss {w['loss']:.7g}, after steps 1-3 {w['losses_after_steps'].tolist()}")
        print(f"  wrote {len(w.records)} tensors, {size} bytes ({size / 1024:.1f} KiB) to {path}")


if __name__ == "__main__":
    main()
