"""What Boost's image bases keep of an image, at equal storage: pixel error and the teacher's agreement.

For each basis side and image rank, the ``images`` sizing fills the rest of the budget with images (m), and
1,000 held-out training images are coded with PCA bases fitted on 20,000 others, decoded exactly as a
bundle decodes them (bilinear upsampling to the source side), and compared with the originals:

* ``pixel_err``: squared error over the originals' variance, in the normalised space the student sees;
* ``teacher_cos``: mean cosine between the teacher's representations of decoded and original images;
* ``teacher_err``: squared error of those representations over their variance.

No training: a few minutes of one core. Prints a Markdown table and writes JSON.

    python benchmarks/coding.py --data-root ../shared/datasets --teacher benchmarks/teachers/cpu-convnet4s-4k.safetensors
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ssdd_cli import __version__, api, augment
from ssdd_cli.errors import ConfigError
from ssdd_cli.methods.init import downsample_flat
from ssdd_cli.methods.pca import pca
from ssdd_cli.methods.synthetic import decode_flat
from ssdd_cli.storage import auto_size

#: (basis side, image rank) pairs; the preset's is (16, 100)
CONFIGS = ((16, 100), (16, 64), (16, 200), (16, 300), (24, 50), (24, 100), (24, 150), (32, 30), (32, 50),
           (32, 75), (8, 100), (8, 192))
VIEWS = ("identity", "rot90", "rot180", "rot270")


def main() -> None:
    """Code held-out images at each configuration and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="cifar100")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--budget", type=int, default=100)
    ap.add_argument("--repr-rank", type=int, default=100)
    ap.add_argument("--fit", type=int, default=20_000, help="training images the PCA bases are fitted on")
    ap.add_argument("--coded", type=int, default=1_000, help="other training images coded and compared")
    ap.add_argument("--out", default="benchmarks/results/coding.json")
    args = ap.parse_args()

    data = api.load_dataset(args.dataset, data_root=args.data_root)
    teacher = api.load_teacher(args.teacher, torch.device("cpu"))
    side_full, c = data.image_size, data.num_channels
    order = torch.randperm(data.train_images.shape[0], generator=torch.Generator().manual_seed(1))
    fit, coded = data.train_images[order[: args.fit]], data.train_images[order[args.fit : args.fit + args.coded]]
    raw = augment.to_float(coded)
    original = augment.normalize(raw, data.mean, data.std)
    t_orig = teacher.represent(raw)
    spread = float(((t_orig - t_orig.mean(0)) ** 2).sum())
    rows = []
    t0 = time.perf_counter()
    for side, rank in CONFIGS:
        try:
            size = auto_size(args.budget, channels=c, image_size=side_full, repr_dim=teacher.repr_dim, views=VIEWS,
                             basis_size=side, image_rank=rank, repr_rank=args.repr_rank, sizing="images")
        except ConfigError:
            continue  # these ranks leave no room for images at this budget
        mu, basis, _ = pca(lambda side=side: downsample_flat(fit, side, data.mean, data.std), rank, dim=c * side * side)
        small = next(downsample_flat(coded, side, data.mean, data.std, chunk=len(coded)))
        x = decode_flat(((small - mu) @ basis.T) @ basis + mu, c, side_full)
        pixel_err = float(((x - original) ** 2).sum() / ((original - original.mean(0)) ** 2).sum())
        t_dec = teacher.represent(augment.denormalize(x, data.mean, data.std))
        rows.append({"side": side, "image_rank": rank, "m": size.num_images, "pixel_err": round(pixel_err, 4),
                     "teacher_cos": round(float(F.cosine_similarity(t_dec, t_orig).mean()), 4),
                     "teacher_err": round(float(((t_dec - t_orig) ** 2).sum()) / spread, 4)})
        print(json.dumps(rows[-1]), flush=True)
    record = {"name": "coding", "dataset": data.name, "budget": args.budget, "repr_rank": args.repr_rank,
              "teacher": teacher.describe(), "ssdd": __version__, "torch": torch.__version__, "params": vars(args),
              "seconds": round(time.perf_counter() - t0, 1), "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=1))
    print(f"\n{data.name}, budget {args.budget}, V = {args.repr_rank}: images sizing, {args.coded} coded images\n")
    print("| basis side | image rank U | images m | pixel error | teacher cosine | teacher error |")
    print("|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: -r["m"]):
        print(f"| {r['side']} | {r['image_rank']} | {r['m']:,} | {r['pixel_err']:.3f} | {r['teacher_cos']:.3f} | "
              f"{r['teacher_err']:.3f} |")


if __name__ == "__main__":
    main()
