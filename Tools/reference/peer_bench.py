#!/usr/bin/env python3
"""Peer benchmark: MIMServe training-step speed against PyTorch (Hugging Face models) on the same CPU.

What it measures
    For each preset, one pretraining step = forward with a fresh random mask, backward,
    (SimMIM: clip grad norm 5), AdamW step (MAE betas (0.9, 0.95), SimMIM (0.9, 0.999), wd 0.05
    on weights, none on biases / 1-D params / SimMIM mask token and relative tables), fp32, on
    random normal images. The median ms/step over N timed steps (after W warm-up steps) gives
    images/s; peak RSS is the process high-water mark (getrusage), so the PyTorch figure includes
    the Python + torch runtime (~hundreds of MB) and ours the whole Swift process.
    The PyTorch side uses the equivalent Hugging Face model with random init:
        MAE    -> ViTMAEForPreTraining  (norm_pix_loss, mask ratio 0.75, LN eps 1e-6)
        SimMIM -> SwinForMaskedImageModeling (no absolute embeddings, drop-path 0, LN eps 1e-5,
                  encoder_stride = patch * 2^(stages-1)), with a random bool_masked_pos per step:
                  ceil(units * 0.6) of the mask_unit-px units masked per sample, upsampled to
                  the patch grid and flattened to (B, L).
    The worker asserts that the HF trainable-parameter count equals MIMServe's (computed here
    from the architecture formulas of Sources/Models; fixed sin-cos tables are not parameters).

How to run (from the repository root)
    pip install -r Tools/reference/requirements.txt        # torch (CPU) + transformers
    swift build -c release --product mimserve-bench        # or simply: make bench-peer
    python3 Tools/reference/peer_bench.py                   # 4 default presets, 3 rounds
    python3 Tools/reference/peer_bench.py --paper           # + the two paper-scale presets
    python3 Tools/reference/peer_bench.py --presets mae_vit_tiny_patch4_dec32d1b_32,simmim_swin_tiny_patch2_window4_32:8 --rounds 1
    make bench-peer PEER_ARGS="--rounds 5 --threads 2"

    Driver mode (default): per preset, for --rounds rounds, alternately runs ours
    (`mimserve-bench train ...`, path --ours) and PyTorch (this script with --worker in a fresh
    process, so memory and threads are isolated). Per-run progress and the summary table go to
    stderr; stdout gets one JSON line per preset:
        {"suite":"peer_compare","method","preset","batch","threads","steps","warmup","rounds",
         "ours_ms_per_step","ours_images_per_s","pytorch_ms_per_step","pytorch_images_per_s",
         "vs_pytorch_speed" (= ours images/s / PyTorch images/s, medians over rounds),
         "ours_peak_ratio","ours_peak_rss_mb","pytorch_peak_rss_mb", per-round images/s lists}
    Worker mode (`--worker --preset P --batch B --steps N --warmup W --threads T`) prints one line
        {"suite":"peer","framework":"pytorch","method","preset","batch","threads","steps",
         "ms_per_step","images_per_s","peak_rss_mb", "params", "attn_implementation"}

    Timings are only meaningful on an otherwise idle machine: the script warns on stderr when
    the load average is already high at start.
"""

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Mirrors Sources/Models/Presets.swift (and the Presets sections of docs/methods/).
PRESETS = {
    "mae_vit_tiny_patch4_dec32d1b_32": dict(
        method="mae", image=32, patch=4, dim=64, depth=2, heads=4, decoder=(32, 1, 4), tiny=True),
    "mae_vit_small_patch16_dec512d8b_224": dict(
        method="mae", image=224, patch=16, dim=384, depth=12, heads=6, decoder=(512, 8, 16), tiny=False),
    "mae_vit_base_patch16_dec512d8b_224": dict(
        method="mae", image=224, patch=16, dim=768, depth=12, heads=12, decoder=(512, 8, 16), tiny=False),
    "simmim_swin_tiny_patch2_window4_32": dict(
        method="simmim", image=32, patch=2, dim=32, depths=(2, 2, 2), heads=(2, 4, 8), window=4, unit=8, tiny=True),
    "simmim_swin_tiny_patch4_window7_224": dict(
        method="simmim", image=224, patch=4, dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), window=7, unit=32,
        tiny=False),
    "simmim_swin_base_patch4_window6_192": dict(
        method="simmim", image=192, patch=4, dim=128, depths=(2, 2, 18, 2), heads=(4, 8, 16, 32), window=6, unit=32,
        tiny=False),
}

