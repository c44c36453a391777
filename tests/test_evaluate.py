"""Evaluation: the linear probe on separable features, pretraining, and the evaluate() report."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from ssdd_cli.api import evaluate, random_pairs, teacher_probe_accuracy
from ssdd_cli.bundle import load_bundle, save_bundle
from ssdd_cli.config import EvalConfig
from ssdd_cli.errors import ConfigError
from ssdd_cli.evaluate import extract_features, linear_probe, pretrain

CPU = torch.device("cpu")


def blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Four well-separated Gaussian classes in 16 dimensions."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(16)[:4] * 6
    labels = torch.arange(n) % 4
    return centres[labels] + torch.randn(n, 16, generator=g), labels


def test_linear_probe_separable() -> None:
    """Linearly separable features reach > 90% test accuracy; shuffled labels do not."""
    xtr, ytr = blobs(200, 0)
    xte, yte = blobs(100, 1)
    acc = linear_probe(xtr, ytr, xte, yte, num_steps=100, batch_size=64, lr=0.1, seed=0, device=CPU)
    assert acc > 90.0
    perm = torch.randperm(200, generator=torch.Generator().manual_seed(0))
    chance = linear_probe(xtr, ytr[perm], xte, yte, num_steps=100, batch_size=64, lr=0.1, seed=0, device=CPU)
    assert chance < 60.0
    again = linear_probe(xtr, ytr, xte, yte, num_steps=100, batch_size=64, lr=0.1, seed=0, device=CPU)
    assert again == acc


def test_linear_probe_extremes() -> None:
    """One-hot features of the label score exactly 100%; constant features at most chance (one class for all).

    Accuracies are whole numbers of test images (multiples of 100 / num_test).
    """
    labels_tr, labels_te = torch.arange(40) % 4, torch.arange(20) % 4
    onehot = lambda y: 5.0 * torch.nn.functional.one_hot(y, 4).float()  # noqa: E731
    perfect = linear_probe(onehot(labels_tr), labels_tr, onehot(labels_te), labels_te, num_steps=50, batch_size=16,
                           lr=0.1, seed=0, device=CPU)
    assert perfect == 100.0
    const = linear_probe(torch.ones(40, 4), labels_tr, torch.ones(20, 4), labels_te, num_steps=50, batch_size=16,
                         lr=0.1, seed=0, device=CPU)
    assert const <= 25.0 + 1e-9  # every test image gets the same class; the classes are balanced
    assert (const * 20 / 100) == round(const * 20 / 100)
    # the accuracy is measured against the test labels given: shifting them all makes every prediction wrong
    shifted = linear_probe(onehot(labels_tr), labels_tr, onehot(labels_te), (labels_te + 1) % 4, num_steps=50,
                        batch_size=16, lr=0.1, seed=0, device=CPU)
    assert shifted == 0.0


def test_extract_features(tiny_data) -> None:  # type: ignore[no-untyped-def]
    """Features are the model's embedding of the normalised images, independent of the batch size."""
    from ssdd_cli import augment
    from ssdd_cli.models import create_model

    model = create_model("convnet2_xs", image_size=16, seed=0).eval()
    imgs = tiny_data.test_images[:10]
    a = extract_features(model.embed, imgs, mean=tiny_data.mean, std=tiny_data.std, device=CPU, batch_size=3)
    with torch.no_grad():
        b = model.embed(augment.normalize(augment.to_float(imgs), tiny_data.mean, tiny_data.std))
    assert a.shape == (10, model.feature_dim)
    torch.testing.assert_close(a, b)


