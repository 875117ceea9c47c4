#!/usr/bin/env python3
"""Golden fixtures for the Models target: tiny MAE (ViT) and tiny SimMIM (Swin) in PyTorch: float64 values with float32 noise bands.

Writes
    Tests/ModelsTests/Fixtures/mae_tiny.bin      (~280 KB)
    Tests/ModelsTests/Fixtures/simmim_tiny.bin   (~460 KB)
which the Swift model tests load to check forward, loss, backward and three AdamW steps.

Regenerate from the repository root (deterministic: fixed seeds, one thread; the bytes are
identical run to run on one machine, another CPU may differ in the last bits of some floats):

    pip install -r Tools/reference/requirements.txt
    python3 Tools/reference/mim_reference.py            # add --full for every param and grad

Both models are written from docs/methods/ (common.md, mae.md, simmim.md and the tiny presets
on those pages), not imported from timm or transformers. Module structure and parameter names mirror
the original MAE and SimMIM code, so every <name> below is the reference state-dict key.
The script asserts its own layouts before writing (sin-cos column-first, patchify, pixel shuffle,
relative index, MAE mask counts, ~0 attention across shifted-window regions, the MAE decoder and
every Swin block against independent dense re-derivations, and the RandomGenerator twin).

Initial weights (replayable in Swift, so they need not be stored): ONE RandomGenerator(seed:
config.init_seed = 0) stream (Sources/TensorCore/RandomGenerator.swift, mirrored bit-exactly by
SwiftRandom below) fills the trainable parameters in the order of the init.<name> tensors, each
row-major, as Init.uniform(shape, low: init[0], high: init[1], rng: &rng), i.e. low + (high − low)·u
in Float. Every width is a power of two, so this is bit-exact with or without FMA.

File format "MIMF" (see fixture_io.py): every integer a little-endian UInt32, every value a
little-endian float32; magic, version 1, tensor count, then per tensor name length, UTF-8 name,
rank, dims, data. Rank-0 tensors hold one value.

Tensors in mae_tiny.bin (B = 2):
    config.init_seed ()     seed of the init stream (0)
    images (2,3,32,32)      input, already normalized
    noise (2,64)            masking noise (B7), no ties
    mask (2,64)             1 = removed, as produced from the noise (48 ones per row)
    latent (2,17,64)        encoder output after the final LN (class token first, then the 16
                            visible tokens in noise order)
    pred (2,64,48)          decoder_pred output without the class row (patchify order)
    target (2,64,48)        norm-pixel targets (unbiased variance, eps 1e-6)
    loss ()                 masked MSE
    buffer.pos_embed (1,65,64), buffer.decoder_pos_embed (1,65,32)   fixed sin-cos tables
    init.<name> (2)         [low, high] for every trainable parameter, in replay order
    param.<name>            initial value, for parameters of ≤ 1024 elements (a replay check)
    grad.<name>             d loss / d parameter at the initial weights, for ≤ 4096 elements;
    larger gradients G, viewed as (rows = shape[0], cols = rest), as a fingerprint:
      grad_norm.<name> ()           ‖G‖₂ (summed in float64)
      grad_row_sums.<name> (rows)   Σ over each row (float64)
      grad_rows.<name> (4, cols)    rows 0, rows/3, 2·rows/3, rows−1 (integer division)
    losses_after_steps (3)  loss after AdamW step 1, 2, 3 (same images, same noise)
    param_after_3.<name>    a few parameters after the third step

Tensors in simmim_tiny.bin (B = 2):
    config.init_seed, images, init.*, param.*, grad.*, grad_norm.*, grad_row_sums.*, grad_rows.*,
    losses_after_steps, param_after_3.*   as for MAE
    mask (2,4,4)            unit mask, 8 px units, 1 = masked, 10 of 16 per sample
    latent (2,16,128)       encoder output after the final LN, tokens in raster order at 4x4
    pred (2,3,32,32)        reconstructed image (1x1 conv + PixelShuffle(8))
    loss ()                 masked L1
    grad_norms (3)          global gradient norm before clipping (max 5) at each of the 3 steps

With --full, param.<name> and grad.<name> hold every parameter (no fingerprints); the files are
then about 1.1 MB and 4.9 MB.

Every output record (all but the inputs, init.*, param.* and buffer.*) is the float64 value,
and comes with band.<name>: how far float32 computations of it wandered (fixture_io.banded).
"""

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.dont_write_bytecode = True  # keep Tools/reference free of __pycache__
from fixture_io import FixtureWriter, Realisation, banded  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT_DIR = ROOT / "Tests/ModelsTests/Fixtures"

