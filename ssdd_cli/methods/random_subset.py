"""The random baseline as a method: ``N`` random real images with their teacher representations.

No outer loop runs; ``ssdd distill --method random`` writes the baseline as a bundle, and
``ssdd evaluate --baseline random`` builds the same set per evaluation seed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError
from .base import InitContext, PixelMethod

if TYPE_CHECKING:
    from .synthetic import SyntheticSet


class RandomSubset(PixelMethod):
    """Random real images with teacher targets (the baseline every distilled set must beat)."""

    name = "random"
    summary = "random real images with their teacher representations (the baseline)"
    trains = False
    presets = {
        "paper": dict(num_steps=0, bases=False, views=("identity",)),
        "cpu": dict(num_steps=0, bases=False, views=("identity",)),
    }

    def validate(self, config) -> None:  # type: ignore[no-untyped-def]
        """Pixels only, nothing learnt, nothing transformed."""
        super().validate(config)
        if config.raw_space:
            raise ConfigError("raw_space reproduces a KRR-ST quirk (Q2); it applies to --method krr-st only")
        if config.select != "uniform":
            raise ConfigError("the random baseline draws its images at random; select applies to krr-st and boost")

    def initialise(self, ctx: InitContext) -> tuple[SyntheticSet, dict[str, float]]:
        """``N`` random training images (stream ``random-subset``) and their teacher targets."""
        return self.pixels_of(ctx, "random-subset"), {}


METHOD = RandomSubset()
