"""The model pool's counter and re-initialisation policy (method.md §5.4, quirk Q1)."""

from __future__ import annotations

import torch

from ssdd_cli.methods.pool import ModelPool
from ssdd_cli.models import create_model
from ssdd_cli.rng import derive_seed

SIZE, OUT = 8, 4


def make_pool(reset_bug: bool, size: int = 1, online_steps: int = 2, seed: int = 0) -> ModelPool:
    return ModelPool(arch="convnet2_xs", image_size=SIZE, out_dim=OUT, size=size, online_steps=online_steps,
                     reset_bug=reset_bug, seed=seed, device=torch.device("cpu"))


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(8, 3, SIZE, SIZE, generator=g), torch.randn(8, OUT, generator=g)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def fresh_init(seed: int, k: int) -> dict[str, torch.Tensor]:
    """The weights of the pool's k-th fresh model (its documented seeding)."""
    return create_model("convnet2_xs", image_size=SIZE, out_dim=OUT, seed=derive_seed(seed, f"pool-init-{k}")).state_dict()


def test_counter_reset_policy() -> None:
    """online_steps=2: warm-up → counter 1; an update trains (→ 2); the next re-initialises and resets to 0."""
    pool = make_pool(reset_bug=False)
    x, y = data()
    assert same(weights(pool.models[0]), fresh_init(0, 1))
    pool.warm_up(x, y)
    assert pool.counters == [1]  # r ~ UniformInt[1, 2) = 1
    assert not same(weights(pool.models[0]), fresh_init(0, 1))  # trained
    before = weights(pool.models[0])
    pool.update(0, x, y)
    assert pool.counters == [2]
    after = weights(pool.models[0])
    assert not same(before, after)  # an SGD step
    pool.update(0, x, y)  # counter full: re-initialise
    assert pool.counters == [0]
    assert same(weights(pool.models[0]), fresh_init(0, 2))
    pool.update(0, x, y)  # trained again
    assert pool.counters == [1]
    assert not same(weights(pool.models[0]), fresh_init(0, 2))


def test_reset_bug_reinitialises_every_time() -> None:
    """reset_bug: the counter is never reset, so the slot is re-created (a fresh init) at every update."""
    pool = make_pool(reset_bug=True)
    x, y = data()
    pool.warm_up(x, y)
    pool.update(0, x, y)
    assert pool.counters == [2]
    for k in range(2, 5):
        pool.update(0, x, y)
        assert pool.counters[0] >= 2
        assert same(weights(pool.models[0]), fresh_init(0, k))  # untrained fresh weights, new each call
    assert not same(fresh_init(0, 3), fresh_init(0, 4))


def test_fresh_optimizer_on_reinit() -> None:
    """A re-initialised model gets a new optimizer (no stale momentum)."""
    pool = make_pool(reset_bug=False)
    x, y = data()
    pool.warm_up(x, y)
    pool.update(0, x, y)
    old_opt = pool.optimizers[0]
    assert len(old_opt.state) > 0
    pool.update(0, x, y)
    assert pool.optimizers[0] is not old_opt and len(pool.optimizers[0].state) == 0
    assert pool.optimizers[0].param_groups[0]["params"][0] is next(pool.models[0].parameters())


def test_warm_up_steps_and_sampling_are_seeded() -> None:
    """Warm-up counters lie in [1, online_steps) and, like sample(), follow the seed."""
    x, y = data()
    a, b = make_pool(False, size=4, online_steps=5, seed=1), make_pool(False, size=4, online_steps=5, seed=1)
    a.warm_up(x, y)
    b.warm_up(x, y)
    assert a.counters == b.counters and all(1 <= c < 5 for c in a.counters)
    assert [a.sample() for _ in range(10)] == [b.sample() for _ in range(10)]
    assert all(same(weights(m1), weights(m2)) for m1, m2 in zip(a.models, b.models))
    assert not same(weights(a.models[0]), weights(a.models[1]))  # each slot has its own init


def test_warm_up_is_bounded_by_the_run() -> None:
    """A run shorter than a pool cycle warms its models up by fewer steps than it has; longer runs are unaffected."""
    x, y = torch.randn(4, 3, 16, 16), torch.randn(4, 32)
    short = ModelPool(arch="convnet2_xs", image_size=16, out_dim=32, size=6, online_steps=100, seed=0, device=torch.device("cpu"))
    short.warm_up(x, y, max_age=3)
    assert all(1 <= c <= 3 for c in short.counters)
    full = ModelPool(arch="convnet2_xs", image_size=16, out_dim=32, size=6, online_steps=5, seed=0, device=torch.device("cpu"))
    same = ModelPool(arch="convnet2_xs", image_size=16, out_dim=32, size=6, online_steps=5, seed=0, device=torch.device("cpu"))
    full.warm_up(x, y)
    same.warm_up(x, y, max_age=1000)
    assert full.counters == same.counters and max(full.counters) <= 4