DEFAULT_RUN = [  # (preset, batch)
    ("mae_vit_tiny_patch4_dec32d1b_32", 16),
    ("simmim_swin_tiny_patch2_window4_32", 16),
    ("mae_vit_small_patch16_dec512d8b_224", 16),
    ("simmim_swin_tiny_patch4_window7_224", 8),
]
PAPER_RUN = [
    ("mae_vit_base_patch16_dec512d8b_224", 8),
    ("simmim_swin_base_patch4_window6_192", 8),
]

MISSING_DEPS = ("peer_bench.py needs PyTorch and transformers ({err}).\n"
                "Install them with:  pip install -r Tools/reference/requirements.txt")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# MIMServe parameter counts from the architecture (Sources/Models: ViT.swift, MAE.swift, Swin.swift,
# SimMIM.swift). Linear(i, o) = i*o + o, LayerNorm(d) = 2d; sin-cos tables are not parameters.

def _lin(i, o, bias=True):
    return i * o + (o if bias else 0)


def _vit_block(d, mlp=4):
    return 2 * d + _lin(d, 3 * d) + _lin(d, d) + 2 * d + _lin(d, mlp * d) + _lin(mlp * d, d)


def ours_param_count(p):
    if p["method"] == "mae":
        D, P = p["dim"], p["patch"]
        Dd, dd, _ = p["decoder"]
        n = _lin(3 * P * P, D) + D  # patch_embed.proj, cls_token
        n += p["depth"] * _vit_block(D) + 2 * D  # blocks, norm
        n += _lin(D, Dd) + Dd  # decoder_embed, mask_token
        n += dd * _vit_block(Dd) + 2 * Dd + _lin(Dd, P * P * 3)  # decoder blocks, norm, pred
        return n
    C, P, w = p["dim"], p["patch"], p["window"]
    n = _lin(3 * P * P, C) + 2 * C + C  # patch_embed.proj + norm, mask_token
    grid, dim = p["image"] // P, C
    stages = len(p["depths"])
    for s, (depth, heads) in enumerate(zip(p["depths"], p["heads"])):
        ws = min(w, grid)  # the window becomes the whole map when the stage is not larger
        blk = _vit_block(dim) + (2 * ws - 1) ** 2 * heads  # + relative_position_bias_table
        n += depth * blk
        if s < stages - 1:  # patch merging: LN(4C), Linear 4C -> 2C without bias
            n += 2 * 4 * dim + _lin(4 * dim, 2 * dim, bias=False)
            dim, grid = 2 * dim, grid // 2
    stride = P * 2 ** (stages - 1)
    n += 2 * dim + _lin(dim, stride * stride * 3)  # final norm, 1x1 conv head
    return n


# ---------------------------------------------------------------------------------------------
# Worker: the PyTorch side of one preset.

