"""Linear evaluation (method.md §7.2): frozen features, one linear layer, SGD with cosine decay."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from .. import augment
from ..device import autocast
from ..engine import fit, make_optimizer, make_schedule
from ..reporting import ProgressReporter
from ..rng import seeded, stream


@torch.no_grad()
def extract_features(
    embed: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    device: torch.device,
    batch_size: int = 1000,
    amp: bool | None = False,
) -> torch.Tensor:
    """Features ``(n, p)`` float32 of uint8 images (normalised, no augmentation), on the CPU."""
    out = []
    for i in range(0, images.shape[0], batch_size):
        x = augment.normalize(augment.to_float(images[i : i + batch_size].to(device)), mean, std)
        x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            out.append(embed(x).float().cpu())
    return torch.cat(out)


def linear_probe(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    num_steps: int = 5000,
    batch_size: int = 512,
    lr: float = 0.2,
    seed: int = 0,
    device: torch.device,
    reporter: ProgressReporter | None = None,
) -> float:
    """Train ``Linear(p, classes)`` with SGD (momentum 0.9, no weight decay, cosine) and return test top-1 (%)."""
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    xtr, ytr = train_feats.to(device), train_labels.to(device)
    head = torch.nn.Linear(xtr.shape[1], num_classes).to(device)
    with seeded(seed, "probe-init"):
        head.reset_parameters()
    opt = make_optimizer("sgd", head.parameters(), lr, momentum=0.9, weight_decay=0.0)
    sched = make_schedule(opt, "cosine", num_steps)
    gen = stream(seed, "probe-order", "cpu")
    n = xtr.shape[0]
    bs = min(batch_size, n)

    def step(_: int) -> torch.Tensor:
        idx = torch.randint(0, n, (bs,), generator=gen).to(device)
        return F.cross_entropy(head(xtr[idx]), ytr[idx])

    fit(step, opt, num_steps, scheduler=sched, reporter=reporter, name="linear probe", log_every=100,
        hint="lower the probe learning rate (--set probe_lr=0.02)")
    with torch.no_grad():
        correct = 0
        for i in range(0, test_feats.shape[0], 4096):
            pred = head(test_feats[i : i + 4096].to(device)).argmax(1)
            correct += int((pred == test_labels[i : i + 4096].to(device)).sum())
    return 100.0 * correct / test_feats.shape[0]


@torch.no_grad()
def knn_accuracy(
    train_feats: torch.Tensor,
    train_labels: torch.Tensor,
    test_feats: torch.Tensor,
    test_labels: torch.Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    device: torch.device,
    chunk: int = 1024,
) -> float:
    """Weighted k-NN top-1 (%) on cosine similarity, the quick look SSL libraries report.

    Each test feature votes with its ``k`` most similar training features; a neighbour of similarity
    ``s`` adds ``exp(s / temperature)`` to its class. Ties in the vote go to the lower class index.
    """
    num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    bank = F.normalize(train_feats.float().to(device), dim=1)  # (n, p)
    labels = train_labels.to(device)
    k = min(k, bank.shape[0])
    correct = 0
    for i in range(0, test_feats.shape[0], chunk):
        q = F.normalize(test_feats[i : i + chunk].float().to(device), dim=1)  # (b, p)
        sim, idx = (q @ bank.T).topk(k, dim=1)  # (b, k)
        votes = torch.zeros(q.shape[0], num_classes, device=device)
        votes.scatter_add_(1, labels[idx], (sim / temperature).exp())
        correct += int((votes.argmax(1) == test_labels[i : i + chunk].to(device)).sum())
    return 100.0 * correct / test_feats.shape[0]