BATCH = 2
IMG = 32
STEPS = 3
# SimMIM's masked L1 residuals stay at least this far from 0 at every step that updates the
# weights (make_simmim); the image seed was chosen so they do.
L1_MARGIN = 1e-4
LR = 1e-3
WEIGHT_DECAY = 0.05
ADAM_EPS = 1e-8
INIT_SEED = 0
# Compact fixtures (the default) store a gradient in full only up to FULL_LIMIT elements, larger
# ones as a fingerprint (grad_norm, grad_row_sums, grad_rows); they store param.<name> only up to
# PARAM_CHECK_LIMIT elements, as a check of the init replay. --full stores every param and grad.
FULL_LIMIT = 4096
PARAM_CHECK_LIMIT = 1024
# First three next() of RandomGenerator(seed: 0), printed by the Swift implementation.
SWIFT_RANDOM_SEED0_FIRST3 = [11091344671253066420, 13793997310169335082, 1900383378846508768]


# ----------------------------------------------------------------------------------------------
# Shared pieces
# ----------------------------------------------------------------------------------------------

def sincos_2d(grid: int, dim: int, cls_token: bool) -> torch.Tensor:
    """B2: row (y·G + x) is [sin(xω), cos(xω), sin(yω), cos(yω)], ω_k = 10000^(−k/d), d = dim/4.

    The COLUMN (x) part comes first. float64, stored as float32; optional zero class row first.
    """
    assert dim % 4 == 0
    d = dim // 4
    omega = 1.0 / 10000.0 ** (torch.arange(d, dtype=torch.float64) / d)
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float64),
                            torch.arange(grid, dtype=torch.float64), indexing="ij")
    x = xs.reshape(-1, 1) * omega          # (G², d), raster order: index = y·G + x
    y = ys.reshape(-1, 1) * omega
    table = torch.cat([torch.sin(x), torch.cos(x), torch.sin(y), torch.cos(y)], dim=1)
    if cls_token:
        table = torch.cat([torch.zeros(1, dim, dtype=torch.float64), table], dim=0)
    return table.float().unsqueeze(0)


def patchify(imgs: torch.Tensor, p: int) -> torch.Tensor:
    """(N,3,H,W) -> (N, L, p·p·3): blocks in raster order, row-in-block, column-in-block, channel."""
    n, c, hh, ww = imgs.shape
    h, w = hh // p, ww // p
    x = imgs.reshape(n, c, h, p, w, p)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(n, h * w, p * p * c)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact erf form
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SwiftRandom:
    """Bit-exact twin of Sources/TensorCore/RandomGenerator.swift (xoshiro256** seeded by SplitMix64)."""

    MASK = (1 << 64) - 1

    def __init__(self, seed: int) -> None:
        s = seed & self.MASK

        def split_mix() -> int:
            nonlocal s
            s = (s + 0x9E3779B97F4A7C15) & self.MASK
            z = s
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self.MASK
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.MASK
            return z ^ (z >> 31)

        self.state = [split_mix() for _ in range(4)]

    @staticmethod
    def _rotl(x: int, k: int) -> int:
        return ((x << k) | (x >> (64 - k))) & SwiftRandom.MASK

    def next(self) -> int:
        s0, s1, s2, s3 = self.state
        result = (self._rotl((s1 * 5) & self.MASK, 7) * 9) & self.MASK
        t = (s1 << 17) & self.MASK
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = self._rotl(s3, 45)
        self.state = [s0, s1, s2, s3]
        return result

    def uniform(self, n: int) -> np.ndarray:
        """n draws of `uniform()`: Float(next() >> 40) * 2^-24, as float32."""
        bits = np.fromiter((self.next() >> 40 for _ in range(n)), dtype=np.float64, count=n)
        return bits.astype(np.float32) * np.float32(2.0 ** -24)


def init_bounds(model: nn.Module) -> list[tuple[str, float, float]]:
    """(name, low, high) for every trainable parameter, in named_parameters order.

    Non-trivial values everywhere, so the comparison exercises every parameter:
    Linear weights and conv kernels (on their (out, in·k·k) view): U(−a, a) with a the largest power
    of two ≤ the Xavier bound √(6/(fan_in + fan_out)); LN weights U(0.875, 1.125); LN biases, all
    other biases, class/mask tokens and relative-position tables U(−1/32, 1/32). Every width
    high − low is a power of two, so low + (high − low)·u is exact up to one final rounding and the
    Swift side reproduces it bit for bit (with or without fused multiply-add).
    """
    modules = dict(model.named_modules())
    bounds = []
    for name, p in trainable(model):
        owner_name, _, leaf = name.rpartition(".")
        owner = modules[owner_name]
        if isinstance(owner, nn.LayerNorm) and leaf == "weight":
            low, high = 0.875, 1.125
        elif leaf == "bias" or leaf in ("cls_token", "mask_token", "relative_position_bias_table"):
            low, high = -1 / 32, 1 / 32
        elif isinstance(owner, (nn.Linear, nn.Conv2d)) and leaf == "weight":
            receptive = int(np.prod(p.shape[2:])) if p.ndim > 2 else 1
            fan_in, fan_out = p.shape[1] * receptive, p.shape[0] * receptive
            a = 2.0 ** math.floor(math.log2(math.sqrt(6.0 / (fan_in + fan_out))))
            low, high = -a, a
        else:
            raise AssertionError(f"no init rule for {name}")
        bounds.append((name, low, high))
    return bounds


