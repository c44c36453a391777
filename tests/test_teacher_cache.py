"""The teacher cache (``teacher_cache = K``): fixed views, looked-up targets, no teacher forward per step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import tiny_distill_config

from ssdd_cli import api, augment
from ssdd_cli.errors import ConfigError
from ssdd_cli.methods.distill import distill as loop

CPU = torch.device("cpu")


def test_crop_flip_at_replays_crop_flip() -> None:
    """Drawing the parameters and applying them gives what the random augmentation gives from the same stream."""
    x = torch.rand(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    direct = augment.crop_flip(x, torch.Generator().manual_seed(5))
    params = augment.crop_flip_params(6, torch.Generator().manual_seed(5))
    torch.testing.assert_close(augment.crop_flip_at(x, params), direct)
    assert torch.equal(augment.crop_flip_at(x, torch.tensor([[4, 4, 0]] * 6)), x)  # slot 0: the image itself


def test_cache_holds_the_teachers_view_targets(tiny_data, tiny_teacher, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    views, targets = api.teacher_view_cache(tiny_teacher, tiny_data, 3, cache=tmp_path, amp=False)
    n = tiny_data.train_images.shape[0]
    assert views.shape == (n, 4, 3) and targets.shape == (n, 4, tiny_teacher.repr_dim) and targets.dtype == torch.float16
    x = augment.to_float(tiny_data.train_images[:5])
    for slot in range(4):
        xa = augment.normalize(augment.crop_flip_at(x, views[:5, slot]), tiny_data.mean, tiny_data.std)
        want = tiny_teacher.represent_normalized(xa)
        torch.testing.assert_close(targets[:5, slot].float(), want, rtol=2e-3, atol=2e-3)
    assert (views[:, 0] == torch.tensor([4, 4, 0])).all() and len(set(map(tuple, views[:, 1:].reshape(-1, 3).tolist()))) > 10
    files = list((tmp_path / "teacher-views").glob("*.safetensors"))
    assert len(files) == 1
    again_views, again = api.teacher_view_cache(tiny_teacher, tiny_data, 3, cache=tmp_path, amp=False)
    assert torch.equal(again, targets) and torch.equal(again_views, views)


def test_the_loop_looks_targets_up(tiny_data, tiny_teacher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """With the cache, the outer loop never runs the teacher; without it, every step does."""
    cfg = tiny_distill_config("krr_st", num_steps=3, teacher_cache=2)
    views = api.teacher_view_cache(tiny_teacher, tiny_data, 2, cache=tmp_path)
    calls = {"n": 0}
    original = tiny_teacher.represent_normalized

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(tiny_teacher, "represent_normalized", counted)
    start = calls["n"]
    cached = loop(tiny_data, tiny_teacher, cfg, device=CPU, teacher_views=views)
    in_loop_cached = calls["n"] - start
    start = calls["n"]
    plain = loop(tiny_data, tiny_teacher, tiny_distill_config("krr_st", num_steps=3), device=CPU)
    in_loop_plain = calls["n"] - start
    assert in_loop_plain - in_loop_cached == 3  # one teacher forward per outer step, none with the cache
    assert cached.meta.config["teacher_cache"] == 2 and cached.meta.fit["steps_done"] == 3
    assert not torch.equal(cached.tensors["images"], plain.tensors["images"])
    with pytest.raises(ValueError, match="teacher_views"):
        loop(tiny_data, tiny_teacher, cfg, device=CPU)


def test_range() -> None:
    with pytest.raises(ConfigError, match="teacher_cache must be in"):
        tiny_distill_config("boost", teacher_cache=-1)