def build_hf_model(p):
    if p["method"] == "mae":
        from transformers import ViTMAEConfig, ViTMAEForPreTraining
        Dd, dd, dh = p["decoder"]
        cfg = ViTMAEConfig(
            image_size=p["image"], patch_size=p["patch"], num_channels=3,
            hidden_size=p["dim"], num_hidden_layers=p["depth"], num_attention_heads=p["heads"],
            intermediate_size=4 * p["dim"],
            decoder_hidden_size=Dd, decoder_num_hidden_layers=dd, decoder_num_attention_heads=dh,
            decoder_intermediate_size=4 * Dd,
            mask_ratio=0.75, norm_pix_loss=True, layer_norm_eps=1e-6, qkv_bias=True, hidden_act="gelu",
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        return ViTMAEForPreTraining(cfg)
    from transformers import SwinConfig, SwinForMaskedImageModeling
    stages = len(p["depths"])
    cfg = SwinConfig(
        image_size=p["image"], patch_size=p["patch"], num_channels=3, embed_dim=p["dim"],
        depths=list(p["depths"]), num_heads=list(p["heads"]), window_size=p["window"], mlp_ratio=4.0,
        qkv_bias=True, layer_norm_eps=1e-5, use_absolute_embeddings=False, hidden_act="gelu",
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, drop_path_rate=0.0,
        encoder_stride=p["patch"] * 2 ** (stages - 1))
    return SwinForMaskedImageModeling(cfg)


def adamw_groups(model, method):
    """Weight decay on weights only: not on biases / 1-D params (B11); SimMIM also exempts the
    mask token and relative-position tables (docs/methods/common.md#no-decay-rules)."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        skip = param.ndim <= 1 or name.endswith(".bias")
        if method == "simmim" and ("mask_token" in name or "relative_position_bias_table" in name):
            skip = True
        (no_decay if skip else decay).append(param)
    return [{"params": decay, "weight_decay": 0.05}, {"params": no_decay, "weight_decay": 0.0}]


def simmim_mask(torch, p, batch, gen):
    """(B, L) bool: ceil(units * 0.6) random mask units per sample, upsampled to the patch grid."""
    units_side = p["image"] // p["unit"]
    units = units_side * units_side
    count = math.ceil(units * 0.6)
    scale = p["unit"] // p["patch"]
    order = torch.rand(batch, units, generator=gen).argsort(dim=1)
    m = torch.zeros(batch, units, dtype=torch.bool)
    m.scatter_(1, order[:, :count], True)
    m = m.view(batch, units_side, units_side)
    m = m.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    return m.reshape(batch, -1)


def worker(args):
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as e:
        log(MISSING_DEPS.format(err=e))
        return 2
    p = PRESETS[args.preset]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)

    model = build_hf_model(p).float().train()
    if args.recompute == "both":
        model.gradient_checkpointing_enable()  # transformers' per-layer recomputation
    hf_params = sum(t.numel() for t in model.parameters() if t.requires_grad)
    ours = ours_param_count(p)
    log(f"[worker] {args.preset}: HF trainable params {hf_params:,}  MIMServe params {ours:,}"
        f"  attn {getattr(model.config, '_attn_implementation', '?')}")
    assert hf_params == ours, f"parameter count differs: HF {hf_params} vs MIMServe {ours} ({args.preset})"

    betas = (0.9, 0.95) if p["method"] == "mae" else (0.9, 0.999)
    opt = torch.optim.AdamW(adamw_groups(model, p["method"]), lr=1e-4, betas=betas, eps=1e-8)
    images = torch.randn(args.batch, 3, p["image"], p["image"], generator=gen)

    # bf16: PyTorch's own mixed precision (autocast runs matmuls and convolutions in bf16, the
    # rest in fp32), the set-up a PyTorch user would switch on; backward follows the forward's types.
    bf16 = args.precision == "bf16"

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if p["method"] == "mae":
                loss = model(pixel_values=images).loss  # fresh random mask (noise) inside each forward
            else:
                mask = simmim_mask(torch, p, args.batch, gen)
                loss = model(pixel_values=images, bool_masked_pos=mask).loss
        loss.backward()
        if p["method"] == "simmim":
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        return loss

    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t0)
    if not math.isfinite(loss.item()):
        log(f"[worker] warning: non-finite loss {loss.item()}")
    ms = statistics.median(times) * 1000
    rec = {
        "suite": "peer", "framework": "pytorch", "method": p["method"], "preset": args.preset, "precision": args.precision,
        "batch": args.batch, "threads": torch.get_num_threads(), "steps": args.steps,
        "ms_per_step": round(ms, 3), "images_per_s": round(args.batch / (ms / 1000), 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "params": hf_params, "attn_implementation": getattr(model.config, "_attn_implementation", None),
        "torch": torch.__version__, "transformers": transformers.__version__,
    }
    if args.profile:
        rec.update(profile_steps(torch, step, args.steps))
    print(json.dumps(rec), flush=True)
    return 0


# The ATen ops that are GEMMs (matrix products and convolutions), by self time: under autocast
# they run on oneDNN's bf16 kernels, in fp32 on MKL-DNN / OpenBLAS sgemm.
GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm", "aten::mkldnn_convolution",
            "aten::_mkldnn_convolution", "aten::mkldnn_linear", "aten::_convolution", "aten::convolution_backward")


def profile_steps(torch, step, steps):
    """`--profile` (worker): `steps` more steps under torch.profiler, and the GEMMs' share of them:
    the ATen GEMM ops' self time on the thread that calls them (their intra-op threads work
    inside that call), forward and backward."""
    from torch.profiler import profile, ProfilerActivity
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    wall = (time.perf_counter() - t0) / steps
    gemm_us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in GEMM_OPS)
    return {"profiled_ms_per_step": round(wall * 1000, 1), "gemm_ms_per_step": round(gemm_us / 1000 / steps, 1),
            "gemm_share": round(gemm_us / 1e6 / steps / wall, 3)}


def infer_worker(args):
    """Eval-mode forward alone (no image decoding, no output encoding): the pretraining model's
    forward for a reconstruction, the encoder's pooled output for features."""
    import torch
    p = PRESETS[args.preset]
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    model = build_hf_model(p).float().eval()
    images = torch.randn(args.batch, 3, p["image"], p["image"], generator=gen)
    bf16 = args.precision == "bf16"

    def reconstruct():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if p["method"] == "mae":
                return model(pixel_values=images).logits
            return model(pixel_values=images, bool_masked_pos=simmim_mask(torch, p, args.batch, gen)).reconstruction

    def features():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if p["method"] == "mae":
                model.vit.config.mask_ratio = 0.0
                out = model.vit(pixel_values=images).last_hidden_state[:, 1:].mean(dim=1)
                model.vit.config.mask_ratio = 0.75
                return out
            return model.swin(pixel_values=images).pooler_output

    def median_ms(fn):
        for _ in range(max(1, args.warmup)):
            fn()
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1000

    rec = {"suite": "peer_infer", "framework": "pytorch", "method": p["method"], "preset": args.preset,
           "precision": args.precision, "batch": args.batch, "threads": torch.get_num_threads(),
           "reconstruct_ms": round(median_ms(reconstruct), 3), "features_ms": round(median_ms(features), 3)}
    print(json.dumps(rec), flush=True)
    return 0