def init_weights(model: nn.Module, seed: int = INIT_SEED) -> list[tuple[str, float, float]]:
    """Fills every trainable parameter from ONE SwiftRandom(seed) stream, in named_parameters order
    (= the order of the init.<name> tensors in the fixture), element by element in row-major order:
    value = low + (high − low)·u in float32 — exactly Swift's Init.uniform(shape, low:, high:, rng:)."""
    rng = SwiftRandom(seed)
    bounds = init_bounds(model)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, low, high in bounds:
            p = params[name]
            u = rng.uniform(p.numel())
            lo, hi = np.float32(low), np.float32(high)
            values = lo + (hi - lo) * u                      # float32 arithmetic throughout
            assert values.dtype == np.float32
            p.copy_(torch.from_numpy(values.reshape(tuple(p.shape))))
    return bounds


def trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


# ----------------------------------------------------------------------------------------------
# MAE tiny (docs/methods/mae.md; ViT patch 4, D 64, depth 2, heads 4; decoder 32 wide, 1 block, 4 heads)
# ----------------------------------------------------------------------------------------------

class Attention(nn.Module):
    """B3 multi-head self-attention: qkv rows [q; k; v], head h = channels h·dh …, scale dh^-1/2."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class Block(nn.Module):
    """B3 pre-norm ViT block."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """B1: conv kernel = stride = p, flattened to tokens; optional LN (Swin only)."""

    def __init__(self, patch: int, in_chans: int, dim: int, norm: nn.Module | None = None) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)
        if norm is not None:
            self.norm = norm

    def forward(self, x):
        x = self.proj(x).flatten(2).transpose(1, 2)
        return self.norm(x) if hasattr(self, "norm") else x


class MaskedAutoencoderViT(nn.Module):
    def __init__(self, img_size=32, patch_size=4, in_chans=3, embed_dim=64, depth=2, num_heads=4,
                 decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=4, mlp_ratio=4.0,
                 eps=1e-6, mask_ratio=0.75) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.mask_ratio = mask_ratio
        grid = img_size // patch_size
        # Encoder
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(sincos_2d(grid, embed_dim, cls_token=True), requires_grad=False)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, eps) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=eps)
        # Decoder
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim, bias=True)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_2d(grid, decoder_embed_dim, cls_token=True),
                                              requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            [Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, eps) for _ in range(decoder_depth)])
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=eps)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size ** 2 * in_chans, bias=True)

    def random_masking(self, x, noise):
        """B7: keep the first floor(L·(1−r)) tokens of argsort(noise), in that (noise) order."""
        n, l, d = x.shape
        len_keep = int(l * (1 - self.mask_ratio))
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_masked = torch.gather(x, 1, ids_keep.unsqueeze(-1).repeat(1, 1, d))
        mask = torch.ones(n, l)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        return x_masked, mask, ids_restore

    def forward_encoder(self, imgs, noise):
        x = self.patch_embed(imgs)
        x = x + self.pos_embed[:, 1:, :]
        x, mask, ids_restore = self.random_masking(x, noise)
        cls = self.cls_token + self.pos_embed[:, :1, :]
        x = torch.cat([cls.expand(x.shape[0], -1, -1), x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, x, ids_restore):
        x = self.decoder_embed(x)
        # B8: append mask tokens after the visible latents, unshuffle, class latent back in front.
        mask_tokens = self.mask_token.repeat(x.shape[0], ids_restore.shape[1] + 1 - x.shape[1], 1)
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).repeat(1, 1, x.shape[2]))
        x = torch.cat([x[:, :1, :], x_], dim=1)
        x = x + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        x = self.decoder_pred(x)
        return x[:, 1:, :]

    def target(self, imgs):
        """B9 norm-pixel target, UNBIASED variance, eps 1e-6 inside the square root."""
        t = patchify(imgs, self.patch_size)
        mean = t.mean(dim=-1, keepdim=True)
        var = t.var(dim=-1, keepdim=True, unbiased=True)
        return (t - mean) / (var + 1.0e-6) ** 0.5

    def forward_loss(self, target, pred, mask):
        loss = ((pred - target) ** 2).mean(dim=-1)
        return (loss * mask).sum() / mask.sum()

    def forward(self, imgs, noise):
        latent, mask, ids_restore = self.forward_encoder(imgs, noise)
        pred = self.forward_decoder(latent, ids_restore)
        target = self.target(imgs)
        loss = self.forward_loss(target, pred, mask)
        return loss, latent, pred, target, mask


def mae_param_groups(model: nn.Module):
    """MAE / timm add_weight_decay: no decay for 1-D tensors and biases; tokens ARE decayed."""
    decay, no_decay = [], []
    for name, p in trainable(model):
        (no_decay if p.ndim == 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": WEIGHT_DECAY},
            {"params": no_decay, "weight_decay": 0.0}]


# ----------------------------------------------------------------------------------------------
# SimMIM tiny (docs/methods/simmim.md; T-Swin: patch 2, C 32, depths 2-2-2, heads 2-4-8, window 4)
# ----------------------------------------------------------------------------------------------

def window_partition(x, ws):
    """(B,H,W,C) -> (B·nW, ws, ws, C); windows batch-major, then window row, then window column."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, ws, ws, c)


