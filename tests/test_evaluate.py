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
    cfg = EvalConfig(archs=("convnet2_xs",), pretrain_epochs=30, pretrain_batch_size=16, pretrain_lr=0.05)
    with torch.no_grad():
        init = pretrain(x, y, EvalConfig(archs=("convnet2_xs",), pretrain_epochs=0), seed=3, device=CPU)
        before = float((init(x) - y).pow(2).mean())
    model = pretrain(x, y, cfg, seed=3, device=CPU)
    with torch.no_grad():
        after = float((model(x) - y).pow(2).mean())
    assert after < 0.5 * before
    again = pretrain(x, y, cfg, seed=3, device=CPU)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    assert not model.training


def test_evaluate_report(tiny_results, tiny_data, tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    """Bundle, random, floor and teacher rows × 2 architectures × 2 targets × 2 protocols, paired per seed.

    Every accuracy is a whole number of test images; the seeds are paired (the second seed's run is a
    one-seed run started there); the improvement column is the per-seed difference over the random row;
    two shards gathered give the one-process table.
    """
    from ssdd_cli.data import make_shapes
    from ssdd_cli.evaluate.runner import RowSpec, baseline_pairs, fixed_pairs

    res = tiny_results["boost"]
    other = make_shapes(num_train=48, num_test=24, image_size=16, seed=5)
    other.name = "shapes-b"
    cfg = EvalConfig(archs=("convnet2_xs", "vit"), protocols=("linear", "knn"), pretrain_epochs=2, probe_steps=20,
                     num_seeds=2, probe_batch_size=32, knn_k=5)
    with torch.no_grad():
        pairs = res.synthetic.support()
    rows = [RowSpec("boost (N=8)", "bundle", fixed_pairs(*pairs), "32 pairs"),
            RowSpec("random (N=8)", "baseline",
                    lambda s: baseline_pairs("random", tiny_data, tiny_teacher, 8, seed=s, device=CPU)),
            RowSpec("no pretraining (floor)", "floor", None),
            RowSpec("teacher convnet2_xs (own features)", "teacher", None)]
    report = evaluate([tiny_data, other], rows, cfg, device=CPU, teacher=tiny_teacher)
    assert report.tables() == [(a, t, p) for t in ("shapes", "shapes-b") for p in ("linear", "knn")
                               for a in ("convnet2_xs", "vit")]
    assert report.reference is not None and report.reference.name == "random (N=8)"
    for arch, target, protocol in report.tables():
        num_test = (tiny_data if target == "shapes" else other).test_images.shape[0]
        cells = {r.name: report.result(r.name, arch, target, protocol) for r in report.rows}
        assert [len(c.accuracies) for c in cells.values()] == [2, 2, 2, 1]
        for cell in cells.values():  # whole numbers of correctly classified test images
            assert all(a * num_test / 100 == pytest.approx(round(a * num_test / 100), abs=1e-6) for a in cell.accuracies)
        diff = report.improvement("boost (N=8)", arch, target, protocol)
        assert diff == pytest.approx([a - b for a, b in zip(cells["boost (N=8)"].accuracies,
                                                             cells["random (N=8)"].accuracies)])
        assert report.improvement("teacher convnet2_xs (own features)", arch, target, protocol) is None
    # seeds are paired: the second seed's run equals a one-seed run started at that seed
    second = evaluate([tiny_data], rows[:1], replace(cfg, seed=1, num_seeds=1, archs=("vit",)), device=CPU)
    assert second.result("boost (N=8)", "vit", "shapes", "knn").accuracies == \
        [report.result("boost (N=8)", "vit", "shapes", "knn").accuracies[1]]
    # the teacher row is its own features' linear probe, the same in every architecture's table
    assert report.result("teacher convnet2_xs (own features)", "vit", "shapes", "linear").accuracies == \
        [teacher_probe_accuracy(tiny_teacher, tiny_data, cfg, device=CPU)]
    # shards: each runs every other unit; gathered, they make the same table
    parts = [evaluate([tiny_data], rows[:3], replace(cfg, archs=("convnet2_xs",)), device=CPU, shard=(r, 2),
                      gather=lambda mine: mine) for r in range(2)]
    whole = evaluate([tiny_data], rows[:3], replace(cfg, archs=("convnet2_xs",)), device=CPU)
    shards = [e for part in parts for e in part.results]
    for cell in whole.results:
        got = [e for e in shards if (e.row, e.arch, e.target, e.protocol) == (cell.row, cell.arch, cell.target, cell.protocol)]
        assert sorted(a for e in got for a in e.accuracies) == sorted(cell.accuracies)
    d = report.to_dict()
    assert len(d["tables"]) == 8 and d["reference"] == "random (N=8)" and d["config"]["archs"] == ["convnet2_xs", "vit"]
    boost = d["tables"][0]["rows"][0]
    assert boost["name"] == "boost (N=8)" and boost["improvement"]["over"] == "random (N=8)"
    md = report.to_markdown()
    assert "## shapes-b, knn" in md and "| boost (N=8) − random (N=8) |" in md


def test_knn_matches_a_float64_reference() -> None:
    """Weighted cosine k-NN equals a direct float64 computation, vote by vote."""
    from ssdd_cli.evaluate import knn_accuracy

    g = torch.Generator().manual_seed(0)
    xtr, ytr = torch.randn(60, 8, generator=g), torch.randint(0, 5, (60,), generator=g)
    xte, yte = torch.randn(25, 8, generator=g), torch.randint(0, 5, (25,), generator=g)
    a, b = xtr.double() / xtr.double().norm(dim=1, keepdim=True), xte.double() / xte.double().norm(dim=1, keepdim=True)
    correct = 0
    for i in range(25):
        sims = [(float(a[j] @ b[i]), j) for j in range(60)]
        top = sorted(sims, reverse=True)[:7]
        votes = [0.0] * 5
        for sim, j in top:
            votes[int(ytr[j])] += float(torch.tensor(sim / 0.1).exp())
        correct += int(max(range(5), key=lambda c: (votes[c], -c)) == int(yte[i]))
    expected = 100.0 * correct / 25
    assert knn_accuracy(xtr, ytr, xte, yte, k=7, temperature=0.1, device=CPU, chunk=4) == expected
    # k = 1 on the training set itself: every point is its own nearest neighbour
    assert knn_accuracy(xtr, ytr, xtr, ytr, k=1, temperature=0.1, device=CPU) == 100.0


def test_finetune_trains_a_copy(tiny_data) -> None:  # type: ignore[no-untyped-def]
    """Fine-tuning leaves the pretrained model untouched, is seeded, and follows §7.3's step counts."""
    from ssdd_cli.evaluate.finetune import finetune_accuracy, finetune_steps
    from ssdd_cli.models import create_model

    model = create_model("convnet2_xs", image_size=16, out_dim=32, seed=0).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = EvalConfig(archs=("convnet2_xs",), protocols=("finetune",), finetune_steps=30, finetune_batch_size=16,
                     finetune_lr=0.05)
    acc = finetune_accuracy(model, tiny_data, cfg, seed=0, device=CPU)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert acc == finetune_accuracy(model, tiny_data, cfg, seed=0, device=CPU)
    num_test = tiny_data.test_images.shape[0]
    assert acc * num_test / 100 == pytest.approx(round(acc * num_test / 100), abs=1e-6)
    assert finetune_steps(replace(cfg, finetune_steps=0), tiny_data) == 5000
    assert finetune_steps(replace(cfg, finetune_steps=0), replace(tiny_data, name="cifar10")) == 10000
    assert finetune_steps(cfg, replace(tiny_data, name="cifar10")) == 30
    assert finetune_steps(replace(cfg, finetune_steps=0), replace(tiny_data, name="folder:cifar10_jpg")) == 10000
    assert finetune_steps(replace(cfg, finetune_steps=0), replace(tiny_data, name="folder:cub")) == 5000


def test_bundle_dataset(tiny_results, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """BundleDataset yields the bundle's (image, target) pairs view-major and works with a DataLoader."""
    from torch.utils.data import DataLoader

    from ssdd_cli import BundleDataset
    from ssdd_cli.expand import expand_pairs

    res = tiny_results["boost"]
    path = save_bundle(tmp_path / "b.safetensors", res.tensors, res.meta)
    data = BundleDataset(path)
    images, targets = expand_pairs(load_bundle(path))
    assert len(data) == images.shape[0] == 8 * 4
    x, y = data[9]
    assert torch.equal(x, images[9]) and torch.equal(y, targets[9])
    batches = list(DataLoader(data, batch_size=10))
    assert [b[0].shape[0] for b in batches] == [10, 10, 10, 2]
    one = BundleDataset(path, views="identity,rot180")
    assert len(one) == 16 and torch.equal(one[8][0], images[16]) and "rot180" in repr(one)
    with pytest.raises(ConfigError, match="not in this bundle"):
        BundleDataset(path, views="shear")


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
    with pytest.raises(ConfigError, match="--protocol must be one or more of linear, finetune, knn"):
        EvalConfig(protocols=("linear", "probe"))
    with pytest.raises(ConfigError, match="--arch"):
        EvalConfig(archs=())
    assert EvalConfig(pretrain_epochs=0).pretrain_epochs == 0


def test_report_without_matplotlib(tiny_results, tiny_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """Without the plot extra the report still has its Markdown, JSON and image grid, and says how to get the plots."""
    from ssdd_cli.evaluate import figures
    from ssdd_cli.evaluate.report import EvalReport, EvalResult, EvalRow

    monkeypatch.setattr(figures, "have_matplotlib", lambda: False)
    res = tiny_results["boost"]
    bundle = load_bundle(save_bundle(tmp_path / "b.safetensors", res.tensors, res.meta))
    report = EvalReport(rows=[EvalRow("boost (N=8)", "bundle")], archs=["convnet2_xs"], targets=["shapes"],
                        protocols=["linear"], seeds=[0],
                        results=[EvalResult("boost (N=8)", "convnet2_xs", "shapes", "linear", [50.0])])
    written, skipped = figures.write_figures(report, tmp_path, [("boost (N=8)", bundle)])
    assert written == ["images.png"] and skipped == [figures.PLOT_HINT] and "pip install 'ssdd[plot]'" in skipped[0]
    assert (tmp_path / "images.png").stat().st_size > 0 and not (tmp_path / "accuracy.png").exists()