def infer_driver(args):
    """`mimserve-bench infer` (model alone and end to end) against PyTorch's forward alone."""
    ours = Path(args.ours)
    if not ours.is_absolute():
        ours = REPO / ours
    results = []
    precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    for (preset, _), precision in ((p, q) for p in selected(args) for q in precisions):
        method = PRESETS[preset]["method"]
        proc = subprocess.run([str(ours), "infer", "--presets", f"{method}:{preset}", "--threads", str(args.threads),
                               "--precision", precision], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            log(proc.stderr)
            raise SystemExit("mimserve-bench infer failed")
        ours_rows = [json.loads(l) for l in proc.stdout.splitlines() if l.startswith("{")]
        for batch in (1, 8):
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--infer", "--preset", preset,
                   "--batch", str(batch), "--steps", str(args.steps or 5), "--warmup", "1",
                   "--threads", str(args.threads), "--precision", precision]
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
            torch_rec, _ = run_child(cmd, "pytorch infer worker", env=env)
            for task in ("reconstruct", "features"):
                o = next(r for r in ours_rows if r["task"] == task and r["batch"] == batch)
                t_ms = torch_rec[f"{task}_ms"]
                # Reconstruction takes one image per request: batch 8 is 8 requests sent at once (which the
                # service batches) against one batched torch forward.
                rec = {"suite": "peer_infer_compare", "preset": preset, "precision": precision, "task": task, "batch": batch,
                       "threads": args.threads,
                       "ours_model_ms": o["model_ms"], "ours_end_to_end_ms": o["end_to_end_ms"], "pytorch_forward_ms": t_ms,
                       "ours_passes": o.get("passes_per_run"),
                       "model_vs_pytorch": round(t_ms / o["model_ms"], 3),
                       "end_to_end_vs_pytorch_forward": round(t_ms / o["end_to_end_ms"], 3)}
                print(json.dumps(rec), flush=True)
                results.append(rec)
    cols = [("preset", lambda r: r["preset"]), ("precision", lambda r: r["precision"]), ("task", lambda r: r["task"]),
            ("batch", lambda r: str(r["batch"])), ("ours model ms", lambda r: f"{r['ours_model_ms']:.1f}"), ("ours e2e ms", lambda r: f"{r['ours_end_to_end_ms']:.1f}"),
            ("torch fwd ms", lambda r: f"{r['pytorch_forward_ms']:.1f}"),
            ("model ×", lambda r: f"{r['model_vs_pytorch']:.2f}"), ("e2e vs torch fwd ×", lambda r: f"{r['end_to_end_vs_pytorch_forward']:.2f}")]
    log("")
    log("Inference: ours (model alone; end to end: decode, resize, model, PNG or rows) against PyTorch's forward alone; × = torch ms / ours ms")
    log(fmt_table(results, cols))
    return 0


