"""The report's figures: accuracy per architecture × target with error bars, the distilled images, loss curves.

The accuracy and loss plots need matplotlib (``pip install 'ssdd[plot]'``); the image grids are written
with Pillow alone. Every figure is a PNG; :func:`write_figures` returns the names it wrote and what it skipped.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..bundle import Bundle
from .report import EvalReport

PLOT_HINT = "install matplotlib for the accuracy and loss figures: pip install 'ssdd[plot]'"


def have_matplotlib() -> bool:
    """Whether the plotting extra is installed."""
    return importlib.util.find_spec("matplotlib") is not None


def image_grid(bundle: Bundle, path: Path, max_images: int = 100) -> None:
    """The bundle's distilled images (first view, up to ``max_images``) as one PNG grid, upscaled to be seen."""
    import torch.nn.functional as F

    from ..expand import expand_pairs, make_grid, save_png, to_uint8

    images, _ = expand_pairs(bundle, views=[bundle.views[0]])
    images = images[:max_images]
    scale = max(1, 64 // images.shape[-1])  # 32-px images at 2×, 16-px at 4×: readable on a screen
    if scale > 1:
        images = F.interpolate(images, scale_factor=scale, mode="nearest")
    save_png(make_grid(to_uint8(images, bundle)), path)


def accuracy_figure(report: EvalReport, path: Path) -> None:
    """Grouped bars: one panel per (target, protocol), architectures on x, one bar per set.

    Error bars are the std over seeds; the teacher's own probe is a dashed line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(t, p) for t in report.targets for p in report.protocols
              if any((r.target, r.protocol) == (t, p) for r in report.results)]
    bars = [r for r in report.rows if r.kind != "teacher"]
    teacher = next((r for r in report.rows if r.kind == "teacher"), None)
    fig, axes = plt.subplots(1, len(panels), figsize=(max(5.0, 1.2 * len(report.archs) * len(bars) / 2 + 2) * len(panels)
                                                       / max(1, len(panels) ** 0.5), 4.2), squeeze=False)
    width = 0.8 / max(1, len(bars))
    colours = plt.get_cmap("tab10")
    for ax, (target, protocol) in zip(axes[0], panels, strict=True):
        for j, row in enumerate(bars):
            xs, means, stds = [], [], []
            for i, arch in enumerate(report.archs):
                res = report.result(row.name, arch, target, protocol)
                if res is not None:
                    xs.append(i + (j - (len(bars) - 1) / 2) * width)
                    means.append(res.mean)
                    stds.append(res.std)
            ax.bar(xs, means, width, yerr=stds, capsize=3, label=row.name, color=colours(j % 10))
        if teacher is not None:
            res = report.result(teacher.name, report.archs[0], target, protocol)
            if res is not None:
                ax.axhline(res.mean, color="black", linestyle="--", linewidth=1, label=teacher.name)
        ax.set_xticks(range(len(report.archs)), report.archs, rotation=20)
        ax.set_ylabel(f"{protocol} top-1 %")
        ax.set_title(f"{target}, {protocol}")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    rows_of_legend = -(-len(labels) // 3)  # three entries per line, below the panels (never over a bar)
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 * rows_of_legend + 0.02, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def loss_figure(bundles: list[tuple[str, Bundle]], path: Path) -> bool:
    """The outer loss per step of every bundle that records one; ``False`` when none does."""
    curves = [(name, b, b.meta.history) for name, b in bundles if b.meta.history]
    if not curves:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, bundle, hist in curves:
        steps = int(bundle.meta.config.get("num_steps") or len(hist))  # the history keeps ≤ 200 evenly spaced steps
        ax.plot([steps * (i + 1) / len(hist) for i in range(len(hist))], hist, label=name, linewidth=1)
    ax.set_xlabel("outer step")
    ax.set_ylabel("distillation loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def write_figures(report: EvalReport, folder: Path, bundles: list[tuple[str, Bundle]]) -> tuple[list[str], list[str]]:
    """Every figure the report can have, into ``folder``: ``(written file names, skipped-because notes)``."""
    written, skipped = [], []
    for i, (_, bundle) in enumerate(bundles):
        name = f"images_{i + 1}.png" if len(bundles) > 1 else "images.png"
        image_grid(bundle, folder / name)
        written.append(name)
    if not have_matplotlib():
        return written, [PLOT_HINT]
    if report.results:
        accuracy_figure(report, folder / "accuracy.png")
        written.append("accuracy.png")
    if loss_figure(bundles, folder / "loss.png"):
        written.append("loss.png")
    return written, skipped
