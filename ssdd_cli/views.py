"""Names of Boost's predefined views (method.md §6.3), torch-free so configs validate before torch loads.

A view is ``identity``, a primitive (``rot90``, ``rot180``, ``rot270``, ``hflip``) or a combination
applied left to right (``hflip+rot90``). The tensor operations live in :func:`ssdd_cli.augment.apply_view`.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import ConfigError

#: quarter turns of each rotation primitive
ROTATIONS = {"rot90": 1, "rot180": 2, "rot270": 3}
PRIMITIVES = ("identity", "hflip", *ROTATIONS)
DEFAULT_VIEWS = ("identity", "rot90", "rot180", "rot270")


def parse_views(spec: str | Sequence[str]) -> tuple[str, ...]:
    """Parse ``"identity,rot90,hflip+rot90"`` (or a list) into canonical view names.

    ``identity`` is always first (it is added when missing); duplicates are refused.

    Raises:
        ConfigError: unknown view name or duplicates.
    """
    items = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    out: list[str] = []
    for item in items:
        parts = [p.strip() for p in item.split("+") if p.strip()]
        for part in parts:
            if part not in PRIMITIVES:
                raise ConfigError(
                    f"unknown view {part!r} in {item!r}; use identity, rot90, rot180, rot270, hflip "
                    "or combinations such as hflip+rot90"
                )
        name = "+".join(p for p in parts if p != "identity") or "identity"
        if name in out:
            raise ConfigError(f"view {name!r} listed twice in --views")
        out.append(name)
    if "identity" in out:
        out.remove("identity")
    return ("identity", *out)
