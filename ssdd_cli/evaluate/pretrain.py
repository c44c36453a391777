"""Pretraining on a distilled set (method.md §7.1): MSE regression of the targets, no augmentation."""

from __future__ import annotations

import torch

from ..config import EvalConfig
from ..data.batches import ShuffledBatches
from ..device import autocast
from ..engine import fit, make_optimizer
from ..losses import mse
from ..models import create_model
from ..models.registry import Backbone
from ..reporting import ProgressReporter
from ..rng import derive_seed, stream


def pretrain(
    images: torch.Tensor,
    targets: torch.Tensor,
    config: EvalConfig,
    *,
    seed: int,
    device: torch.device,
    reporter: ProgressReporter | None = None,
    arch: str | None = None,
) -> Backbone:
    """Train ``arch`` (default: the first of ``config.archs``; head sized ``D``) to regress ``targets`` from ``images``.

    SGD (lr 0.1, momentum 0.9, weight decay 1e-3), no schedule, no augmentation, shuffled batches of
    ``pretrain_batch_size`` for ``pretrain_epochs`` epochs; images are fed as given.

    Args:
        images: ``(n, C, H, W)`` float images in the model's input space.
        targets: ``(n, D)`` target representations.
        config: evaluation settings.
        seed: seeds the initialisation and the batch order.
        device: where to train.
        reporter: progress sink.
        arch: architecture to train.
    """
    n = images.shape[0]
    model = create_model(arch or config.arch, image_size=images.shape[-1], out_dim=targets.shape[1],
                         seed=derive_seed(seed, "eval-init")).to(device)
    if config.pretrain_epochs == 0:
        return model.eval().to(memory_format=torch.channels_last)
    model.to(memory_format=torch.channels_last)
    x, y = images.to(device).contiguous(memory_format=torch.channels_last), targets.to(device).float()
    batches = ShuffledBatches(n, config.pretrain_batch_size, stream(seed, "eval-order", "cpu"), drop_last=False,
                              device=device)
    opt = make_optimizer("sgd", model.parameters(), config.pretrain_lr, momentum=config.pretrain_momentum,
                         weight_decay=config.pretrain_weight_decay)

    def step(_: int) -> torch.Tensor:
        idx = batches.next()
        with autocast(device, config.amp):
            out = model(x[idx])
        return mse(out, y[idx])

    model.train()
    fit(step, opt, config.pretrain_epochs * batches.batches_per_pass, reporter=reporter, name="pretrain", log_every=50,
        hint="lower the pretraining learning rate (--set pretrain_lr=0.01); check the bundle with `ssdd inspect --verify`")
    return model.eval()
