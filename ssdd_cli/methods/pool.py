"""The model pool of KRR-ST (method.md §5.4): partially trained ConvNets whose features feed KRR."""

from __future__ import annotations

import torch
from torch import nn

from ..checkpoint import State
from ..device import autocast
from ..engine import fit, make_optimizer
from ..losses import mse
from ..models import create_model
from ..reporting import ProgressReporter
from ..rng import derive_seed, stream


class ModelPool:
    """``size`` models of one architecture, each trained online on the current distilled set.

    Model ``i`` starts with ``r_i ~ UniformInt[1, online_steps)`` warm-up steps; after each outer
    step the model just used takes one SGD step on the current support set, and once its counter
    reaches ``online_steps`` it is re-initialised (fresh weights and optimizer). ``reset_bug``
    reproduces upstream's quirk Q1 (the counter is not reset, so the slot stays untrained).
    """

    def __init__(
        self,
        *,
        arch: str,
        image_size: int,
        out_dim: int,
        size: int,
        online_steps: int,
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-3,
        reset_bug: bool = False,
        seed: int = 0,
        device: torch.device,
        amp: bool | None = False,
    ) -> None:
        self.arch, self.image_size, self.out_dim = arch, image_size, out_dim
        self.size, self.online_steps = size, online_steps
        self.lr, self.momentum, self.weight_decay = lr, momentum, weight_decay
        self.reset_bug, self.seed, self.device, self.amp = reset_bug, seed, device, amp
        self._gen = stream(seed, "model-pool", "cpu")
        self._inits = 0
        self.models: list[nn.Module] = []
        self.optimizers: list[torch.optim.Optimizer] = []
        self.counters: list[int] = []
        for _ in range(size):
            model, opt = self._fresh()
            self.models.append(model)
            self.optimizers.append(opt)
            self.counters.append(0)

    def _fresh(self) -> tuple[nn.Module, torch.optim.Optimizer]:
        self._inits += 1
        model = create_model(self.arch, image_size=self.image_size, out_dim=self.out_dim,
                             seed=derive_seed(self.seed, f"pool-init-{self._inits}"))
        model.to(self.device, memory_format=torch.channels_last)
        opt = make_optimizer("sgd", model.parameters(), self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        return model, opt

    def _train(self, i: int, images: torch.Tensor, targets: torch.Tensor, steps: int) -> None:
        model = self.models[i].train()

        def step(_: int) -> torch.Tensor:
            with autocast(self.device, self.amp):
                out = model(images)
            return mse(out, targets)

        # The online step (steps = 1, every outer step) reads nothing back, so it never waits for the device;
        # a diverging pool model shows up in the outer loss, which is checked.
        fit(step, self.optimizers[i], steps, log_every=steps if steps > 1 else 0)

    def warm_up(self, images: torch.Tensor, targets: torch.Tensor, reporter: ProgressReporter | None = None,
                max_age: int | None = None) -> None:
        """Train model ``i`` for ``r_i ~ UniformInt[1, online_steps)`` steps (its counter = ``r_i``).

        With ``max_age`` (the run's outer steps) the ages are drawn below ``min(online_steps, max_age + 1)``:
        a run shorter than a pool cycle never meets models older than itself, so a 5-step run does not
        spend minutes warming models up. Runs at least ``online_steps`` long are unaffected.
        """
        high = max(min(self.online_steps, max_age + 1) if max_age is not None else self.online_steps, 2)
        steps = torch.randint(1, high, (self.size,), generator=self._gen).tolist()
        if reporter:
            reporter.start("pool warm-up", sum(steps))
        for i, r in enumerate(steps):
            self._train(i, images, targets, r)
            self.counters[i] = r
            if reporter:
                reporter.advance(r)
        if reporter:
            reporter.stop()

    def sample(self) -> int:
        """Uniformly random pool index."""
        return int(torch.randint(0, self.size, (1,), generator=self._gen))

    def update(self, i: int, images: torch.Tensor, targets: torch.Tensor) -> None:
        """One online SGD step for model ``i``, or its re-initialisation when its counter is full."""
        if self.counters[i] >= self.online_steps:
            self.models[i], self.optimizers[i] = self._fresh()
            if not self.reset_bug:
                self.counters[i] = 0
            return
        self._train(i, images, targets, 1)
        self.counters[i] += 1

    def tensors(self) -> list[torch.Tensor]:
        """Every model's parameters and buffers and every optimizer's momentum, in a fixed order.

        What processes of a distributed run compare and re-synchronise (the counters and the sampling
        generator are the same everywhere by construction).
        """
        out: list[torch.Tensor] = []
        for model, opt in zip(self.models, self.optimizers, strict=True):
            out.extend(model.parameters())
            out.extend(model.buffers())
            out.extend(opt.state[p]["momentum_buffer"] for g in opt.param_groups for p in g["params"]
                       if opt.state.get(p, {}).get("momentum_buffer") is not None)
        return out

    def save_state(self, state: State, prefix: str = "pool") -> None:
        """Every model, optimizer and counter, and the sampling generator, into a checkpoint."""
        for i, (model, opt) in enumerate(zip(self.models, self.optimizers, strict=True)):
            state.put_module(f"{prefix}.{i}.model", model)
            state.put_optimizer(f"{prefix}.{i}.opt", opt)
        state.put_generator(prefix, self._gen)
        state.values[prefix] = {"counters": list(self.counters), "inits": self._inits}

    def load_state(self, state: State, prefix: str = "pool") -> None:
        """Restore what :meth:`save_state` stored (instead of :meth:`warm_up`)."""
        for i, (model, opt) in enumerate(zip(self.models, self.optimizers, strict=True)):
            state.get_module(f"{prefix}.{i}.model", model)
            state.get_optimizer(f"{prefix}.{i}.opt", opt)
        state.get_generator(prefix, self._gen)
        self.counters = list(state.values[prefix]["counters"])
        self._inits = int(state.values[prefix]["inits"])
