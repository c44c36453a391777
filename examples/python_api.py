"""The pipeline through the Python API, at toy size on the built-in `shapes` data (about a minute on CPU).

python examples/python_api.py [--steps 30] [--out example-out]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ssdd_cli import api


def main(steps: int = 30, out: str = "example-out", image_size: int = 32) -> float:
    """Train a tiny teacher, distil with Boost, expand the pairs, and probe a model pretrained on them."""
    dev = api.resolve_device("auto")
    data = api.load_dataset("shapes", image_size=image_size)
    teacher = api.make_teacher(data, api.teacher_config("cpu", num_steps=steps, batch_size=64), device=dev)
    # The paper's sizing keeps this toy set small (20 images); the cpu preset's own `images` sizing
    # would buy about a thousand images with the same budget at 32 px.
    cfg = api.distill_config("boost", "cpu", image_size, budget=20, num_steps=steps, batch_size=64, pool_online_steps=10,
                             sizing="paper")
    result = api.distill(data, teacher, cfg, device=dev)
    path = Path(out) / "set.safetensors"
    api.save_distilled(result, path, overwrite=True)
    bundle = api.load_bundle(path)
    images, targets = api.expand_pairs(bundle, device=dev)
    print(f"{bundle.method}: {bundle.num_images} images x {len(bundle.views)} views -> pairs {tuple(images.shape)}, "
          f"targets {tuple(targets.shape)}; storage {bundle.storage().cost:.2f} of N={bundle.meta.budget}")
    ecfg = api.eval_config("cpu", pretrain_epochs=20, probe_steps=200)
    acc = api.evaluate_pairs(images, targets, data, ecfg, seed=0, device=dev)
    print(f"linear probe after pretraining on the distilled pairs: {acc:.1f}%")
    return acc


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--out", default="example-out")
    a = ap.parse_args()
    main(a.steps, a.out)
