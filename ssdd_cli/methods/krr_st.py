"""KRR-ST (Lee et al., ICLR 2024; method.md §5): learnable images and target representations.

The images start as ``m = N`` random training images with their teacher representations; the shared
outer loop then optimises both through the kernel-ridge-regression readout of a model pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import InitContext, PixelMethod

if TYPE_CHECKING:
    from .synthetic import SyntheticSet


class KrrSt(PixelMethod):
    """KRR-ST: pixels and targets, every one learnable."""

    name = "krr_st"
    summary = "KRR-ST (Lee et al. 2024): learnable images and target representations"
    presets = {
        "paper": dict(num_steps=160_000, lr=1e-4, lr_final_factor=1e-3, bases=False, views=("identity",)),
        "paper@64px": dict(lr=1e-5),
        # the paper's full-width pool: each step up in width lifted KRR-ST on average over 5 seeds (docs/cpu-preset.md)
        "cpu": dict(num_steps=1500, lr=1e-2, lr_final_factor=1e-3, bases=False, views=("identity",),
                    pool_arch="convnet3"),
        "cpu@64px": dict(pool_arch="convnet4_s"),  # wider 64-px pools are not measured
    }

    def initialise(self, ctx: InitContext) -> tuple[SyntheticSet, dict[str, float]]:
        """``m`` random training images (stream ``init``) and their teacher targets."""
        return self.pixels_of(ctx, "init"), {}


METHOD = KrrSt()
