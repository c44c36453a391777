"""Teachers: checkpoint import by output equality (method.md §4.5, §11), the teacher file, training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssdd_cli.bundle import load_teacher_file
from ssdd_cli.errors import BundleError, CheckpointError, ConfigError, OutputError
from ssdd_cli.models import create_model
from ssdd_cli.paths import sha256_file
from ssdd_cli.rng import derive_seed
from ssdd_cli.teacher import Teacher, TeacherConfig, import_checkpoint, load_teacher, save_teacher, train_teacher

MEAN, STD = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)


def perturbed_resnet18(out_dim: int | None = 10) -> torch.nn.Module:
    """A resnet18 whose every parameter and BN buffer is non-default (so a missed key changes outputs)."""
    model = create_model("resnet18", image_size=16, out_dim=out_dim, seed=3)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.add_(0.1 * torch.randn(t.shape, generator=g))
    return model.eval()


def _x() -> torch.Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_import_krr_st_state_dict(tmp_path: Path) -> None:
    """A bare torchvision state dict with a stray fc head imports and reproduces the source outputs."""
    src = perturbed_resnet18(out_dim=10)
    state = src.state_dict()
    assert "fc.weight" in state and "fc.bias" in state
    path = tmp_path / "krrst.pt"
    torch.save(state, path)
    t = import_checkpoint(path, arch="resnet18", image_size=16, mean=MEAN, std=STD)
    assert t.meta["origin"] == "import:krr-st"
    assert t.model.conv1.padding == (2, 2)
    with torch.no_grad():
        torch.testing.assert_close(t.model.represent(_x()), src.represent(_x()), rtol=1e-4, atol=1e-4)  # channels_last reorders sums
    assert t.repr_dim == 512 and t.mean == MEAN and t.std == STD


def test_import_solo_learn_checkpoint(tmp_path: Path) -> None:
    """solo-learn layout: state_dict with backbone.* (kept, stripped) and projector.* (ignored)."""
    src = perturbed_resnet18(out_dim=None)
    ckpt = {"state_dict": {**{"backbone." + k: v for k, v in src.state_dict().items()},
                           "projector.0.weight": torch.randn(8, 512), "projector.1.bias": torch.randn(8)},
            "epoch": 999}
    path = tmp_path / "solo.ckpt"
    torch.save(ckpt, path)
    t = import_checkpoint(path, arch="resnet18", image_size=16, mean=MEAN, std=STD)
    assert t.meta["origin"] == "import:solo-learn"
    with torch.no_grad():
        torch.testing.assert_close(t.model.represent(_x()), src.represent(_x()), rtol=1e-4, atol=1e-4)  # channels_last reorders sums
    # every backbone tensor was filled from the checkpoint
    got = t.model.state_dict()
    assert set(got) == set(src.state_dict())
    assert all(torch.equal(got[k], v) for k, v in src.state_dict().items())


def test_import_then_save_and_load_keeps_outputs(tmp_path: Path) -> None:
    """An imported teacher written to a teacher file loads back with the stem padding and equal outputs."""
    src = perturbed_resnet18(out_dim=None)
    torch.save(src.state_dict(), tmp_path / "a.pt")
    t = import_checkpoint(tmp_path / "a.pt", arch="resnet18", image_size=16, mean=MEAN, std=STD)
    save_teacher(t, tmp_path / "t.safetensors")
    back = load_teacher(tmp_path / "t.safetensors")
    assert back.meta["stem_padding"] == 2 and back.model.conv1.padding == (2, 2)
    with torch.no_grad():
        torch.testing.assert_close(back.model.represent(_x()), src.represent(_x()), rtol=1e-4, atol=1e-4)  # channels_last reorders sums


def test_import_missing_keys(tmp_path: Path) -> None:
    """A checkpoint lacking a backbone key raises CheckpointError naming the key."""
    state = create_model("resnet18", image_size=16).state_dict()
    del state["layer4.1.conv2.weight"]
    torch.save(state, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="layer4.1.conv2.weight"):
        import_checkpoint(tmp_path / "bad.pt", arch="resnet18", image_size=16, mean=MEAN, std=STD)


@pytest.mark.parametrize("case", ["wrong_arch", "garbage", "missing", "not_tensors"])
def test_import_bad_files(tmp_path: Path, case: str) -> None:
    """Unreadable files, wrong architectures and non-state-dicts raise CheckpointError."""
    path = tmp_path / "x.pt"
    if case == "wrong_arch":
        torch.save(create_model("convnet2_xs", image_size=16).state_dict(), path)
    elif case == "garbage":
        path.write_bytes(b"\x00not a checkpoint at all")
    elif case == "not_tensors":
        torch.save({"a": 1}, path)
    with pytest.raises(CheckpointError):
        import_checkpoint(path, arch="resnet18", image_size=16, mean=MEAN, std=STD)


def test_save_load_round_trip(tmp_path: Path, tiny_data) -> None:  # type: ignore[no-untyped-def]
    """save_teacher → load_teacher keeps every tensor, the metadata and records the file hash."""
    model = create_model("convnet2_xs", image_size=16, seed=7)
    with torch.no_grad():  # non-default BN statistics
        for mod in model.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-1, 1)
                mod.running_var.uniform_(0.5, 2)
    t = Teacher(model, arch="convnet2_xs", image_size=16, mean=tiny_data.mean, std=tiny_data.std,
                meta={"dataset": "shapes", "probe_accuracy": 12.5})
    path = save_teacher(t, tmp_path / "t.safetensors")
    assert t.sha256 == sha256_file(path) and t.path == path
    back = load_teacher(path)
    assert back.sha256 == t.sha256
    assert back.arch == "convnet2_xs" and back.image_size == 16 and back.repr_dim == 32
    assert back.mean == t.mean and back.std == t.std
    assert back.meta["dataset"] == "shapes" and back.meta["probe_accuracy"] == 12.5
    assert back.meta["stem_padding"] == -1
    a, b = t.model.state_dict(), back.model.state_dict()
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.rand(3, 3, 16, 16)
    torch.testing.assert_close(back.represent(x), t.represent(x), rtol=0, atol=0)
    assert load_teacher_file(path).meta["format"] == "ssdd.teacher"
    with pytest.raises(OutputError, match="already exists"):
        save_teacher(t, path)


def test_represent_uint8_equals_float(tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    """uint8 images and their float [0,1] versions give the same representations, in any batch size."""
    x = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    a = tiny_teacher.represent(x)
    b = tiny_teacher.represent(x.float() / 255, batch_size=2)
    assert a.shape == (5, 32)
    torch.testing.assert_close(a, b)


def _tiny_teacher_config(**overrides) -> TeacherConfig:  # type: ignore[no-untyped-def]
    values = dict(arch="convnet2_xs", num_steps=3, batch_size=16, optimizer="adamw", lr=1e-3, warmup_steps=1,
                  projector_dim=32, scale_loss=1.0)
    values.update(overrides)
    return TeacherConfig(**values)  # type: ignore[arg-type]


def test_train_teacher_runs(tiny_data) -> None:  # type: ignore[no-untyped-def]
    """Three Barlow Twins steps on the tiny set: finite losses, a frozen eval-mode teacher, trained from its seeded init.

    Training starts from ``create_model(arch, seed=derive_seed(seed, "teacher-init"))``: every weight
    moved, but by no more than the AdamW steps allow (≤ lr per step), while another seed's init is far away.
    """
    cfg = _tiny_teacher_config()
    dev = torch.device("cpu")
    t, losses = train_teacher(tiny_data.train_images, mean=tiny_data.mean, std=tiny_data.std, config=cfg,
                              device=dev, dataset_name="shapes")
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert t.meta["steps_done"] == 3 and t.arch == "convnet2_xs" and t.repr_dim == 32
    assert t.meta["dataset"] == "shapes" and t.meta["config"]["seed"] == 0
    assert not t.model.training and not any(p.requires_grad for p in t.model.parameters())
    init = dict(create_model("convnet2_xs", image_size=16, out_dim=None,
                             seed=derive_seed(cfg.seed, "teacher-init")).named_parameters())
    other = dict(create_model("convnet2_xs", image_size=16, out_dim=None,
                              seed=derive_seed(cfg.seed + 1, "teacher-init")).named_parameters())
    trained = dict(t.model.named_parameters())
    assert set(trained) == set(init)
    with torch.no_grad():
        for name, p in trained.items():
            moved = float((p - init[name]).abs().max())
            assert 0 < moved <= cfg.num_steps * cfg.lr, (name, moved)
        # the conv weights are far from another seed's initialisation (so the closeness above is meaningful)
        assert float((trained["body.0.weight"] - other["body.0.weight"]).abs().max()) > 20 * cfg.num_steps * cfg.lr
    # both views go through the encoder separately: each BatchNorm saw two batches per step
    bn = [m for m in t.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bn and all(int(m.num_batches_tracked) == 2 * cfg.num_steps for m in bn)


def test_train_teacher_is_seeded(tiny_data) -> None:  # type: ignore[no-untyped-def]
    """The same seed gives identical weights and losses; another seed gives different weights."""
    dev = torch.device("cpu")

    def train(seed: int):  # type: ignore[no-untyped-def]
        return train_teacher(tiny_data.train_images, mean=tiny_data.mean, std=tiny_data.std,
                             config=_tiny_teacher_config(num_steps=2, seed=seed), device=dev)

    (a, la), (b, lb), (c, lc) = train(0), train(0), train(1)
    sa, sb, sc = a.model.state_dict(), b.model.state_dict(), c.model.state_dict()
    assert la == lb and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())
    assert la != lc


def test_train_teacher_rejects_small_datasets(tiny_data) -> None:  # type: ignore[no-untyped-def]
    """Fewer images than the batch size is a ConfigError."""
    cfg = TeacherConfig(arch="convnet2_xs", num_steps=1, batch_size=128, projector_dim=8)
    with pytest.raises(ConfigError, match="fewer than --batch-size"):
        train_teacher(tiny_data.train_images, mean=tiny_data.mean, std=tiny_data.std, config=cfg,
                      device=torch.device("cpu"))


def test_bundle_is_not_a_teacher(tmp_path: Path, tiny_data, tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    """Loading a bundle as a teacher raises BundleError saying it is a bundle; garbage too."""
    from ssdd_cli.bundle import save_bundle
    from ssdd_cli.config import distill_config
    from ssdd_cli.methods.distill import distill

    cfg = distill_config("krr-st", budget=4, num_steps=0, pool_arch="convnet2_xs", pool_size=1, pool_online_steps=2,
                         batch_size=8)
    res = distill(tiny_data, tiny_teacher, cfg, device=torch.device("cpu"))
    save_bundle(tmp_path / "b.safetensors", res.tensors, res.meta)
    with pytest.raises(BundleError, match="distilled-set bundle"):
        load_teacher(tmp_path / "b.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(BundleError, match="not a readable safetensors"):
        load_teacher(tmp_path / "junk.safetensors")
    with pytest.raises(BundleError, match="no such file"):
        load_teacher(tmp_path / "nope.safetensors")
