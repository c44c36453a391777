"""Shared fixtures: a per-test cache folder, a tiny shapes dataset and a tiny saved teacher.

Everything is CPU-sized (style.md §2.10): 16-px images, a 2-block ConvNet teacher, one thread.
Tests marked ``slow`` only run with ``--runslow``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
# `--threads auto` keeps an explicit OMP_NUM_THREADS: CLI tests then leave the one thread above alone, so
# results compared bit for bit across tests are computed with the same thread count.
os.environ["OMP_NUM_THREADS"] = "1"

IMAGE_SIZE = 16


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--runslow``."""
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers (also listed in pyproject.toml)."""
    config.addinivalue_line("markers", "slow: longer tests, run with --runslow")
    config.addinivalue_line("markers", "gpu: needs CUDA")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``slow`` tests unless ``--runslow`` is given."""
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: pass --runslow to run")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own ``$SSDD_CACHE`` so nothing touches ``~/.cache/ssdd``."""
    cache = tmp_path_factory.mktemp("ssdd-cache")
    monkeypatch.setenv("SSDD_CACHE", str(cache))
    return cache


@pytest.fixture(scope="session")
def tiny_data():  # type: ignore[no-untyped-def]
    """64 train / 32 test shapes images at 16 px (treat as read-only)."""
    from ssdd_cli.data import make_shapes

    return make_shapes(num_train=64, num_test=32, image_size=IMAGE_SIZE, seed=0)


@pytest.fixture(scope="session")
def tiny_teacher_path(tiny_data, tmp_path_factory: pytest.TempPathFactory) -> Path:  # type: ignore[no-untyped-def]
    """A randomly initialised ``convnet2_xs`` teacher (32-d) saved to a file, so it has a sha256."""
    from ssdd_cli.models import create_model
    from ssdd_cli.teacher import Teacher, save_teacher

    model = create_model("convnet2_xs", image_size=IMAGE_SIZE, seed=1234)
    teacher = Teacher(model, arch="convnet2_xs", image_size=IMAGE_SIZE, mean=tiny_data.mean, std=tiny_data.std,
                      meta={"dataset": tiny_data.name})
    path = tmp_path_factory.mktemp("teacher") / "teacher.safetensors"
    save_teacher(teacher, path)
    return path


@pytest.fixture
def tiny_teacher(tiny_teacher_path: Path):  # type: ignore[no-untyped-def]
    """A fresh :class:`~ssdd_cli.teacher.Teacher` loaded from :func:`tiny_teacher_path` (per test)."""
    from ssdd_cli.teacher import load_teacher

    teacher = load_teacher(tiny_teacher_path, torch.device("cpu"))
    assert teacher.sha256
    return teacher


def tiny_distill_config(method: str, **overrides):  # type: ignore[no-untyped-def]
    """A distillation config sized for tests (budget 8, 3 steps, 2 tiny pool models, batch 16)."""
    from ssdd_cli.config import distill_config

    values = dict(budget=8, pool_arch="convnet2_xs", pool_size=2, pool_online_steps=3, batch_size=16, num_steps=3,
                  approx_steps=20)
    values.update(overrides)
    return distill_config(method, image_size=IMAGE_SIZE, **values)


@pytest.fixture(scope="session")
def tiny_results(tiny_data, tiny_teacher_path):  # type: ignore[no-untyped-def]
    """``{"krr_st": DistillResult, "boost": DistillResult}`` from the tiny configs (treat as read-only)."""
    from ssdd_cli.api import distill
    from ssdd_cli.teacher import load_teacher

    teacher = load_teacher(tiny_teacher_path, torch.device("cpu"))
    return {m: distill(tiny_data, teacher, tiny_distill_config(m), device=torch.device("cpu"))
            for m in ("krr_st", "boost")}
