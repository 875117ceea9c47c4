#!/usr/bin/env python3
"""Golden fixture for the Optim target: AdamW + warmup-cosine schedule + grad-norm clipping.

Writes Tests/OptimTests/Fixtures/adamw.bin (a few KB), which OptimTests replays through
`AdamW`, `WarmupCosineSchedule` and `clipGradNorm`, comparing every parameter after every step.

Regenerate from the repository root:

    pip install -r Tools/reference/requirements.txt
    python3 Tools/reference/optim_reference.py

File format "MIMF" (written by fixture_io.py; every integer is a little-endian UInt32, every value a
little-endian float32):
    magic "MIMF", version 1, tensor count, then per tensor:
    name length, UTF-8 name, rank, rank x dim, prod(dims) x float32.

Tensors written (rank-0 tensors hold one value):
    config.{base_lr,min_lr,warmup_steps,total_steps,warmup_start_lr,
            weight_decay,beta1,beta2,eps,max_norm,steps}
    initial.<param>                 parameters before the first step
    step<k>.lr                      learning rate used at step k (k = 0 ..< steps)
    step<k>.grad.<param>            gradient set at step k, before clipping
    step<k>.grad_norm               global L2 norm returned by clip_grad_norm_ (pre-clip)
    step<k>.param.<param>           parameters after step k
    final.exp_avg.<param>, final.exp_avg_sq.<param>   AdamW moments after the last step
"""

import math
from pathlib import Path

import numpy as np
import torch

from fixture_io import FixtureWriter

BASE_LR = 1e-2
MIN_LR = 1e-4
WARMUP_STEPS = 2
TOTAL_STEPS = 6
WARMUP_START_LR = 0.0
WEIGHT_DECAY = 0.05
BETAS = (0.9, 0.95)
EPS = 1e-8
MAX_NORM = 1.0
STEPS = 6
# Gradient scale per step: the global norm is about 8·scale, so some steps clip and some do not.
GRAD_SCALES = [0.05, 0.3, 0.08, 0.5, 0.1, 0.2]

OUT = Path(__file__).resolve().parents[2] / "Tests/OptimTests/Fixtures/adamw.bin"


def lr_at(step: int) -> float:
    """Per-iteration warmup + cosine, as in docs/methods/common.md#warmup-and-cosine-schedule."""
    if step < WARMUP_STEPS:
        return WARMUP_START_LR + (BASE_LR - WARMUP_START_LR) * step / WARMUP_STEPS
    if step >= TOTAL_STEPS:
        return MIN_LR
    progress = (step - WARMUP_STEPS) / (TOTAL_STEPS - WARMUP_STEPS)
    return MIN_LR + (BASE_LR - MIN_LR) * 0.5 * (1.0 + math.cos(math.pi * progress))


def main() -> None:
    torch.manual_seed(0)
    params = {
        "proj.weight": torch.randn(5, 7),
        "proj.bias": torch.randn(7) * 0.1,
        "blocks.0.kernel": torch.randn(2, 3, 4),
    }
    for p in params.values():
        p.requires_grad_(True)

    decay = [p for n, p in params.items() if n != "proj.bias"]
    no_decay = [params["proj.bias"]]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": WEIGHT_DECAY},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=BASE_LR, betas=BETAS, eps=EPS, foreach=False,
    )

    writer = FixtureWriter()
    record = writer.add

    for key, value in [
        ("base_lr", BASE_LR), ("min_lr", MIN_LR), ("warmup_steps", WARMUP_STEPS),
        ("total_steps", TOTAL_STEPS), ("warmup_start_lr", WARMUP_START_LR),
        ("weight_decay", WEIGHT_DECAY), ("beta1", BETAS[0]), ("beta2", BETAS[1]),
        ("eps", EPS), ("max_norm", MAX_NORM), ("steps", STEPS),
    ]:
        record(f"config.{key}", value)
    for n, p in params.items():
        record(f"initial.{n}", p)

    gen = torch.Generator().manual_seed(1234)
    for k in range(STEPS):
        # Both sides use the float32 learning rate, so the comparison tests the optimizer alone.
        lr = float(np.float32(lr_at(k)))
        for g in opt.param_groups:
            g["lr"] = lr
        record(f"step{k}.lr", lr)
        for n, p in params.items():
            p.grad = torch.randn(p.shape, generator=gen) * GRAD_SCALES[k]
            record(f"step{k}.grad.{n}", p.grad)
        norm = torch.nn.utils.clip_grad_norm_(list(params.values()), max_norm=MAX_NORM)
        record(f"step{k}.grad_norm", norm)
        opt.step()
        for n, p in params.items():
            record(f"step{k}.param.{n}", p)
        print(f"step {k}: lr {lr:.6g}  grad norm {norm.item():.4f}"
              f"{'  (clipped)' if norm.item() > MAX_NORM else ''}")

    for n, p in params.items():
        state = opt.state[p]
        record(f"final.exp_avg.{n}", state["exp_avg"])
        record(f"final.exp_avg_sq.{n}", state["exp_avg_sq"])

    size = writer.write(OUT)
    print(f"wrote {len(writer.records)} tensors, {size} bytes to {OUT}")


if __name__ == "__main__":
    main()
