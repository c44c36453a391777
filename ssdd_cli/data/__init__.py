"""Datasets: the built-in ``shapes`` set, CIFAR, an ImageNet subset and user image folders."""

from __future__ import annotations

from ssdd_cli.data.base import ImageDataset
from ssdd_cli.data.registry import KNOWN_DATASETS, dataset_choices_help, load_dataset
from ssdd_cli.data.shapes import make_shapes

__all__ = ["KNOWN_DATASETS", "ImageDataset", "dataset_choices_help", "load_dataset",
           "make_shapes"]
