"""ssdd: self-supervised dataset distillation (KRR-ST and Boost) as a library and a CLI.

Importing the package is cheap (no torch); the public API lives in :mod:`ssdd_cli.api` and is
reachable lazily as attributes of this package, e.g. ``ssdd_cli.distill``.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    import importlib
    import importlib.util

    if importlib.util.find_spec(f"{__name__}.{name}") is not None:  # a submodule: let `from . import x` load it
        raise AttributeError(name)
    api = importlib.import_module(f"{__name__}.api")
    try:
        return getattr(api, name)
    except AttributeError:
        raise AttributeError(f"module 'ssdd_cli' has no attribute {name!r}") from None
