#!/usr/bin/env bash
# The whole pipeline on the built-in `shapes` dataset, sized for a 2-core CPU (about 5.5 minutes):
# teacher -> distill (Boost) -> inspect -> expand -> evaluate against random real images.
# Images are resized to 16 px so that the teacher trains 1,000 steps in a few minutes on a CPU
# without bf16 units; the commands are the same at any size (drop --image-size for 32 px).
set -euo pipefail
# Reproducible numbers: two threads and fp32 everywhere (bf16 kernels differ between CPU families,
# and the summation order follows the thread count).
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2} MKL_NUM_THREADS=${MKL_NUM_THREADS:-2}
OUT=${OUT:-demo-out}
export SSDD_CACHE=${SSDD_CACHE:-$OUT/cache}
mkdir -p "$OUT"
start=$(date +%s)

echo "== 1/5 teacher: Barlow Twins on shapes at 16 px (CPU preset, 1,000 steps)"
ssdd teacher shapes --image-size 16 --preset cpu --steps 1000 --no-amp -o "$OUT/teacher.safetensors" --overwrite

# The cpu preset spends the budget on many images (U = V = N, m from the rest) and runs no outer
# steps: on CPU-sized runs they lowered the accuracy of the initialised set (docs/cpu-preset.md).
echo "== 2/5 distill: Boost, budget N=20 image-equivalents"
ssdd distill shapes --image-size 16 --teacher "$OUT/teacher.safetensors" --preset cpu --budget 20 --no-amp \
    -o "$OUT/boost.safetensors" --overwrite

echo "== 3/5 inspect"
ssdd inspect "$OUT/boost.safetensors" --verify

echo "== 4/5 expand"
ssdd expand "$OUT/boost.safetensors" -o "$OUT/expanded" --overwrite

echo "== 5/5 evaluate: distilled set vs random real images at the same budget, floor and teacher"
ssdd evaluate "$OUT/boost.safetensors" --preset cpu --no-amp --baseline random --epochs 300 --probe-steps 2000 --seeds 3 \
    --json "$OUT/report.json" --overwrite

echo "demo finished in $(( $(date +%s) - start )) s; outputs in $OUT/ (grids: $OUT/expanded/grid_*.png)"
