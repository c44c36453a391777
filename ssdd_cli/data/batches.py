"""Shuffled index batches drawn from an explicit generator: the one batching helper of ssdd.

Data stays where it is (on the device, as airbench keeps it); only index tensors are made here.
"""

from __future__ import annotations

import torch


class ShuffledBatches:
    """Batches of indices into ``n`` items, a fresh permutation per pass.

    Args:
        n: number of items.
        batch_size: indices per batch (capped at ``n``).
        generator: CPU generator of the permutations (a named stream from :mod:`ssdd_cli.rng`).
        drop_last: drop the incomplete batch at the end of a pass; otherwise keep it, and when one
            batch holds everything, yield ``arange(n)`` without drawing a permutation.
        device: where the index tensors go.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator, *, drop_last: bool = True,
                 device: torch.device | str = "cpu") -> None:
        self.n = n
        self.batch_size = min(batch_size, n)
        self.generator = generator
        self.drop_last = drop_last
        self.device = torch.device(device)
        self._queue: list[torch.Tensor] = []

    @property
    def batches_per_pass(self) -> int:
        """Batches in one pass over the items."""
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def next(self) -> torch.Tensor:
        """The next batch of indices ``(batch,)`` on ``device``."""
        if not self._queue:
            if not self.drop_last and self.n <= self.batch_size:
                self._queue = [torch.arange(self.n)]
            else:
                perm = torch.randperm(self.n, generator=self.generator)
                usable = self.n - self.n % self.batch_size if self.drop_last else self.n
                self._queue = list(perm[:usable].split(self.batch_size))
        return self._queue.pop(0).to(self.device)

    def state(self) -> tuple[torch.Tensor, list[int]]:
        """The batches left in the current pass (concatenated) and their sizes, for a checkpoint."""
        queue = [b.cpu() for b in self._queue]
        return (torch.cat(queue) if queue else torch.empty(0, dtype=torch.long)), [len(b) for b in queue]

    def restore(self, remaining: torch.Tensor, sizes: list[int]) -> None:
        """Continue the pass that :meth:`state` recorded (the generator's state is restored by the caller)."""
        self._queue = list(remaining.split(sizes)) if sizes else []
