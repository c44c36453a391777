"""Evaluation (method.md §7): pretrain a fresh model on (image, target) pairs, then linear-probe it.

* :mod:`.pretrain` — MSE pretraining on pairs; :mod:`.probe` — features and the linear probe;
* :mod:`.runner` — paired runs over seeds and rows; :mod:`.report` — the table.
"""

from .pretrain import pretrain
from .probe import extract_features, linear_probe
from .report import EvalReport, EvalRow
from .runner import evaluate, evaluate_pairs, random_pairs, teacher_probe_accuracy

__all__ = ["EvalReport", "EvalRow", "evaluate", "evaluate_pairs", "extract_features", "linear_probe", "pretrain",
           "random_pairs", "teacher_probe_accuracy"]
