"""Evaluation (method.md §7): pretrain a fresh model on (image, target) pairs, then probe or fine-tune it.

* :mod:`.pretrain` — MSE pretraining on pairs; :mod:`.probe` — features, the linear probe and k-NN;
* :mod:`.finetune` — full fine-tuning; :mod:`.dataset` — a bundle as a ``Dataset``;
* :mod:`.runner` — paired runs over rows, architectures, targets and seeds; :mod:`.report` — the tables;
* :mod:`.figures` — the report's PNG figures (needs the ``plot`` extra).
"""

from .dataset import BundleDataset
from .finetune import finetune_accuracy
from .pretrain import pretrain
from .probe import extract_features, knn_accuracy, linear_probe
from .report import EvalReport, EvalResult, EvalRow
from .runner import RowSpec, evaluate, evaluate_pairs, fixed_pairs, random_pairs, teacher_probe_accuracy

__all__ = ["BundleDataset", "EvalReport", "EvalResult", "EvalRow", "RowSpec", "evaluate", "evaluate_pairs",
           "extract_features", "finetune_accuracy", "fixed_pairs", "knn_accuracy", "linear_probe", "pretrain",
           "random_pairs", "teacher_probe_accuracy"]
