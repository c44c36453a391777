"""The method registry: one entry per distillation method, looked up by name.

An entry (a :class:`~ssdd_cli.methods.base.DistillMethod`) holds everything that differs between
methods: presets, validation, size planning, initialisation and finalisation. The shared outer
loop (:mod:`ssdd_cli.methods.distill`), storage accounting, the CLI and the API only ever ask the
entry; no other module compares method names. Entries are imported on first use, so this module
(and :mod:`ssdd_cli.config`, which validates method names) stays torch-free.

Adding a method: write ``methods/<name>.py`` with a ``DistillMethod`` subclass instance named
``METHOD`` and add one line to :data:`_ENTRIES`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from .base import DistillMethod

#: registry key → module holding ``METHOD`` (imported lazily)
_ENTRIES: dict[str, str] = {
    "boost": "ssdd_cli.methods.boost",
    "krr_st": "ssdd_cli.methods.krr_st",
    "random": "ssdd_cli.methods.random_subset",
}
_LOADED: dict[str, DistillMethod] = {}


def list_methods() -> list[str]:
    """Registry keys of every method, in registration order (the default first)."""
    return list(_ENTRIES)


def _aliases() -> dict[str, str]:
    out = {}
    for key in _ENTRIES:
        out[key] = key
        out[key.replace("_", "-")] = key
        out[key.replace("_", "")] = key
    return out


def get_method(name: str) -> DistillMethod:
    """The entry of ``name`` (``krr-st``, ``krr_st`` and ``krrst`` name the same method).

    Raises:
        ConfigError: an unknown method, naming the registered ones.
    """
    key = _aliases().get(str(name).strip().lower())
    if key is None:
        names = ", ".join(k.replace("_", "-") for k in _ENTRIES)
        raise ConfigError(f"unknown method {name!r}; choose one of: {names}")
    if key not in _LOADED:
        entry = importlib.import_module(_ENTRIES[key]).METHOD
        if entry.name != key:
            raise RuntimeError(f"{_ENTRIES[key]}.METHOD is named {entry.name!r}, registered as {key!r}")
        _LOADED[key] = entry
    return _LOADED[key]
