"""Full fine-tuning on a target (method.md §7.3): every weight trains, a new linear head, crop + flip."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from .. import augment
from ..config import EvalConfig
from ..data.base import ImageDataset
from ..device import autocast
from ..engine import fit, make_optimizer, make_schedule
from ..models.registry import Backbone
from ..reporting import ProgressReporter
from ..rng import seeded, stream
from .probe import extract_features

#: name prefixes of targets fine-tuned for 10,000 steps (method.md §7.3: CIFAR, Tiny-ImageNet; folders such as
#: ``cifar10_jpg`` count); every other target (the fine-grained ones) gets 5,000
LONG_TARGETS = ("cifar10", "cifar100", "tiny-imagenet", "tinyimagenet", "tiny_imagenet", "imagenet-subset")


def finetune_steps(config: EvalConfig, target: ImageDataset) -> int:
    """``config.finetune_steps``, or the protocol's length for this target when it is 0."""
    if config.finetune_steps:
        return config.finetune_steps
    name = target.name.lower().removeprefix("folder:")
    return 10_000 if name.startswith(LONG_TARGETS) else 5_000


def finetune_accuracy(
    model: Backbone,
    target: ImageDataset,
    config: EvalConfig,
    *,
    seed: int,
    device: torch.device,
    reporter: ProgressReporter | None = None,
) -> float:
    """Fine-tune a copy of ``model`` (its head replaced) on ``target``'s training split; test top-1 (%).

    SGD (momentum 0.9, ``finetune_lr``, ``finetune_weight_decay``) with cosine decay over
    :func:`finetune_steps` steps of ``finetune_batch_size`` images, each randomly cropped (4-px padding)
    and flipped, then normalised; test images are normalised only. ``model`` itself is not changed.
    """
    net = copy.deepcopy(model).to(device)
    with seeded(seed, "finetune-head"):
        net.fc = torch.nn.Linear(net.feature_dim, target.num_classes).to(device)
    steps = finetune_steps(config, target)
    opt = make_optimizer("sgd", net.parameters(), config.finetune_lr, momentum=0.9,
                         weight_decay=config.finetune_weight_decay)
    sched = make_schedule(opt, "cosine", steps)
    gen, aug = stream(seed, "finetune-order", "cpu"), stream(seed, "finetune-aug", "cpu")
    images, labels = target.train_images, target.train_labels
    n, bs = images.shape[0], min(config.finetune_batch_size, images.shape[0])

    def step(_: int) -> torch.Tensor:
        idx = torch.randint(0, n, (bs,), generator=gen)
        x = augment.crop_flip(augment.to_float(images[idx]), aug)
        x = augment.normalize(x, target.mean, target.std).to(device).contiguous(memory_format=torch.channels_last)
        with autocast(device, config.amp):
            out = net(x)
        return F.cross_entropy(out.float(), labels[idx].to(device))

    net.train()
    fit(step, opt, steps, scheduler=sched, reporter=reporter, name="fine-tune", log_every=200,
        hint="lower the fine-tuning learning rate (--set finetune_lr=0.001)")
    net.eval()
    logits = extract_features(net, target.test_images, mean=target.mean, std=target.std, device=device, amp=config.amp)
    return 100.0 * float((logits.argmax(1) == target.test_labels).float().mean())