# ---------------------------------------------------------------------------------------------
# Driver.

def last_json_line(text, who):
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"{who} printed no JSON line")


def run_child(cmd, who, env=None):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        log(proc.stderr)
        raise SystemExit(f"{who} failed (exit {proc.returncode}): {' '.join(cmd)}")
    return last_json_line(proc.stdout, who), proc.stderr


def run_ours(ours, preset, batch, steps, warmup, threads, precision="fp32", recompute=False):
    method = PRESETS[preset]["method"]
    cmd = [str(ours), "train", "--method", method, "--preset", preset, "--batch", str(batch),
           "--steps", str(steps), "--warmup", str(warmup), "--threads", str(threads), "--precision", precision]
    cmd += ["--recompute"] if recompute else []
    rec, _ = run_child(cmd, "mimserve-bench")
    return rec


def run_peer(preset, batch, steps, warmup, threads, precision="fp32", recompute=False):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--preset", preset, "--batch", str(batch),
           "--steps", str(steps), "--warmup", str(warmup), "--threads", str(threads), "--precision", precision]
    cmd += ["--recompute", "both"] if recompute else []
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    rec, err = run_child(cmd, "pytorch worker", env=env)
    for line in err.splitlines():
        if line.startswith("[worker]"):
            log("    " + line)
    return rec


def selected(args):
    if args.presets:
        run = []
        defaults = dict(DEFAULT_RUN + PAPER_RUN)
        for item in args.presets.split(","):
            name, _, b = item.strip().partition(":")
            if name not in PRESETS:
                raise SystemExit(f"unknown preset '{name}'; choose from {', '.join(PRESETS)}")
            run.append((name, int(b) if b else defaults[name]))
    else:
        run = DEFAULT_RUN + (PAPER_RUN if args.paper else [])
    if args.batch:
        run = [(name, args.batch) for name, _ in run]
    return run


