"""Side by side with the reference KRR-ST code: one reference outer step, then one ssdd step, alternately.

Used by ``benchmarks/speed.py --against-reference PATH``. The reference (db-Lee/selfsup_dd, Apache-2.0)
is imported from PATH for measuring only; ssdd_cli never imports it. Both sides get the same teacher
(ssdd's ResNet-18, random weights, 512-d), the same initial synthetic set and the same real data held
as a tensor (so the reference's DataLoader and PIL decoding are *not* timed against it), at the paper's
configuration: N = 100 images, real batch 1,024, a pool of 10 ConvNets 128-256-512, KRR in the outer
loss, one online step of the sampled pool model per outer step. The reference needs ``tqdm`` and
``kornia`` (``pip install tqdm kornia``).
"""

from __future__ import annotations

# ruff: noqa: B023 - the timed lambdas run at once, inside the loop iteration that defines them
import dataclasses
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from ssdd_cli import api
from ssdd_cli.config import distill_config
from ssdd_cli.device import autocast, bf16_is_fast, sync
from ssdd_cli.methods.distill import RealBatches, make_outer_step
from ssdd_cli.methods.pool import ModelPool
from ssdd_cli.models import create_model
from ssdd_cli.models.fold import embed_folded
from ssdd_cli.teacher import Teacher, save_teacher


class _Target(torch.nn.Module):
    """The reference's ``target_model``: the teacher's representation of already-normalised images."""

    def __init__(self, teacher: Teacher) -> None:
        super().__init__()
        self.backbone = teacher.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.backbone.represent(x)


def _reference_step(path: Path, data, teacher: Teacher, xs0: torch.Tensor, ys0: torch.Tensor, *, batch: int,  # type: ignore[no-untyped-def]
                    pool_size: int, online_steps: int, device: torch.device):
    """The reference's own outer step with its model pool, outer optimizer and kornia augmentation."""
    sys.path.insert(0, str(path))
    from algorithms.distill import run  # type: ignore[import-not-found]
    from data.augmentation import get_aug  # type: ignore[import-not-found]
    from model_pool import ModelPool as RefPool  # type: ignore[import-not-found]

    args = SimpleNamespace(online_iteration=online_steps, num_models=pool_size, train_model="convnet_128_256_512_bn",
                           img_shape=(3, 32, 32), num_pretrain_classes=teacher.repr_dim, online_opt="sgd",
                           online_lr=0.1, online_wd=1e-3, outer_grad_norm=0.0)
    x_syn = xs0.clone().to(device).requires_grad_(True)
    y_syn = ys0.clone().to(device).requires_grad_(True)
    pool = RefPool(args, device)
    pool.init(x_syn.detach(), y_syn.detach())
    opt = torch.optim.AdamW([x_syn, y_syn], lr=1e-4, weight_decay=0.0)
    aug = get_aug("cifar100", 32, True)[0]
    images = data.train_images
    gen = torch.Generator().manual_seed(0)

    def batches():  # type: ignore[no-untyped-def]
        while True:
            idx = torch.randint(0, images.shape[0], (batch,), generator=gen)
            yield images[idx].float().div(255).to(device), None

    it = batches()
    target = _Target(teacher)
    return lambda: run(args, device, target, pool, opt, it, aug, x_syn, y_syn)


def _ssdd_state(data, teacher: Teacher, cfg, device: torch.device):  # type: ignore[no-untyped-def]
    """The initial distilled set (and its support pairs), a warmed-up model pool and the outer optimizer."""
    res = api.distill(data, teacher, dataclasses.replace(cfg, num_steps=0, teacher_cache=0), device=device)
    synth = res.synthetic.to(device)
    with torch.no_grad():
        xs0, ys0 = synth.support()
    pool = ModelPool(arch=cfg.pool_arch, image_size=data.image_size, out_dim=teacher.repr_dim, size=cfg.pool_size,
                     online_steps=cfg.pool_online_steps, seed=cfg.seed, device=device, amp=cfg.amp)
    pool.warm_up(xs0, ys0)
    params = [p for p in synth.parameters() if p.requires_grad]
    return synth, xs0, ys0, pool, params, torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)


