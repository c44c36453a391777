#!/usr/bin/env bash
# The whole pipeline on the built-in `shapes` dataset, sized for a 2-core CPU (a few minutes):
# teacher -> distill (Boost) -> inspect -> expand -> evaluate against random real images.
set -euo pipefail
OUT=${OUT:-demo-out}
export SSDD_CACHE=${SSDD_CACHE:-$OUT/cache}
mkdir -p "$OUT"
start=$(date +%s)

echo "== 1/5 teacher: Barlow Twins on shapes (CPU preset, short)"
ssdd teacher shapes --preset cpu --steps 300 -o "$OUT/teacher.safetensors" --overwrite

echo "== 2/5 distill: Boost, budget N=20 image-equivalents"
ssdd distill shapes --teacher "$OUT/teacher.safetensors" --preset cpu --budget 20 --steps 300 \
    -o "$OUT/boost.safetensors" --overwrite

echo "== 3/5 inspect"
ssdd inspect "$OUT/boost.safetensors" --verify

echo "== 4/5 expand"
ssdd expand "$OUT/boost.safetensors" -o "$OUT/expanded" --overwrite

echo "== 5/5 evaluate: distilled set vs random real images at the same budget, floor and teacher"
ssdd evaluate "$OUT/boost.safetensors" --preset cpu --baseline random --epochs 300 --probe-steps 2000 --seeds 2 \
    --json "$OUT/report.json" --overwrite

echo "demo finished in $(( $(date +%s) - start )) s; outputs in $OUT/ (grids: $OUT/expanded/grid_*.png)"