def fmt_table(rows, cols):
    cells = [[c for c, _ in cols]] + [[f(r) for _, f in cols] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cols))]
    lines = ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def driver(args):
    import importlib.util
    run = selected(args)
    missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
    if missing:
        log(MISSING_DEPS.format(err="missing: " + ", ".join(missing)))
        return 2
    ours = Path(args.ours)
    if not ours.is_absolute() and not ours.exists():
        ours = REPO / ours
    if not ours.exists():
        log(f"MIMServe bench binary not found at {args.ours}; build it with\n"
            f"  swift build -c release --product mimserve-bench     (or: make bench-peer)")
        return 2
    load1 = os.getloadavg()[0]
    if load1 > (os.cpu_count() or 2) / 2:
        log(f"note: load average is {load1:.2f} at start; other work on the machine will skew these timings")

    precisions = ["fp32", "bf16"] if args.precision == "both" else [args.precision]
    results = []
    for preset, batch in run:
        tiny = PRESETS[preset]["tiny"]
        steps = args.steps or (args.tiny_steps if tiny else args.large_steps)
        warmup = args.warmup if args.warmup is not None else (args.tiny_warmup if tiny else args.large_warmup)
        for precision in precisions:
            rec = compare(ours, preset, batch, steps, warmup, precision, args)
            print(json.dumps(rec), flush=True)
            results.append(rec)

    cols = [
        ("preset", lambda r: r["preset"]), ("batch", lambda r: str(r["batch"])), ("precision", lambda r: r["precision"]),
        ("threads", lambda r: str(r["threads"])), ("recompute", lambda r: r["recompute"]),
        ("ours ms", lambda r: f"{r['ours_ms_per_step']:.2f}"), ("torch ms", lambda r: f"{r['pytorch_ms_per_step']:.2f}"),
        ("ours img/s", lambda r: f"{r['ours_images_per_s']:.1f}"),
        ("torch img/s", lambda r: f"{r['pytorch_images_per_s']:.1f}"),
        ("vs_pytorch", lambda r: f"{r['vs_pytorch_speed']:.2f}x"),
        # Our fp32 step's FLOP rate over the run's fp32 sgemm peak; a bf16 step is not measured
        # against an fp32 peak, and a recomputing one's rate counts the forward passes it repeats.
        ("fp32 peak_ratio", lambda r: f"{r['ours_peak_ratio']:.3f}" if r["precision"] == "fp32" and r["recompute"] == "none" else "–"),
        ("ours RSS MB", lambda r: f"{r['ours_peak_rss_mb']:.0f}"),
        ("torch RSS MB", lambda r: f"{r['pytorch_peak_rss_mb']:.0f}"),
        ("RSS ratio", lambda r: f"{r['ours_peak_rss_mb'] / r['pytorch_peak_rss_mb']:.2f}"),
    ]
    log("")
    log(f"MIMServe vs PyTorch training step (median of {args.rounds} round(s); vs_pytorch = ours img/s / torch img/s;"
        f" bf16 rows: ours with precision bf16 against PyTorch under torch.autocast bf16)")
    log(fmt_table(results, cols))
    return 0


def compare(ours, preset, batch, steps, warmup, precision, args):
    """Alternating rounds of ours and PyTorch in one precision; medians, and both peak RSS."""
    o_runs, t_runs = [], []
    for r in range(args.rounds):
        o = run_ours(ours, preset, batch, steps, warmup, args.threads, precision, args.recompute != "none")
        o_runs.append(o)
        log(f"  {preset} b{batch} {precision} round {r + 1}/{args.rounds}: ours {o['ms_per_step']:.2f} ms/step "
            f"({o['images_per_s']:.1f} img/s)")
        t = run_peer(preset, batch, steps, warmup, args.threads, precision, args.recompute == "both")
        t_runs.append(t)
        log(f"  {preset} b{batch} {precision} round {r + 1}/{args.rounds}: pytorch {t['ms_per_step']:.2f} ms/step "
            f"({t['images_per_s']:.1f} img/s)")
    o_ms = statistics.median(x["ms_per_step"] for x in o_runs)
    t_ms = statistics.median(x["ms_per_step"] for x in t_runs)
    o_ips, t_ips = batch / (o_ms / 1000), batch / (t_ms / 1000)
    return {
        "suite": "peer_compare", "method": PRESETS[preset]["method"], "preset": preset, "batch": batch, "precision": precision,
        "recompute": args.recompute,
        "threads": args.threads, "steps": steps, "warmup": warmup, "rounds": args.rounds,
        "ours_ms_per_step": round(o_ms, 3), "ours_images_per_s": round(o_ips, 2),
        "pytorch_ms_per_step": round(t_ms, 3), "pytorch_images_per_s": round(t_ips, 2),
        "vs_pytorch_speed": round(o_ips / t_ips, 3),
        "ours_peak_ratio": round(statistics.median(x.get("peak_ratio", float("nan")) for x in o_runs), 4),
        "ours_gflops": round(statistics.median(x.get("gflops", float("nan")) for x in o_runs), 2),
        "ours_peak_rss_mb": round(max(x.get("peak_rss_mb", 0) for x in o_runs), 1),
        "pytorch_peak_rss_mb": round(max(x["peak_rss_mb"] for x in t_runs), 1),
        "ours_images_per_s_rounds": [round(x["images_per_s"], 2) for x in o_runs],
        "pytorch_images_per_s_rounds": [round(x["images_per_s"], 2) for x in t_runs],
        "params": t_runs[0].get("params"),
    }


