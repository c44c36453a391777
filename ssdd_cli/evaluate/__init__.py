"""Evaluation: pretrain a fresh model on (image, target) pairs, then linear-probe it (method.md §7)."""

from .pretrain import pretrain
from .probe import extract_features, linear_probe

__all__ = ["extract_features", "linear_probe", "pretrain"]
