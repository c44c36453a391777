"""Evaluation: pretrain a fresh model on (image, target) pairs, then linear-probe it (method.md §7)."""

from .probe import extract_features, linear_probe
from .pretrain import pretrain

__all__ = ["extract_features", "linear_probe", "pretrain"]