def cpu_has_bf16():
    try:
        with open("/proc/cpuinfo") as f:
            return any(("avx512_bf16" in line or "amx_bf16" in line) for line in f if line.startswith("flags"))
    except OSError:
        return False


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worker", action="store_true", help="run the PyTorch side of one preset and print one JSON line")
    ap.add_argument("--profile", action="store_true",
                    help="(worker) after the timed steps, profile as many more: the GEMMs' share of PyTorch's step")
    ap.add_argument("--preset", help="(worker) preset name")
    ap.add_argument("--presets", help="(driver) comma-separated preset names, each optionally name:batch")
    ap.add_argument("--paper", action="store_true", help="(driver) also run the two paper-scale presets")
    ap.add_argument("--batch", type=int, help="batch size for every selected preset (overrides the defaults)")
    ap.add_argument("--threads", type=int, default=2, help="compute threads for both sides (default 2)")
    ap.add_argument("--precision", choices=["fp32", "bf16", "both"],
                    help="fp32; bf16 for both sides (ours: precision bf16; PyTorch: torch.autocast bf16); or both, "
                         "one after the other (default: both where the CPU has AVX512_BF16 or AMX, else fp32)")
    ap.add_argument("--recompute", choices=["none", "ours", "both"], default="none",
                    help="per-block recomputation: none; ours alone (against PyTorch's plain step); "
                         "both (PyTorch with transformers' gradient checkpointing)")
    ap.add_argument("--rounds", type=int, default=3, help="(driver) alternating rounds per preset (default 3)")
    ap.add_argument("--steps", type=int, help="timed steps for every preset (overrides the per-size defaults)")
    ap.add_argument("--warmup", type=int, help="warm-up steps for every preset (overrides the per-size defaults)")
    ap.add_argument("--tiny-steps", type=int, default=30)
    ap.add_argument("--tiny-warmup", type=int, default=5)
    ap.add_argument("--large-steps", type=int, default=3)
    ap.add_argument("--large-warmup", type=int, default=1)
    ap.add_argument("--infer", action="store_true",
                    help="inference latency instead of training steps: `mimserve-bench infer` against PyTorch's forward")
    ap.add_argument("--ours", default=".build/release/mimserve-bench",
                    help="path of the mimserve-bench binary (default .build/release/mimserve-bench)")
    args = ap.parse_args()
    if args.precision is None:
        args.precision = "fp32" if args.worker or not cpu_has_bf16() else "both"
    if args.worker:
        if args.preset not in PRESETS:
            ap.error(f"--worker needs --preset, one of {', '.join(PRESETS)}")
        p = PRESETS[args.preset]
        if args.batch is None:
            args.batch = 16 if p["tiny"] else 8
        if args.steps is None:
            args.steps = args.tiny_steps if p["tiny"] else args.large_steps
        if args.warmup is None:
            args.warmup = args.tiny_warmup if p["tiny"] else args.large_warmup
        return infer_worker(args) if args.infer else worker(args)
    return infer_driver(args) if args.infer else driver(args)


if __name__ == "__main__":
    sys.exit(main())
