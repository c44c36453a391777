"""Model registry: every architecture is a named entry built by :func:`create_model`.

Every model exposes the same small interface (see :class:`Backbone`):
``embed(x)`` gives the flat features used by kernel ridge regression and the linear probe,
``represent(x)`` the globally average-pooled output of the last stage (the teacher representation),
and ``forward(x) = fc(embed(x))`` where ``fc`` is a linear head of ``out_dim`` outputs (or the
identity when ``out_dim`` is ``None``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError
from ..rng import seeded


class Backbone(nn.Module):
    """Base class of registered models; subclasses implement :meth:`features`."""

    fc: nn.Module
    feature_dim: int  # length of embed(x)
    repr_dim: int  # length of represent(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Last feature map ``(B, C, h, w)``."""
        raise NotImplementedError

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Flat features ``(B, feature_dim)`` (KRR feature / linear-probe feature)."""
        return self.features(x).flatten(1)

    def represent(self, x: torch.Tensor) -> torch.Tensor:
        """Global-average-pooled last stage ``(B, repr_dim)`` (the teacher representation)."""
        return self.features(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.fc(self.embed(x))


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture."""

    name: str
    builder: Callable[..., Backbone]
    description: str
    params: dict[int, int]  # image size → parameters without the head; pinned by tests/test_models.py


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, description: str, *,
                   params: int | dict[int, int]) -> Callable[[Callable[..., Backbone]], Callable[..., Backbone]]:
    """Decorator that records a builder ``fn(image_size, out_dim) -> Backbone`` under ``name``.

    ``params`` is the documented parameter count without the head at 32 and 64 px (one number when
    it does not depend on the size); a test builds every model at both sizes and checks it.
    """
    counts = params if isinstance(params, dict) else {32: params, 64: params}

    def deco(fn: Callable[..., Backbone]) -> Callable[..., Backbone]:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} registered twice")
        _REGISTRY[name] = ModelEntry(name, fn, description, counts)
        return fn

    return deco


def list_models() -> list[str]:
    """Names of every registered architecture, sorted."""
    return sorted(_REGISTRY)


def model_descriptions() -> dict[str, str]:
    """Name → one-line description of every architecture."""
    return {name: _REGISTRY[name].description for name in list_models()}


def models_markdown() -> str:
    """Every architecture with its parameter counts as a Markdown table (the source of docs/models.md)."""
    lines = ["| name | parameters at 32 px | at 64 px | description |", "|---|---:|---:|---|"]
    for name in list_models():
        e = _REGISTRY[name]
        lines.append(f"| `{name}` | {e.params[32]:,} | {e.params[64]:,} | {e.description} |")
    return "\n".join(lines)


def model_entry(name: str) -> ModelEntry:
    """The registry entry of ``name`` (see :func:`check_model_name`)."""
    return _REGISTRY[check_model_name(name)]


def check_model_name(name: str) -> str:
    """Registry key of ``name`` (case and ``-``/``_`` insensitive).

    Raises:
        ConfigError: unknown architecture, naming the registered ones.
    """
    key = name.lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ConfigError(f"unknown architecture {name!r}; choose one of: {', '.join(list_models())}")
    return key


def create_model(
    name: str,
    *,
    image_size: int = 32,
    out_dim: int | None = None,
    seed: int | None = None,
    in_channels: int = 3,
) -> Backbone:
    """Build a registered architecture.

    Args:
        name: registry key (see :func:`list_models`).
        image_size: input side length (sizes flat ConvNet features).
        out_dim: size of the linear head ``fc``; ``None`` for no head.
        seed: when given, initialise the weights from this seed without touching the global RNG.
        in_channels: image channels.

    Raises:
        ConfigError: unknown architecture, or an image size it cannot take.
    """
    key = check_model_name(name)
    build = _REGISTRY[key].builder
    try:
        if seed is None:
            return build(image_size=image_size, out_dim=out_dim, in_channels=in_channels)
        with seeded(seed):
            return build(image_size=image_size, out_dim=out_dim, in_channels=in_channels)
    except ValueError as exc:  # a size the architecture cannot take
        raise ConfigError(f"{key} cannot take {image_size}-px images: {exc}; choose another --arch") from None


def backbone_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict without its head (``fc.*``): the teacher file layout."""
    return {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