def _ssdd_step(data, teacher: Teacher, cfg, device: torch.device, cache: str | None = None):  # type: ignore[no-untyped-def]
    """The outer step of ssdd exactly as its loop runs it (``make_outer_step`` + the AdamW update)."""
    synth, xs0, ys0, pool, params, opt = _ssdd_state(data, teacher, cfg, device)
    views = (api.teacher_view_cache(teacher, data, cfg.teacher_cache, cache=cache, amp=cfg.amp)
             if cfg.teacher_cache else None)
    real = RealBatches(data.train_images, cfg.batch_size, data.mean, data.std, cfg.seed, device, cached=views)
    step, after = make_outer_step(synth, teacher, cfg, pool, real)

    def one() -> None:
        opt.zero_grad(set_to_none=True)
        step(0).backward(inputs=params)
        opt.step()
        after(0)

    return one, xs0.detach().cpu(), ys0.detach().cpu()


def _breakdown(data, teacher: Teacher, cfg, device: torch.device, repeats: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """Median seconds of each part of an ssdd step (the parts of ``make_outer_step``, timed one by one)."""
    from ssdd_cli.methods.distill import outer_loss

    synth, _, _, pool, params, opt = _ssdd_state(data, teacher, cfg, device)
    real = RealBatches(data.train_images, cfg.batch_size, data.mean, data.std, cfg.seed, device)
    times: dict[str, list[float]] = {}

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        out = fn()
        sync(device)
        times.setdefault(name, []).append(time.perf_counter() - t0)
        return out

    for _ in range(repeats + 1):
        xr = timed("real batch + augmentation", lambda: real.next().contiguous(memory_format=torch.channels_last))
        target = timed("teacher forward", lambda: teacher.represent_normalized(xr, cfg.amp))
        i = pool.sample()
        xs, ys = timed("support decode", lambda: synth.support())
        with torch.no_grad():
            with autocast(device, cfg.amp):  # of which: the real batch alone (as the step computes it)
                timed("  of which pool forward, real batch", lambda: embed_folded(pool.models[i].eval(), xr))
        loss = timed("pool forward (real + support) + KRR", lambda: outer_loss(pool.models[i], xs, ys, xr, target,
                                                                               ridge=cfg.ridge, amp=cfg.amp))
        timed("outer backward", lambda: loss.backward(inputs=params))
        timed("AdamW update", lambda: (opt.step(), opt.zero_grad(set_to_none=True)))
        timed("pool online step", lambda: pool.update(i, *[t.detach() for t in synth.support()]))
    return {k: statistics.median(v[1:]) for k, v in times.items()}


def _step_flops(data, teacher: Teacher, cfg, device: torch.device) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """FLOPs of one step's parts (torch's FLOP counter: matmuls and convolutions, forward and backward)."""
    from torch.utils.flop_counter import FlopCounterMode

    pool_model = create_model(cfg.pool_arch, image_size=32, out_dim=teacher.repr_dim, seed=0).eval()
    x = torch.randn(cfg.batch_size, 3, 32, 32)
    xs = torch.randn(100, 3, 32, 32, requires_grad=True)
    out: dict[str, float] = {}
    for name, fn in (("teacher forward", lambda: teacher.model.cpu().represent(x)),
                     ("pool forward, real batch", lambda: pool_model.embed(x)),
                     ("support forward + backward", lambda: pool_model.embed(xs).sum().backward()),
                     ("pool online step", lambda: pool_model.train()(xs).sum().backward())):
        counter = FlopCounterMode(display=False)
        with counter:
            fn()
        out[name] = float(counter.get_total_flops())
        pool_model.eval()
    teacher.to(device)
    return out


def _peak_flops(device: torch.device, dtype: torch.dtype) -> float:
    """Achieved FLOP/s of a large matrix product in ``dtype`` on this machine (the best of 3)."""
    a = torch.randn(2048, 2048, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(4):
        t0 = time.perf_counter()
        a @ a
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * 2048**3 / best


def against_reference(path: Path, *, data_root: str, repeats: int, online_steps: int, device: torch.device,
                      dataset: str = "cifar100", teacher_cache: int = 0) -> dict:
    """Alternate reference and ssdd steps; return per-side timings and the speed ratios."""
    try:
        data = api.load_dataset(dataset, data_root=data_root)
    except Exception:  # noqa: BLE001 - no CIFAR here: the built-in data has the same shapes
        data = api.load_dataset("shapes")
    teacher = Teacher(create_model("resnet18", image_size=32, seed=0), arch="resnet18", image_size=32,
                      mean=data.mean, std=data.std).to(device)
    precisions = [False] + ([True] if bf16_is_fast(device) else [])
    sides: dict[str, object] = {}
    xs0 = ys0 = None
    for amp in precisions:
        cfg = distill_config("krr_st", "paper", 32, budget=100, pool_online_steps=online_steps, amp=amp)
        sides[f"ssdd {'bf16' if amp else 'fp32'}"], xs0, ys0 = _ssdd_step(data, teacher, cfg, device)
    if teacher_cache:
        saved = Path(tempfile.mkdtemp()) / "teacher.safetensors"
        save_teacher(teacher, saved)  # a file, so the cache has a key
        cfg = distill_config("krr_st", "paper", 32, budget=100, pool_online_steps=online_steps, amp=precisions[-1],
                             teacher_cache=teacher_cache)
        name = f"ssdd {'bf16' if precisions[-1] else 'fp32'}, teacher cache K={teacher_cache}"
        sides[name], _, _ = _ssdd_step(data, teacher, cfg, device, cache=str(saved.parent / "cache"))
    sides["reference fp32"] = _reference_step(path, data, teacher, xs0, ys0, batch=1024, pool_size=10,
                                              online_steps=online_steps, device=device)
    times: dict[str, list[float]] = {k: [] for k in sides}
    for round_ in range(repeats + 1):  # round 0 warms every side up and is not counted
        for name, fn in sides.items():
            t0 = time.perf_counter()
            fn()  # type: ignore[operator]
            sync(device)
            if round_:
                times[name].append(time.perf_counter() - t0)
    rows = [{"what": f"KRR-ST outer step, {name}", "s_median": statistics.median(t), "s_min": min(t), "n": len(t)}
            for name, t in times.items()]
    amp = precisions[-1]
    cfg = distill_config("krr_st", "paper", 32, budget=100, pool_online_steps=online_steps, amp=amp)
    parts = _breakdown(data, teacher, cfg, device, repeats)
    flops = _step_flops(data, teacher, cfg, device)
    peak = _peak_flops(device, torch.bfloat16 if amp else torch.float32)
    total_flops = sum(flops.values())
    ref = statistics.median(times["reference fp32"])
    ratios = {name: ref / statistics.median(t) for name, t in times.items() if name.startswith("ssdd")}
    same = {k: v for k, v in ratios.items() if "cache" not in k}
    cached = [v for k, v in ratios.items() if "cache" in k]
    return {"rows": rows, "ratios_vs_reference": ratios, "ratio_same_semantics": max(same.values()),
            "ratio_cached": cached[0] if cached else None,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "breakdown_s": {"precision": "bf16" if amp else "fp32", **parts},
            "flops": {**flops, "total": total_flops},
            "floor": {"matmul_flops_per_s": peak, "precision": "bf16" if amp else "fp32",
                      "step_s_at_matmul_speed": total_flops / peak},
            "config": {"num_images": 100, "real_batch": 1024, "pool": "10 x convnet 128-256-512", "teacher": "resnet18",
                       "data": data.name, "pool_online_steps": online_steps, "teacher_cache": teacher_cache}}
