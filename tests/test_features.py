"""Options without tests elsewhere, each compared with a run that differs in that option only.

Joint approximation networks, the wall-time limit, the target-side lr, gradient clipping, KRR-ST's raw
image space, option ranges, checkpoint import through the CLI and a failing ``inspect --verify``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
from clihelp import fails, invoke, ok
from conftest import tiny_distill_config

from ssdd_cli.api import distill
from ssdd_cli.bundle import load_bundle, save_bundle
from ssdd_cli.errors import ConfigError
from ssdd_cli.expand import expand_pairs

CPU = torch.device("cpu")
ROTATIONS = ("rot90", "rot180", "rot270")
APPROX = sorted(f"approx.{v}.{n}" for v in ROTATIONS for n in ("0.weight", "0.bias", "2.weight", "2.bias"))
BASES = ["image_basis", "image_mean", "image_coeffs", "repr_basis", "repr_mean", "repr_coeffs"]


def max_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


# ---------------------------------------------------------------------------------------------
# approx_mode


def test_joint_approx_networks_are_trained_in_the_loop(tiny_data, tiny_teacher, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """approx_mode="joint": the networks are fitted at initialisation and then optimised by the outer loop.

    At 0 steps the joint networks are exactly the networks "after" mode fits (same fit, same starting set);
    after 3 steps every network tensor has moved, by no more than the outer AdamW steps allow (so it was
    trained in the loop, not re-fitted), no per-view coefficients are stored, and the bundle expands to
    exactly the trained support set.
    """
    joint0 = distill(tiny_data, tiny_teacher, tiny_distill_config("boost", approx_mode="joint", num_steps=0), device=CPU)
    after0 = distill(tiny_data, tiny_teacher, tiny_distill_config("boost", num_steps=0), device=CPU)
    cfg = tiny_distill_config("boost", approx_mode="joint")
    joint = distill(tiny_data, tiny_teacher, cfg, device=CPU)

    assert sorted(joint.tensors) == sorted(BASES + APPROX)
    assert not any(k.startswith(("view_coeffs.", "view_targets.")) for k in joint.tensors)
    fit = joint.meta.fit
    assert fit["steps_done"] == 3 and fit["approx"] == {}  # nothing is fitted after the loop
    init_fit = {k: v for k, v in fit["init"].items() if k.startswith("approx_init_")}
    assert set(init_fit) == {f"approx_init_{v}" for v in ROTATIONS}
    assert init_fit == {k: v for k, v in joint0.meta.fit["init"].items() if k.startswith("approx_init_")}
    for view in ROTATIONS:  # the init fit is the fit "after" mode does on the untouched set
        assert init_fit[f"approx_init_{view}"] == pytest.approx(after0.meta.fit["approx"][view]["relative_error"])
    for key in APPROX:
        assert torch.equal(joint0.tensors[key], after0.tensors[key]), key
        moved = max_change(joint.tensors[key], joint0.tensors[key])
        assert 0 < moved <= cfg.num_steps * cfg.lr * 1.01, (key, moved)
    path = save_bundle(tmp_path / "joint.safetensors", joint.tensors, joint.meta)
    images, targets = expand_pairs(load_bundle(path))
    with torch.no_grad():
        xs, ys = joint.synthetic.support()
    # expansion folds the upsampling into the bases: the same pairs up to float rounding
    torch.testing.assert_close(images, xs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(targets, ys, rtol=1e-5, atol=1e-5)


def _approx_shift(tensors: dict[str, torch.Tensor], view: str, coeffs: torch.Tensor) -> torch.Tensor:
    """h_a(C) = Linear → ReLU → Linear, computed from the stored weights."""
    hidden = torch.relu(coeffs @ tensors[f"approx.{view}.0.weight"].T + tensors[f"approx.{view}.0.bias"])
    return hidden @ tensors[f"approx.{view}.2.weight"].T + tensors[f"approx.{view}.2.bias"]


def test_after_mode_fits_the_networks_to_the_final_coefficients(tiny_data, tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    """approx_mode="after" (default): the loop trains per-view coefficients, the networks are fitted to them at the end.

    The no-approximation ablation runs the same loop and stores those final coefficients, so the
    reported fit (relative error, shift norm) must be reproducible from the stored networks and the
    ablation's coefficients; the shift differs from the one at initialisation.
    """
    after = distill(tiny_data, tiny_teacher, tiny_distill_config("boost", num_images=8), device=CPU)
    plain = distill(tiny_data, tiny_teacher, tiny_distill_config("boost", num_images=8, approx=False), device=CPU)
    plain0 = distill(tiny_data, tiny_teacher, tiny_distill_config("boost", num_images=8, approx=False, num_steps=0),
                     device=CPU)
    assert after.meta.config["approx_mode"] == "after"
    assert not any(k.startswith("approx_init_") for k in after.meta.fit["init"])
    assert set(after.meta.fit["approx"]) == set(ROTATIONS)
    assert sorted(plain.tensors) == sorted(BASES + [f"view_coeffs.{v}" for v in ROTATIONS])
    for key in BASES:  # the same outer loop ran in both
        assert torch.equal(after.tensors[key], plain.tensors[key]), key
    base = after.tensors["repr_coeffs"]
    for view in ROTATIONS:
        shift = plain.tensors[f"view_coeffs.{view}"] - base
        err = float((_approx_shift(after.tensors, view, base) - shift).pow(2).sum() / shift.pow(2).sum())
        report = after.meta.fit["approx"][view]
        assert err == pytest.approx(report["relative_error"], rel=1e-3)
        assert float(shift.norm() / base.norm()) == pytest.approx(report["shift_norm"], rel=1e-4)
        init_shift = plain0.tensors[f"view_coeffs.{view}"] - plain0.tensors["repr_coeffs"]
        assert float(init_shift.norm() / plain0.tensors["repr_coeffs"].norm()) != pytest.approx(report["shift_norm"],
                                                                                              rel=1e-3)


# ---------------------------------------------------------------------------------------------
# max_minutes


def test_max_minutes_stops_the_outer_loop(tiny_data, tiny_teacher, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A wall-time limit shorter than one step stops after the first step and still gives a valid bundle."""
    short = distill(tiny_data, tiny_teacher, tiny_distill_config("krr_st", num_steps=5, max_minutes=1e-9), device=CPU)
    assert short.meta.fit["steps_done"] == 1 and len(short.losses) == 1
    assert short.meta.fit["drift"]["images"] > 0  # the one step was taken
    load_bundle(save_bundle(tmp_path / "short.safetensors", short.tensors, short.meta))
    roomy = distill(tiny_data, tiny_teacher, tiny_distill_config("krr_st", num_steps=5, max_minutes=60.0), device=CPU)
    assert roomy.meta.fit["steps_done"] == 5