def window_reverse(windows, ws, h, w):
    b = int(windows.shape[0] / (h * w / ws / ws))
    x = windows.view(b, h // ws, w // ws, ws, ws, -1)
    return x.permute(0, 1, 3, 2, 4, 5).contiguous().view(b, h, w, -1)


def relative_position_index(ws: int) -> torch.Tensor:
    """B4: idx = (h_i − h_j + w − 1)(2w − 1) + (v_i − v_j + w − 1), i = query, j = key."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij"))
    flat = torch.flatten(coords, 1)                       # (2, N), token n = h·ws + v
    rel = (flat[:, :, None] - flat[:, None, :]).permute(1, 2, 0).contiguous()
    rel[:, :, 0] += ws - 1
    rel[:, :, 1] += ws - 1
    rel[:, :, 0] *= 2 * ws - 1
    return rel.sum(-1)                                    # (N, N)


def shifted_window_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """(nW, N, N): −100 between tokens of different regions [0,H−w), [H−w,H−s), [H−s,H) (rolled)."""
    img_mask = torch.zeros(1, h, w, 1)
    cnt = 0
    for hs in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
        for wsl in (slice(0, -ws), slice(-ws, -shift), slice(-shift, None)):
            img_mask[:, hs, wsl, :] = cnt
            cnt += 1
    mw = window_partition(img_mask, ws).view(-1, ws * ws)
    attn_mask = mw.unsqueeze(1) - mw.unsqueeze(2)
    return attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(attn_mask == 0, 0.0)


class WindowAttention(nn.Module):
    def __init__(self, dim: int, window_size: int, num_heads: int) -> None:
        super().__init__()
        self.window_size = window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size),
                             persistent=True)
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.record_attention = False
        self.last_attention = None

    def forward(self, x, mask=None):
        b_, n, c = x.shape
        qkv = self.qkv(x).reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        q = q * self.scale
        attn = q @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, -1).permute(2, 0, 1).contiguous()     # (heads, N, N)
        attn = attn + bias.unsqueeze(0)
        if mask is not None:
            nw = mask.shape[0]
            attn = attn.view(b_ // nw, nw, self.num_heads, n, n) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, n, n)
        attn = attn.softmax(dim=-1)
        if self.record_attention:
            self.last_attention = attn.detach().clone()
        x = (attn @ v).transpose(1, 2).reshape(b_, n, c)
        return self.proj(x)


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim, input_resolution, num_heads, window_size, shift_size, mlp_ratio, eps):
        super().__init__()
        self.input_resolution = input_resolution
        if input_resolution <= window_size:
            # The window is the whole map and there is no shift.
            shift_size = 0
            window_size = input_resolution
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        attn_mask = (shifted_window_mask(input_resolution, input_resolution, window_size, shift_size)
                     if shift_size > 0 else None)
        self.register_buffer("attn_mask", attn_mask, persistent=True)

    def forward(self, x):
        h = w = self.input_resolution
        b, l, c = x.shape
        shortcut = x
        x = self.norm1(x).view(b, h, w, c)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        windows = window_partition(x, self.window_size).view(-1, self.window_size ** 2, c)
        windows = self.attn(windows, mask=self.attn_mask)
        x = window_reverse(windows.view(-1, self.window_size, self.window_size, c),
                           self.window_size, h, w)
        if self.shift_size > 0:
            x = torch.roll(x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        x = shortcut + x.view(b, h * w, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """B5: concat (even,even), (odd,even), (even,odd), (odd,odd) [row, col]; LN(4C); Linear 4C→2C."""

    def __init__(self, input_resolution: int, dim: int, eps: float) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim, eps=eps)

    def forward(self, x):
        h = w = self.input_resolution
        b, l, c = x.shape
        x = x.view(b, h, w, c)
        x0 = x[:, 0::2, 0::2, :]
        x1 = x[:, 1::2, 0::2, :]
        x2 = x[:, 0::2, 1::2, :]
        x3 = x[:, 1::2, 1::2, :]
        x = torch.cat([x0, x1, x2, x3], -1).view(b, -1, 4 * c)
        return self.reduction(self.norm(x))


class BasicLayer(nn.Module):
    def __init__(self, dim, input_resolution, depth, num_heads, window_size, mlp_ratio, eps,
                 downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList([
            SwinTransformerBlock(dim, input_resolution, num_heads, window_size,
                                 0 if i % 2 == 0 else window_size // 2, mlp_ratio, eps)
            for i in range(depth)])
        self.downsample = PatchMerging(input_resolution, dim, eps) if downsample else None

    def forward(self, x):
        for blk in self.blocks:
            x = blk(x)
        return self.downsample(x) if self.downsample is not None else x


class SwinTransformerForSimMIM(nn.Module):
    def __init__(self, img_size=32, patch_size=2, in_chans=3, embed_dim=32, depths=(2, 2, 2),
                 num_heads=(2, 4, 8), window_size=4, mlp_ratio=4.0, eps=1e-5):
        super().__init__()
        self.patch_size = patch_size
        self.num_layers = len(depths)
        self.num_features = embed_dim * 2 ** (self.num_layers - 1)
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim, nn.LayerNorm(embed_dim, eps=eps))
        res = img_size // patch_size
        self.layers = nn.ModuleList()
        for i in range(self.num_layers):
            self.layers.append(BasicLayer(embed_dim * 2 ** i, res // 2 ** i, depths[i], num_heads[i],
                                          window_size, mlp_ratio, eps,
                                          downsample=i < self.num_layers - 1))
        self.norm = nn.LayerNorm(self.num_features, eps=eps)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, embed_dim))

    def forward(self, x, token_mask):
        """token_mask (B, H/p, W/p), 1 = masked. Returns (latent (B,L,C), map (B,C,h,w))."""
        x = self.patch_embed(x)
        b, l, _ = x.shape
        mask_tokens = self.mask_token.expand(b, l, -1)
        w = token_mask.flatten(1).unsqueeze(-1).type_as(mask_tokens)
        x = x * (1.0 - w) + mask_tokens * w
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)
        latent = x
        x = x.transpose(1, 2)
        side = int(x.shape[2] ** 0.5)
        return latent, x.reshape(b, x.shape[1], side, side)


class SimMIM(nn.Module):
    def __init__(self, unit: int = 8):
        super().__init__()
        self.encoder = SwinTransformerForSimMIM()
        self.encoder_stride = self.encoder.patch_size * 2 ** (self.encoder.num_layers - 1)   # 8
        self.unit = unit
        self.in_chans = 3
        self.decoder = nn.Sequential(
            nn.Conv2d(self.encoder.num_features, self.encoder_stride ** 2 * 3, kernel_size=1),
            nn.PixelShuffle(self.encoder_stride))

    def forward(self, x, unit_mask):
        scale = self.unit // self.encoder.patch_size                                   # 4
        token_mask = unit_mask.repeat_interleave(scale, 1).repeat_interleave(scale, 2)  # (B,16,16)
        latent, z = self.encoder(x, token_mask)
        x_rec = self.decoder(z)
        p = self.encoder.patch_size
        pix_mask = token_mask.repeat_interleave(p, 1).repeat_interleave(p, 2).unsqueeze(1)  # (B,1,32,32)
        loss_recon = F.l1_loss(x, x_rec, reduction="none")
        loss = (loss_recon * pix_mask).sum() / (pix_mask.sum() + 1e-5) / self.in_chans
        return loss, latent, x_rec


def simmim_param_groups(model: nn.Module):
    """No decay for 1-D tensors, biases, and names containing the SimMIM skip keywords."""
    skip = ("mask_token", "relative_position_bias_table", "absolute_pos_embed")
    decay, no_decay = [], []
    for name, p in trainable(model):
        excluded = p.ndim == 1 or name.endswith(".bias") or any(k in name for k in skip)
        (no_decay if excluded else decay).append(p)
    return [{"params": decay, "weight_decay": WEIGHT_DECAY},
            {"params": no_decay, "weight_decay": 0.0}]


# ----------------------------------------------------------------------------------------------
# Self-checks
# ----------------------------------------------------------------------------------------------

def check_sincos() -> None:
    t = sincos_2d(8, 64, cls_token=True)[0].double()   # (65, 64), d = 16
    d = 16
    assert torch.all(t[0] == 0), "class row must be zeros"
    # Token (row y=0, col x=1) is table row 1 + 1: column part first.
    r = t[1 + 1]
    assert abs(r[0] - math.sin(1.0)) < 1e-6 and abs(r[d] - math.cos(1.0)) < 1e-6
    assert abs(r[2 * d]) < 1e-7 and abs(r[3 * d] - 1.0) < 1e-7
    # Token (row y=1, col x=0) is table row 1 + 8: the row part is the second half.
    r = t[1 + 8]
    assert abs(r[0]) < 1e-7 and abs(r[d] - 1.0) < 1e-7
    assert abs(r[2 * d] - math.sin(1.0)) < 1e-6 and abs(r[3 * d] - math.cos(1.0)) < 1e-6
    # A generic entry: token (y=5, x=3), k = 2.
    w2 = 10000.0 ** (-2 / d)
    r = t[1 + 5 * 8 + 3]
    assert abs(r[2] - math.sin(3 * w2)) < 1e-6 and abs(r[d + 2] - math.cos(3 * w2)) < 1e-6
    assert abs(r[2 * d + 2] - math.sin(5 * w2)) < 1e-6 and abs(r[3 * d + 2] - math.cos(5 * w2)) < 1e-6


def check_layouts() -> None:
    # patchify: element (patch (i,j), a, b, c) = img[c, 4i+a, 4j+b], index (a·4 + b)·3 + c.
    img = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(99))
    pt = patchify(img, 4)
    i, j, a, b, c = 2, 5, 1, 3, 2
    assert pt[0, i * 8 + j, (a * 4 + b) * 3 + c] == img[0, c, 4 * i + a, 4 * j + b]
    # PixelShuffle(8): out[c, 8i+a, 8j+b] = in[c·64 + a·8 + b, i, j].
    z = torch.randn(1, 192, 4, 4, generator=torch.Generator().manual_seed(98))
    out = nn.PixelShuffle(8)(z)
    c, i, j, a, b = 2, 1, 3, 5, 6
    assert out[0, c, 8 * i + a, 8 * j + b] == z[0, c * 64 + a * 8 + b, i, j]
    # Relative position index against the B4 formula.
    ws = 4
    idx = relative_position_index(ws)
    for qi in range(ws * ws):
        for kj in range(ws * ws):
            hi, vi, hj, vj = qi // ws, qi % ws, kj // ws, kj % ws
            assert idx[qi, kj] == (hi - hj + ws - 1) * (2 * ws - 1) + (vi - vj + ws - 1)


def check_shifted_attention(model: SimMIM, images, unit_mask) -> None:
    """Masked pairs (−100) in shifted windows must get attention weight ~0; shifts where expected."""
    blocks = [blk for layer in model.encoder.layers for blk in layer.blocks]
    shifts = [(blk.input_resolution, blk.window_size, blk.shift_size) for blk in blocks]
    assert shifts == [(16, 4, 0), (16, 4, 2), (8, 4, 0), (8, 4, 2), (4, 4, 0), (4, 4, 0)], shifts
    for blk in blocks:
        blk.attn.record_attention = True
    with torch.no_grad():
        model(images, unit_mask)
    for blk in blocks:
        attn = blk.attn.last_attention                       # (B·nW, heads, N, N)
        blk.attn.record_attention = False
        blk.attn.last_attention = None
        assert torch.allclose(attn.sum(-1), torch.ones(()), atol=1e-5)
        if blk.shift_size == 0:
            continue
        mask = blk.attn_mask                                   # (nW, N, N)
        nw, n = mask.shape[0], mask.shape[1]
        full = mask.unsqueeze(0).unsqueeze(2).expand(attn.shape[0] // nw, nw, attn.shape[1], n, n)
        full = full.reshape(attn.shape)
        masked = attn[full < 0]
        assert masked.numel() > 0, "shifted block without masked pairs"
        assert masked.abs().max().item() < 1e-30, masked.abs().max().item()
        # Only the border windows are split: the interior windows have no masked pairs.
        per_window = (mask < 0).flatten(1).any(1)
        side = blk.input_resolution // blk.window_size
        expect = torch.zeros(side, side, dtype=torch.bool)
        expect[-1, :] = True
        expect[:, -1] = True
        assert torch.equal(per_window, expect.flatten())


def dense_swin_block(blk: SwinTransformerBlock, x: torch.Tensor) -> torch.Tensor:
    """The same block without roll or partition: full attention over the map, restricted to pairs
    in the same window under the non-cyclic view of B4 (window ⌊(c + (w − s) mod w)/w⌋ per axis)."""
    b, l, c = x.shape
    res, ws, s = blk.input_resolution, blk.window_size, blk.shift_size
    attn = blk.attn
    coords = torch.stack(torch.meshgrid(torch.arange(res), torch.arange(res), indexing="ij")).flatten(1)
    group = (coords + (ws - s) % ws) // ws                             # (2, L)
    same = (group[:, :, None] == group[:, None, :]).all(0)             # (L, L)
    rel = coords[:, :, None] - coords[:, None, :]                      # query minus key
    idx = ((rel[0] + ws - 1) * (2 * ws - 1) + (rel[1] + ws - 1)).clamp(0, (2 * ws - 1) ** 2 - 1)
    bias = attn.relative_position_bias_table[idx.flatten()].view(l, l, -1).permute(2, 0, 1)
    h = attn.num_heads
    qkv = attn.qkv(blk.norm1(x)).reshape(b, l, 3, h, c // h).permute(2, 0, 3, 1, 4)
    logits = (qkv[0] * attn.scale) @ qkv[1].transpose(-2, -1) + bias.unsqueeze(0)
    logits = logits.masked_fill(~same, float("-inf"))
    y = attn.proj((logits.softmax(-1) @ qkv[2]).transpose(1, 2).reshape(b, l, c))
    x = x + y
    return x + blk.mlp(blk.norm2(x))


def check_dense_equivalence(simmim: "SimMIM", sim_images) -> None:
    """Independent re-derivations: the MAE decoder input built position by position (B8), and
    every Swin block against its dense non-cyclic twin (B4)."""
    mae = MaskedAutoencoderViT()
    init_weights(mae)
    images = torch.randn(BATCH, 3, IMG, IMG, generator=torch.Generator().manual_seed(5))
    noise = torch.rand(BATCH, 64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        latent, mask, _ = mae.forward_encoder(images, noise)
        pred = mae.forward_decoder(latent, torch.argsort(torch.argsort(noise, dim=1), dim=1))
        z = mae.decoder_embed(latent)
        order = torch.argsort(noise, dim=1)
        rows = []
        for bi in range(images.shape[0]):
            seq = [z[bi, 0]]
            for pos in range(64):
                rank = int((order[bi] == pos).nonzero())               # place in noise order
                seq.append(z[bi, 1 + rank] if rank < 16 else mae.mask_token[0, 0])
                assert (rank < 16) == (mask[bi, pos] == 0)
            rows.append(torch.stack(seq))
        x = torch.stack(rows) + mae.decoder_pos_embed
        for blk in mae.decoder_blocks:
            x = blk(x)
        ref = mae.decoder_pred(mae.decoder_norm(x))[:, 1:]
        assert torch.allclose(pred, ref, atol=1e-6), (pred - ref).abs().max()

        x = simmim.encoder.patch_embed(sim_images)
        for layer in simmim.encoder.layers:
            for blk in layer.blocks:
                y, y_dense = blk(x), dense_swin_block(blk, x)
                assert torch.allclose(y, y_dense, atol=1e-5), (y - y_dense).abs().max()
                x = y
            if layer.downsample is not None:
                x = layer.downsample(x)


def check_swift_random() -> None:
    """SwiftRandom against values printed by Sources/TensorCore/RandomGenerator.swift (seed 0)."""
    rng = SwiftRandom(0)
    assert [rng.next() for _ in range(3)] == SWIFT_RANDOM_SEED0_FIRST3, "xoshiro256** twin is off"
    u = SwiftRandom(0).uniform(3)
    assert u.tolist() == [float(np.float32((x >> 40) * 2.0 ** -24)) for x in SWIFT_RANDOM_SEED0_FIRST3]


# ----------------------------------------------------------------------------------------------
# Fixture generation
# ----------------------------------------------------------------------------------------------

def record_params_and_grads(w: FixtureWriter, model: nn.Module, bounds, full: bool) -> None:
    """init.<name> = [low, high] for every parameter (replay order); param.<name> when full or
    numel ≤ PARAM_CHECK_LIMIT; grad.<name> when full or numel ≤ FULL_LIMIT, else a fingerprint."""
    for name, low, high in bounds:
        w.add(f"init.{name}", [low, high])
    params = dict(trainable(model))
    for name, _, _ in bounds:
        p = params[name]
        if full or p.numel() <= PARAM_CHECK_LIMIT:
            w.add(f"param.{name}", p)
    for name, _, _ in bounds:
        g = params[name].grad
        if full or g.numel() <= FULL_LIMIT:
            w.add(f"grad.{name}", g)
            continue
        rows = g.reshape(g.shape[0], -1).double()
        n = rows.shape[0]
        w.add(f"grad_norm.{name}", torch.linalg.vector_norm(rows))
        w.add(f"grad_row_sums.{name}", rows.sum(dim=1))
        w.add(f"grad_rows.{name}", rows[[0, n // 3, (2 * n) // 3, n - 1]])


def train_steps(model, forward_loss, groups, betas, clip: float | None):
    """STEPS AdamW steps on the same batch; returns (losses after each step, pre-clip norms)."""
    opt = torch.optim.AdamW(groups, lr=LR, betas=betas, eps=ADAM_EPS, foreach=False)
    params = [p for g in groups for p in g["params"]]
    losses, norms = [], []
    loss = forward_loss()
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip is not None:
            norms.append(torch.nn.utils.clip_grad_norm_(params, max_norm=clip).item())
        opt.step()
        loss = forward_loss()
        losses.append(loss.item())
    return losses, norms


# Records stored as they are (inputs, initial weights, exact tables); every other record gets a band.
INPUTS = ("config.", "images", "noise", "mask", "init.", "param.", "buffer.")


def make_mae(full: bool, real: Realisation) -> FixtureWriter:
    model = MaskedAutoencoderViT()
    bounds = init_weights(model)
    real.weights(model)
    images = real.input(torch.randn(BATCH, 3, IMG, IMG, dtype=torch.float32, generator=torch.Generator().manual_seed(1)))
    noise = real.input(torch.rand(BATCH, 64, dtype=torch.float32, generator=torch.Generator().manual_seed(2)))
    assert all(len(set(row.tolist())) == 64 for row in noise), "ties in the masking noise"

    loss, latent, pred, target, mask = model(images, noise)
    assert latent.shape == (BATCH, 17, 64) and pred.shape == (BATCH, 64, 48)
    assert torch.all(mask.sum(1) == 48), "MAE mask must have 48 ones per sample"
    kept = torch.argsort(noise, dim=1)[:, :16]          # the 16 smallest noise values stay visible
    assert torch.all(torch.gather(mask, 1, kept) == 0)
    model.zero_grad(set_to_none=True)
    loss.backward()
    assert model.pos_embed.grad is None and model.decoder_pos_embed.grad is None

    w = FixtureWriter()
    w.add("config.init_seed", INIT_SEED)
    w.add("images", images)
    w.add("noise", noise)
    w.add("mask", mask)
    w.add("latent", latent)
    w.add("pred", pred)
    w.add("target", target)
    w.add("loss", loss)
    w.add("buffer.pos_embed", model.pos_embed)
    w.add("buffer.decoder_pos_embed", model.decoder_pos_embed)
    record_params_and_grads(w, model, bounds, full)

    losses, _ = train_steps(model, lambda: model(images, noise)[0], mae_param_groups(model),
                            betas=(0.9, 0.95), clip=None)
    w.add("losses_after_steps", torch.tensor(losses))
    params = dict(model.named_parameters())
    for name in ("patch_embed.proj.weight", "cls_token", "blocks.0.norm1.weight",
                 "decoder_pred.weight", "decoder_pred.bias"):
        w.add(f"param_after_3.{name}", params[name])
    return w


def make_simmim(full: bool, real: Realisation) -> FixtureWriter:
    model = SimMIM()
    bounds = init_weights(model)
    real.weights(model)
    images = real.input(torch.randn(BATCH, 3, IMG, IMG, dtype=torch.float32, generator=torch.Generator().manual_seed(4)))
    g = torch.Generator().manual_seed(4)
    count = math.ceil(16 * 0.6)                                          # 10
    unit_mask = torch.zeros(BATCH, 16)
    for b in range(BATCH):
        unit_mask[b, torch.randperm(16, generator=g)[:count]] = 1.0
    unit_mask = unit_mask.view(BATCH, 4, 4)
    assert torch.all(unit_mask.sum((1, 2)) == 10)

    check_shifted_attention(model, images, unit_mask)
    check_dense_equivalence(model, images)
    loss, latent, x_rec = model(images, unit_mask)
    assert latent.shape == (BATCH, 16, 128) and x_rec.shape == (BATCH, 3, 32, 32)
    model.zero_grad(set_to_none=True)
    loss.backward()

    w = FixtureWriter()
    w.add("config.init_seed", INIT_SEED)
    w.add("images", images)
    w.add("mask", unit_mask)
    w.add("latent", latent)
    w.add("pred", x_rec)
    w.add("loss", loss)
    record_params_and_grads(w, model, bounds, full)

    margins = []

    def forward_loss():
        loss, _, x_rec = model(images, unit_mask)
        pix_mask = unit_mask.repeat_interleave(8, 1).repeat_interleave(8, 2).unsqueeze(1).expand_as(x_rec)
        margins.append((x_rec - images)[pix_mask > 0].abs().min().item())
        return loss

    losses, norms = train_steps(model, forward_loss, simmim_param_groups(model), betas=(0.9, 0.999), clip=5.0)
    # The L1 loss's gradient is the sign of each residual. A masked pixel whose residual sits
    # near 0 flips that sign under a rounding-sized change of the weights (Adam moves elements
    # whose gradient is rounding noise by up to lr), and one flip changes the decoder's gradient
    # by ~10%: no float32 band can describe that. The steps whose gradients drive an update
    # must keep every residual clear of the kink by far more than such a change moves it.
    assert min(margins[:STEPS]) >= L1_MARGIN, f"an L1 residual is within {min(margins[:STEPS]):.2g} of its kink"
    w.add("losses_after_steps", torch.tensor(losses))
    w.add("grad_norms", torch.tensor(norms))
    params = dict(model.named_parameters())
    for name in ("encoder.patch_embed.proj.weight", "encoder.mask_token",
                 "encoder.layers.0.blocks.1.attn.relative_position_bias_table",
                 "encoder.layers.0.blocks.1.attn.qkv.weight", "encoder.norm.weight",
                 "decoder.0.weight", "decoder.0.bias"):
        w.add(f"param_after_3.{name}", params[name])
    return w


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true",
                        help="store every param.<name> and grad.<name> in full (about 1 MB + 4.6 MB)")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = parser.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    check_sincos()
    check_layouts()
    check_swift_random()

    mae = banded(lambda real: make_mae(args.full, real), INPUTS)
    path = args.out_dir / "mae_tiny.bin"
    size = mae.write(path)
    print(f"MAE tiny: loss {mae['loss']:.7g}, after steps 1-3 {mae['losses_after_steps'].tolist()}")
    print(f"  wrote {len(mae.records)} tensors, {size} bytes ({size / 1024:.1f} KiB) to {path}")

    sim = banded(lambda real: make_simmim(args.full, real), INPUTS)
    path = args.out_dir / "simmim_tiny.bin"
    size = sim.write(path)
    norms = sim["grad_norms"]
    print(f"SimMIM tiny: loss {sim['loss']:.7g}, after steps 1-3 {sim['losses_after_steps'].tolist()}")
    print(f"  pre-clip grad norms {norms.tolist()} "
          f"({'some steps clip' if norms.max() > 5 else 'no step reaches the max norm 5'})")
    print(f"  wrote {len(sim.records)} tensors, {size} bytes ({size / 1024:.1f} KiB) to {path}")


if __name__ == "__main__":
    main()