def test_pretrain_fits_targets() -> None:
    """Pretraining regresses the targets (the MSE falls) and is seeded; 0 epochs = the untouched init."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 3, 16, 16, generator=g), torch.randn(16, 8, generator=g)
    cfg = EvalConfig(arch="convnet2_xs", pretrain_epochs=30, pretrain_batch_size=16, pretrain_lr=0.05)
    with torch.no_grad():
        init = pretrain(x, y, EvalConfig(arch="convnet2_xs", pretrain_epochs=0), seed=3, device=CPU)
        before = float((init(x) - y).pow(2).mean())
    model = pretrain(x, y, cfg, seed=3, device=CPU)
    with torch.no_grad():
        after = float((model(x) - y).pow(2).mean())
    assert after < 0.5 * before
    again = pretrain(x, y, cfg, seed=3, device=CPU)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert not model.training


def test_evaluate_report(tiny_results, tiny_data, tiny_teacher, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """evaluate() returns bundle, random, floor and teacher rows, with per-seed paired differences."""
    res = tiny_results["boost"]
    bundle = load_bundle(save_bundle(tmp_path / "b.safetensors", res.tensors, res.meta))
    cfg = EvalConfig(arch="convnet2_xs", pretrain_epochs=2, probe_steps=20, num_seeds=2, probe_batch_size=32)
    report = evaluate(tiny_data, cfg, device=CPU, bundle=bundle, baseline_source=tiny_data, baseline_budget=8,
                      teacher=tiny_teacher)
    names = [r.name for r in report.rows]
    assert names == ["boost (N=8)", "random (N=8)", "no pretraining (floor)", "teacher convnet2_xs (own features)"]
    assert [len(r.accuracies) for r in report.rows] == [2, 2, 2, 1]
    num_test = tiny_data.test_images.shape[0]
    for row in report.rows:  # whole numbers of correctly classified test images
        assert all(a * num_test / 100 == pytest.approx(round(a * num_test / 100), abs=1e-6) for a in row.accuracies)
    # seeds are paired: the second seed's run equals a one-seed run started at that seed
    second = evaluate(tiny_data, replace(cfg, seed=1, num_seeds=1), device=CPU, bundle=bundle, floor=False,
                      teacher_probe=False)
    assert [r.name for r in second.rows] == ["boost (N=8)"] and second.rows[0].accuracies == [report.rows[0].accuracies[1]]
    assert report.rows[3].accuracies == [teacher_probe_accuracy(tiny_teacher, tiny_data, cfg, device=CPU)]
    assert set(report.paired) == {"boost (N=8) - random (N=8)", "boost (N=8) - no pretraining (floor)"}
    for key, diffs in report.paired.items():
        other = next(r for r in report.rows if key.endswith(r.name))
        assert diffs == pytest.approx([a - b for a, b in zip(report.rows[0].accuracies, other.accuracies)])
    d = report.to_dict()
    assert d["target"] == "shapes" and d["config"]["arch"] == "convnet2_xs" and len(d["rows"]) == 4
    assert "32 pairs" in report.rows[0].note  # 8 images × 4 views


def test_random_pairs(tiny_data, tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    """The random baseline is N real (normalised) images with the teacher's representations, seeded."""
    from ssdd_cli import augment

    x, y = random_pairs(tiny_data, tiny_teacher, 6, seed=0, device=CPU)
    assert x.shape == (6, 3, 16, 16) and y.shape == (6, 32)
    raw = augment.denormalize(x, tiny_data.mean, tiny_data.std)
    torch.testing.assert_close(tiny_teacher.represent(raw), y, rtol=1e-4, atol=1e-5)
    x2, _ = random_pairs(tiny_data, tiny_teacher, 6, seed=0, device=CPU)
    x3, _ = random_pairs(tiny_data, tiny_teacher, 6, seed=1, device=CPU)
    assert torch.equal(x, x2) and not torch.equal(x, x3)


def test_eval_config_checks() -> None:
    """Non-positive probe steps or seeds are refused; 0 pretraining epochs is allowed (the floor)."""
    with pytest.raises(ConfigError):
        EvalConfig(probe_steps=0)
    with pytest.raises(ConfigError):
        EvalConfig(num_seeds=0)
    assert EvalConfig(pretrain_epochs=0).pretrain_epochs == 0