# ---------------------------------------------------------------------------------------------
# lr_targets


def test_lr_targets_controls_only_the_target_side(tiny_data, tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    """KRR-ST: a tiny target lr freezes the targets while the images move as usual; a large one moves them far more."""
    start = distill(tiny_data, tiny_teacher, tiny_distill_config("krr_st", num_steps=0), device=CPU)
    default = distill(tiny_data, tiny_teacher, tiny_distill_config("krr_st"), device=CPU)
    frozen = distill(tiny_data, tiny_teacher, tiny_distill_config("krr_st", lr_targets=1e-12), device=CPU)
    fast = distill(tiny_data, tiny_teacher, tiny_distill_config("krr_st", lr_targets=1e-1), device=CPU)
    lr, steps = default.meta.config["lr"], 3

    def moved(res, key: str) -> float:  # type: ignore[no-untyped-def]
        return max_change(res.tensors[key], start.tensors[key])

    assert moved(frozen, "targets") <= 1e-9
    assert moved(default, "targets") > 1e-2 * lr  # the default target lr is the image lr
    assert moved(frozen, "images") > 0.5 * lr and moved(frozen, "images") <= steps * lr * 1.01
    assert moved(fast, "targets") > 100 * moved(default, "targets")
    assert moved(fast, "images") <= steps * lr * 1.01  # the image side keeps its own lr
    assert frozen.meta.config["lr_targets"] == 1e-12


# ---------------------------------------------------------------------------------------------
# grad_clip


def test_grad_clip_limits_the_outer_update(tiny_data, tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    """A gradient norm clipped to 1e-8 falls below AdamW's eps, so the set barely moves; a loose clip changes nothing.

    (AdamW normalises the update, so clipping only shows through eps: without clipping the images move
    by about lr per step.)
    """
    start = distill(tiny_data, tiny_teacher, tiny_distill_config("krr_st", num_steps=0), device=CPU)
    plain = distill(tiny_data, tiny_teacher, tiny_distill_config("krr_st"), device=CPU)
    tight = distill(tiny_data, tiny_teacher, tiny_distill_config("krr_st", grad_clip=1e-8), device=CPU)
    loose = distill(tiny_data, tiny_teacher, tiny_distill_config("krr_st", grad_clip=1e6), device=CPU)
    for res in (plain, tight, loose):
        assert all(torch.isfinite(t).all() for t in res.tensors.values())
    assert all(torch.equal(loose.tensors[k], plain.tensors[k]) for k in plain.tensors)  # norm below the clip
    assert not torch.equal(tight.tensors["images"], plain.tensors["images"])
    for key in ("images", "targets"):
        assert max_change(tight.tensors[key], start.tensors[key]) < 0.2 * max_change(plain.tensors[key], start.tensors[key])
    assert tight.losses[0] == plain.losses[0]  # the first loss is computed before any update


@pytest.mark.parametrize("option, value, name", [
    ("lr_targets", 0.0, r"lr.targets"),  # was silently replaced by lr (`lr_targets or lr`)
    ("lr_targets", -1.0, r"lr.targets"),  # was a raw ValueError from AdamW at the first step
    ("grad_clip", -1.0, r"grad.clip"),  # was silently "off"
    ("max_minutes", 0.0, r"minutes"),  # was silently "no limit"
    ("max_minutes", -1.0, r"minutes"),  # was "stop after one step"
])
def test_option_values_out_of_range_are_config_errors(option: str, value: float, name: str) -> None:
    """lr_targets ≤ 0, grad_clip < 0 and max_minutes ≤ 0 are refused when the config is built (not ignored)."""
    from ssdd_cli.config import TeacherConfig

    with pytest.raises(ConfigError, match=name):
        tiny_distill_config("krr_st", **{option: value})
    if option == "max_minutes":
        with pytest.raises(ConfigError, match=name):
            TeacherConfig(max_minutes=value)


# ---------------------------------------------------------------------------------------------
# raw_space


def _match_training_images(images: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    """Index of the training image (as float [0,1]) nearest to each stored image."""
    raw = train.float() / 255
    dist = (images.flatten(1)[:, None, :] - raw.flatten(1)[None, :, :]).abs().amax(-1)
    return dist.argmin(1)


def test_raw_space_stores_raw_pixels(tiny_data, tiny_teacher, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """raw_space=True (KRR-ST quirk Q2): the initial images are the chosen real images in [0,1], not normalised.

    The default run picks the same images (same seed) and stores normalize(raw); both use the teacher's
    representations of the raw images as targets. The metadata says which space the bundle is in.
    """
    raw_run = distill(tiny_data, tiny_teacher, tiny_distill_config("krr_st", raw_space=True, num_steps=0), device=CPU)
    norm_run = distill(tiny_data, tiny_teacher, tiny_distill_config("krr_st", num_steps=0), device=CPU)
    assert raw_run.meta.image_space == "raw" and norm_run.meta.image_space == "normalized"
    images = raw_run.tensors["images"]
    assert images.min() >= 0 and images.max() <= 1
    idx = _match_training_images(images, tiny_data.train_images)
    expected = tiny_data.train_images[idx].float() / 255
    assert len(set(idx.tolist())) == images.shape[0]  # distinct real images
    assert torch.equal(images, expected)
    mean = torch.tensor(tiny_data.mean).view(1, -1, 1, 1)
    std = torch.tensor(tiny_data.std).view(1, -1, 1, 1)
    torch.testing.assert_close(norm_run.tensors["images"], (expected - mean) / std, rtol=0, atol=1e-6)
    assert norm_run.tensors["images"].min() < 0
    torch.testing.assert_close(raw_run.tensors["targets"], norm_run.tensors["targets"], rtol=0, atol=0)
    torch.testing.assert_close(raw_run.tensors["targets"], tiny_teacher.represent(expected), rtol=1e-4, atol=1e-5)
    # after training the bundle keeps the flag and stays valid
    trained = distill(tiny_data, tiny_teacher, tiny_distill_config("krr_st", raw_space=True, num_steps=2), device=CPU)
    bundle = load_bundle(save_bundle(tmp_path / "raw.safetensors", trained.tensors, trained.meta))
    assert bundle.meta.image_space == "raw" and bundle.meta.config["raw_space"] is True


def test_raw_space_is_krr_st_only() -> None:
    """raw_space with Boost is a ConfigError naming the method it applies to."""
    with pytest.raises(ConfigError, match="krr-st"):
        tiny_distill_config("boost", raw_space=True)


# ---------------------------------------------------------------------------------------------
# CLI: checkpoint import and a failing inspect --verify


def test_cli_import_checkpoint(tmp_path: Path) -> None:
    """``ssdd teacher --import`` writes a teacher whose representations equal the source model's."""
    from ssdd_cli.models import create_model
    from ssdd_cli.teacher import load_teacher

    src = create_model("resnet18", image_size=16, out_dim=None, seed=3).eval()
    torch.save(src.state_dict(), tmp_path / "ckpt.pt")
    out = tmp_path / "out.safetensors"
    res = invoke("teacher", "--import", str(tmp_path / "ckpt.pt"), "-o", str(out), "--arch", "resnet18",
                 "--image-size", "16", "--device", "cpu")
    ok(res)
    assert "imported" in res.stderr
    t = load_teacher(out)
    assert t.arch == "resnet18" and t.image_size == 16 and t.meta["origin"] == "import:krr-st"
    x = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(t.model.represent(x), src.represent(x), rtol=1e-4, atol=1e-4)
    # the output exists now: a second import is refused unless --overwrite
    fails(invoke("teacher", "--import", str(tmp_path / "ckpt.pt"), "-o", str(out), "--arch", "resnet18",
                 "--image-size", "16", "--device", "cpu"), 7, "exists")


class _Payload:
    """A pickle that runs code when unpickled without ``weights_only`` (it creates a folder)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("case", ["plain_objects", "code_pickle"])
def test_cli_import_refuses_non_tensor_pickles(tmp_path: Path, case: str) -> None:
    """A .pt holding no tensors, or a pickle that would run code, is refused with exit 5 and one error line.

    The code pickle is never executed (checkpoints are loaded with weights_only) and no teacher is written.
    """
    ckpt, marker, out = tmp_path / "bad.pt", tmp_path / "pwned", tmp_path / "t.safetensors"
    if case == "plain_objects":
        torch.save({"epoch": 3, "arch": "resnet18", "lr": [0.1, 0.01]}, ckpt)
        text = "not a state dict of tensors"
    else:
        torch.save({"conv1.weight": torch.zeros(1), "evil": _Payload(marker)}, ckpt)
        text = "cannot read checkpoint"
    res = invoke("teacher", "--import", str(ckpt), "-o", str(out), "--arch", "resnet18", "--image-size", "16",
                 "--device", "cpu")
    fails(res, 5, text)
    assert str(ckpt) in res.stderr
    assert not marker.exists() and not out.exists()


@pytest.mark.parametrize("case, failed", [("cost", "storage matches metadata"), ("budget", "within budget")])
def test_cli_inspect_verify_failure(case: str, failed: str, tiny_data, tiny_teacher, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """``inspect --verify``: a bundle whose recorded storage cost (or budget) disagrees with its tensors exits 4.

    The untouched bundle verifies; the same tensors saved with the altered metadata fail exactly the one check.
    """
    res = distill(tiny_data, tiny_teacher, tiny_distill_config("krr_st", num_steps=1), device=CPU)
    good = save_bundle(tmp_path / "good.safetensors", res.tensors, res.meta)
    ok(invoke("inspect", str(good), "--verify", "--device", "cpu"))
    if case == "cost":
        meta = dataclasses.replace(res.meta, storage={**res.meta.storage, "cost": res.meta.storage["cost"] + 0.5})
    else:
        meta = dataclasses.replace(res.meta, budget=res.meta.budget // 2)
    bad = save_bundle(tmp_path / "bad.safetensors", res.tensors, meta)
    line = fails(invoke("inspect", str(bad), "--verify", "--device", "cpu"), 4, "verification failed")
    assert failed in line
    other = ({"storage matches metadata", "within budget"} - {failed}).pop()
    assert other not in line  # only the altered field fails
    ok(invoke("inspect", str(bad), "--device", "cpu"))  # without --verify the bundle still loads and is described
