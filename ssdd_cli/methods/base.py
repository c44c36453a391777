"""What a distillation method is: the interface every registry entry implements.

The shared outer loop (:func:`ssdd_cli.methods.distill.distill`) asks the entry, in order: its
storage plan (:meth:`DistillMethod.plan`, computed once and printed before any work), the initial
synthetic set (:meth:`~DistillMethod.initialise`), anything to do before the loop
(:meth:`~DistillMethod.before_loop`), and the stored form after it (:meth:`~DistillMethod.finalise`).
Module-level imports here and in the entries are torch-free, so configs validate before torch loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import ConfigError
from ..storage import BoostSize, SizePlan, pixel_shapes, storage_report

if TYPE_CHECKING:
    import torch

    from ..config import DistillConfig
    from ..data.base import ImageDataset
    from ..reporting import ProgressReporter
    from ..teacher import Teacher
    from .synthetic import SyntheticSet


@dataclass
class InitContext:
    """Everything an entry may use to build the initial set."""

    dataset: ImageDataset
    teacher: Teacher  # on ``device``
    config: DistillConfig
    plan: SizePlan
    device: torch.device
    train_reprs: torch.Tensor | None  # teacher representations of every training image (entries that ask)
    reporter: ProgressReporter


class DistillMethod:
    """One distillation method (see the module docstring). Subclasses set the class attributes."""

    name: ClassVar[str]
    summary: ClassVar[str]
    #: the budget counts images only (method.md §6.6); otherwise every stored float
    pixel_storage: ClassVar[bool] = False
    #: runs the outer loop (the random baseline does not)
    trains: ClassVar[bool] = True
    #: needs the teacher's representations of every training image (PCA of the targets)
    needs_train_reprs: ClassVar[bool] = False
    #: preset name (or ``<preset>@64px`` for 64-px sources) → DistillConfig values of this method
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def wants_train_reprs(self, config: DistillConfig) -> bool:
        """Whether ``config`` needs the teacher's representations of every training image (PCA, a coreset)."""
        return self.needs_train_reprs or config.select == "kmeans"

    def validate(self, config: DistillConfig) -> None:
        """Refuse settings this method cannot honour (called when the config is built)."""

    def plan(self, config: DistillConfig, *, channels: int, image_size: int, repr_dim: int) -> SizePlan:
        """Sizes, tensor shapes and storage cost of the set ``config`` asks for."""
        raise NotImplementedError

    def initialise(self, ctx: InitContext) -> tuple[SyntheticSet, dict[str, float]]:
        """The initial learnable set and initialisation diagnostics."""
        raise NotImplementedError

    def before_loop(self, synth: SyntheticSet, config: DistillConfig) -> tuple[SyntheticSet, dict[str, float]]:
        """Adjust the set before the outer loop; returns it with diagnostics."""
        return synth, {}

    def finalise(self, synth: SyntheticSet, config: DistillConfig) -> tuple[SyntheticSet, dict[str, dict[str, float]]]:
        """The stored form of the set after the loop (on the CPU) and per-view fit diagnostics."""
        return synth, {}


class PixelMethod(DistillMethod):
    """Methods that store ``m`` images and their identity targets, charged ``m`` (KRR-ST, random)."""

    pixel_storage = True

    def validate(self, config: DistillConfig) -> None:
        """Plain images and targets only: no views, bases or basis sizes."""
        flag = self.name.replace("_", "-")
        if len(config.views) > 1 or config.bases:
            raise ConfigError(f"{flag} stores plain images and targets; --views and bases apply to --method boost")
        if config.num_images is not None and config.num_images > config.budget:
            raise ConfigError(f"{flag} stores m images and --budget {config.budget} allows at most {config.budget}")

    def plan(self, config: DistillConfig, *, channels: int, image_size: int, repr_dim: int) -> SizePlan:
        """``m = N`` images (or ``--num-images`` ≤ N) and their targets."""
        m = config.num_images or config.budget
        shapes = pixel_shapes(m, channels=channels, image_size=image_size, repr_dim=repr_dim)
        report = storage_report(shapes, image_shape=(channels, image_size, image_size), label=self.name,
                                num_images=m, images_only=True)
        return SizePlan(BoostSize(m, 0, 0, 0, image_size), shapes, report)

    def pixels_of(self, ctx: InitContext, stream_name: str) -> SyntheticSet:
        """``m`` training images (random, or a coreset: ``select``; named seed stream) with their teacher targets."""
        from .. import augment
        from ..rng import stream
        from .init import choose_images, init_pixels

        chosen = choose_images(ctx.dataset.train_images, ctx.plan.size.num_images,
                               stream(ctx.config.seed, stream_name, "cpu"), ctx.config.select, ctx.train_reprs)
        raw = augment.to_float(ctx.dataset.train_images[chosen]).to(ctx.device)
        return init_pixels(raw, ctx.teacher, ctx.config, ctx.dataset.mean, ctx.dataset.std)
