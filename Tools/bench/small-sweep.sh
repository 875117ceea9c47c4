#!/usr/bin/env bash
# The small presets' recipe sweep (docs/methods/README.md#small-presets): batch, warm-up and mask
# ratio around each preset's recipe, at a fixed number of pretraining steps (about two minutes
# of the 2-core EPYC), then a linear probe and k-NN on 10 000 / 2 000 Fashion-MNIST images.
# Lengths are steps, not minutes, so the sweep gives the same numbers on a busy machine; a batch
# of 32 gets twice the steps and a batch of 128 half, so every point sees the same images.
#
#   Tools/bench/small-sweep.sh [BENCH] [OUT]   (BENCH: a release mimserve-bench; OUT: JSON lines)
set -euo pipefail
bench=${1:-.build/release/mimserve-bench}
out=${2:-small-sweep.jsonl}

# method, steps at batch 64, mask ratios to try besides the preset's. One method of each encoder
# family (ViT: MAE; Swin: SimMIM); the other four share their family's recipe.
points=(
    "mae 600 0.6,0.9"
    "simmim 480 0.4,0.8"
)

run() { # method steps [--set k=v]...
    local method=$1 steps=$2; shift 2
    echo "== $method $steps $*" >&2
    "$bench" quality --methods "$method" --probe-only --pretrain-steps "$steps" "$@" | grep '^{' >> "$out"
}

for point in "${points[@]}"; do
    read -r method steps ratios <<< "$point"
    warm=$((steps / 20)) # the recipe's 5 %
    run "$method" "$steps" --set warmup_steps=$warm
    for r in ${ratios//,/ }; do run "$method" "$steps" --set warmup_steps=$warm --set mask_ratio="$r"; done
    run "$method" $((steps * 2)) --set warmup_steps=$((warm * 2)) --set batch_size=32
    run "$method" $((steps / 2)) --set warmup_steps=$((warm / 2)) --set batch_size=128
    run "$method" "$steps" --set warmup_steps=0
    run "$method" "$steps" --set warmup_steps=$((steps / 5))
done
