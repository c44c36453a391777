"""Running under ``torchrun``: the process group, this process's rank and device, and the collectives ssdd uses.

``torchrun --nproc_per_node K -m ssdd_cli teacher|distill|evaluate ...`` starts K processes with
``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` and ``MASTER_PORT`` in their environment;
:func:`setup` turns that into a process group (nccl on CUDA, gloo on the CPU) and a device per
process (``cuda:LOCAL_RANK``). Outside torchrun, or with one process, nothing is initialised and
every function here is a cheap no-op: world size 1, rank 0, tensors returned as they are.

Two process groups are used: the default one (nccl or gloo) for tensors on the device, and a gloo
group for small host-side agreements (stop flags, barriers, Python objects), so that agreeing on
"stop now" never waits for the GPU. Functions that take no group work on whatever process group a
library caller initialised, too.

The rank helpers (:func:`rank`, :func:`world_size`, :func:`is_main`) do not import torch, so the CLI
can decide who prints before any work starts.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import inspect
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

#: longest wait on the host-side group (rank 0 decoding a dataset or filling a cache while the others wait);
#: the device group keeps torch's default timeout
HOST_TIMEOUT = datetime.timedelta(hours=6)

_host_group: Any = None  # the gloo group of this run, once :func:`init_from_env` has made one


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


#: inside :func:`alone`: this process works as if it were the only one
_alone = False


@contextlib.contextmanager
def alone() -> Iterator[None]:
    """Inside the block, work as a single process would: world size 1, no collectives.

    For independent jobs dealt out with :func:`my_share` (``evaluate``'s runs), whose inner code
    (a baseline's selection, a pretraining) must not split its batch or meet the other processes.
    """
    global _alone
    before, _alone = _alone, True
    try:
        yield
    finally:
        _alone = before


def _dist() -> Any:
    """:func:`_group_up`, except inside :func:`alone` (``None`` there: no collectives)."""
    return None if _alone else _group_up()


def _group_up() -> Any:
    """``torch.distributed`` when torch is loaded and a process group is up, else ``None`` (never imports torch)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    dist = torch.distributed
    return dist if dist.is_available() and dist.is_initialized() else None


def launched() -> bool:
    """Whether this process was started by torchrun (or a launcher like it) with more than one process."""
    return _env_int("WORLD_SIZE", 1) > 1


def world_size() -> int:
    """Processes in the run (1 outside torchrun, and inside :func:`alone`)."""
    if _alone:
        return 1
    dist = _dist()
    return dist.get_world_size() if dist is not None else _env_int("WORLD_SIZE", 1)


def rank() -> int:
    """This process's rank, 0 … world_size−1 (0 outside torchrun)."""
    dist = _group_up()  # the real rank, inside alone() too: it still decides who prints
    return dist.get_rank() if dist is not None else _env_int("RANK", 0)


def local_rank() -> int:
    """This process's rank on its machine (selects its GPU)."""
    return _env_int("LOCAL_RANK", 0)


def is_main() -> bool:
    """Whether this process prints progress and writes outputs (rank 0)."""
    return rank() == 0


def active() -> bool:
    """Whether more than one process takes part (a process group with world size > 1 is up)."""
    dist = _dist()
    return dist is not None and dist.get_world_size() > 1


# ----------------------------------------------------------------------------------------------
# set-up


def init_from_env(device: torch.device | None = None) -> bool:
    """Join the process group torchrun describes in the environment (idempotent).

    The backend follows the device: nccl for CUDA, gloo for the CPU (``None``: CUDA when available).
    Does nothing and returns ``False`` when the environment names a single process.

    Raises:
        DeviceError: this torch build lacks ``torch.distributed`` or the backend the device needs.
    """
    import torch
    import torch.distributed as dist

    from .errors import DeviceError

    global _host_group
    if not launched():
        return False
    if not dist.is_available():
        raise DeviceError("launched with several processes, but this torch build has no torch.distributed; "
                          "run without torchrun")
    if device is None:
        device = torch.device(f"cuda:{local_rank()}" if torch.cuda.is_available() else "cpu")
    if not dist.is_initialized():
        cuda = device.type == "cuda"
        if cuda and not dist.is_nccl_available():
            raise DeviceError("torchrun on CUDA needs the nccl backend, which this torch build lacks; "
                              "use --device cpu (gloo)")
        if not dist.is_gloo_available():
            raise DeviceError("torchrun needs the gloo backend, which this torch build lacks")
        options: dict[str, Any] = {}
        if cuda:
            torch.cuda.set_device(device)
            if "device_id" in inspect.signature(dist.init_process_group).parameters:  # torch ≥ 2.3: bind the GPU now
                options["device_id"] = device
        dist.init_process_group("nccl" if cuda else "gloo", **options)
        atexit.register(_shutdown)
    if _host_group is None:
        _host_group = dist.new_group(backend="gloo", timeout=HOST_TIMEOUT)
    return True


def setup(device: str | None = "auto") -> torch.device:
    """The device of this process (``cuda:LOCAL_RANK`` under torchrun) with the process group initialised.

    What the ``teacher``, ``distill`` and ``evaluate`` commands call instead of
    :func:`~ssdd_cli.device.resolve_device`; without torchrun it is exactly that.
    """
    from .device import resolve_device

    dev = resolve_device(device)
    init_from_env(dev)
    return dev


def _shutdown() -> None:
    global _host_group
    dist = _dist()
    if dist is not None:
        dist.destroy_process_group()
    _host_group = None


def _host() -> Any:
    """The host-side (gloo) group: ours when :func:`init_from_env` made one, else the default group.

    A library caller who set up an nccl process group without torchrun's environment should call
    :func:`init_from_env` anyway (it then only adds this group), since the host-side agreements use
    CPU tensors.
    """
    return _host_group


# ----------------------------------------------------------------------------------------------
# host-side agreement


def barrier() -> None:
    """Wait until every process gets here (no-op in a single process)."""
    dist = _dist()
    if dist is not None and dist.get_world_size() > 1:
        dist.barrier(group=_host())


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Run the block on rank 0 first, then on the others (rank 0 fills a cache the others then read)."""
    if not active():
        yield
        return
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def any_flags(flags: Sequence[bool]) -> list[bool]:
    """Element-wise "any process says yes" (every process gets the same answer; no device sync)."""
    if not active():
        return [bool(f) for f in flags]
    import torch
    import torch.distributed as dist

    t = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int32)
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_host())
    return [bool(v) for v in t.tolist()]


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every process (picklable objects)."""
    if not active():
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=src, group=_host())
    return box[0]


def my_share(items: Sequence[Any]) -> list[Any]:
    """The items this process works on when independent jobs are dealt out round-robin (all of them in one process).

    ``items[rank::world_size]``: with :func:`gather_objects` the results come back to rank 0, where
    ``[x for r in range(k) for x in results[r]]`` is not the original order; keep an index with each item.
    """
    return list(items[rank()::world_size()])


def gather_objects(obj: Any) -> list[Any] | None:
    """Every process's ``obj`` in rank order on rank 0; ``None`` on the other ranks.

    In a single process: ``[obj]``.
    """
    if not active():
        return [obj]
    import torch.distributed as dist

    out: list[Any] | None = [None] * dist.get_world_size() if is_main() else None
    dist.gather_object(obj, out, dst=0, group=_host())
    return out


# ----------------------------------------------------------------------------------------------
# tensors on the device


def part(total: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of a batch of ``total`` that this process handles.

    Contiguous, in rank order, sizes differing by at most one (``torch.tensor_split``'s rule), so the
    parts of all ranks laid end to end are the whole batch.
    """
    k, r = world_size(), rank()
    if k == 1:
        return 0, total
    base, extra = divmod(total, k)
    start = r * base + min(r, extra)
    return start, start + base + (1 if r < extra else 0)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over the processes, in place; returns it."""
    dist = _dist()
    if dist is not None and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """Average ``tensor`` over the processes, in place; returns it."""
    k = world_size()
    if k > 1:
        all_reduce_sum(tensor).div_(k)
    return tensor


def all_reduce_grads(params: Sequence[torch.Tensor]) -> None:
    """Sum the gradients of replicated tensors over the processes (one flat all-reduce).

    For losses split as ``Σ_rank loss_rank`` (each rank's share of one global mean), the summed
    gradient is the gradient of the global loss. Tensors without a gradient stay without one (the
    same on every rank, since every rank builds the same graph).
    """
    if not active():
        return
    import torch

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    all_reduce_sum(flat)
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every process's rows of ``x`` concatenated in rank order, differentiable (equal row counts).

    The backward sums each process's gradient of its copy into the rows it owns, so a loss that every
    rank computes identically on the gathered tensor, with gradients averaged over the ranks (DDP),
    gets the gradient of that loss computed in one process.
    """
    if not active():
        return x
    return _autograd_ops()[1].apply(x)


def global_mean(local_mean: torch.Tensor, local_count: int, total: int) -> torch.Tensor:
    """This rank's share ``local_mean · local_count / total`` of a mean over a split batch.

    The value returned is the global mean (the same on every rank, for logging and divergence checks);
    its gradient is that of this rank's share only, to be summed over the ranks by
    :func:`all_reduce_grads`. In a single process: ``local_mean`` unchanged.
    """
    if not active():
        return local_mean
    share = local_mean * (local_count / total)
    value = all_reduce_sum(share.detach().clone())
    return share + (value - share.detach())


def broadcast_tensors(tensors: Sequence[torch.Tensor], src: int = 0) -> None:
    """Overwrite ``tensors`` with rank ``src``'s values, in place."""
    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        return
    import torch

    with torch.no_grad():
        for t in tensors:
            dist.broadcast(t.data, src=src)


def digest(tensors: Sequence[torch.Tensor]) -> list[float]:
    """A few float64 numbers that change when any entry of ``tensors`` does (to compare replicas cheaply)."""
    import torch

    out = []
    with torch.no_grad():
        for t in tensors:
            v = t.detach().reshape(-1).double()
            ramp = torch.linspace(1.0, 2.0, v.numel(), dtype=torch.float64, device=v.device)
            out.extend([float(v.sum()), float((v * ramp).sum()), float(v.square().sum())])
    return out


def replicas_differ(tensors: Sequence[torch.Tensor]) -> bool:
    """Whether some process holds other values than rank 0 in ``tensors`` (bitwise, via :func:`digest`)."""
    if not active():
        return False
    mine = [repr(v) for v in digest(tensors)]  # exact, and NaN equals NaN
    theirs = broadcast_object(mine)
    return any_flags([mine != theirs])[0]


# ----------------------------------------------------------------------------------------------
# batch norm over the global batch


_OPS: tuple[Any, Any] | None = None


def _autograd_ops() -> tuple[Any, Any]:
    """Differentiable sum all-reduce and row all-gather (built once, when first needed)."""
    global _OPS
    if _OPS is not None:
        return _OPS
    import torch
    import torch.distributed as dist

    class AllReduceSum(torch.autograd.Function):
        """``y = Σ_ranks x``; its adjoint is the same sum of the ranks' output gradients."""

        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            y = x.clone(memory_format=torch.contiguous_format)
            dist.all_reduce(y)
            return y

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            g = grad.clone(memory_format=torch.contiguous_format)
            dist.all_reduce(g)
            return g

    class GatherRows(torch.autograd.Function):
        """``y = cat_ranks x``; the adjoint sums the ranks' gradients of ``y`` and keeps this rank's rows."""

        @staticmethod
        def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
            x = x.contiguous()
            parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, x)
            ctx.rows = (dist.get_rank() * x.shape[0], x.shape[0])
            return torch.cat(parts)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
            g = grad.contiguous().clone()
            dist.all_reduce(g)  # a reduce-scatter would move less, but gloo lacks it; these tensors are small
            start, n = ctx.rows
            return g[start: start + n]

    _OPS = (AllReduceSum, GatherRows)
    return _OPS


def _global_batchnorm_class() -> type:
    import torch
    from torch import nn

    all_reduce = _autograd_ops()[0].apply

    class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
        """BatchNorm whose training statistics are those of the global batch (every rank's rows).

        For the CPU (gloo), where ``nn.SyncBatchNorm`` refuses to run. Each rank takes its rows' mean
        and variance (two passes, like one-process BatchNorm); one differentiable all-reduce (float64)
        combines them into the global ones (Chan et al.'s pairwise rule: ``Σ n_r (v_r + m_r²) / N − m²``),
        so the output and its gradient are those of ``nn.BatchNorm`` on the concatenated batch; the
        running statistics follow the same update (unbiased variance, momentum). Eval mode and
        single-process runs are plain BatchNorm.
        """

        def _check_input_dim(self, x: torch.Tensor) -> None:
            if x.dim() not in (2, 3, 4, 5):
                raise ValueError(f"expected 2-D to 5-D input, got {x.dim()}-D")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if not (self.training and active()):
                return super().forward(x)
            dims = [0, *range(2, x.dim())]
            shape = [1, -1] + [1] * (x.dim() - 2)
            xf = x.float()
            var_r, mean_r = torch.var_mean(xf, dim=dims, correction=0)  # (C,) each: this rank's rows
            n_r = x.numel() // x.shape[1]
            mean_r, var_r = mean_r.double(), var_r.double()
            total = all_reduce(torch.cat([mean_r * n_r, (var_r + mean_r.square()) * n_r, mean_r.new_tensor([n_r])]))
            c, count = x.shape[1], total[-1]
            mean = total[:c] / count
            var = (total[c: 2 * c] / count - mean.square()).clamp_min(0)
            mean, var = mean.float(), var.float()
            out = (xf - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
            if self.affine:
                out = out * self.weight.view(shape) + self.bias.view(shape)
            if self.track_running_stats and self.running_mean is not None:
                with torch.no_grad():
                    self.num_batches_tracked.add_(1)
                    m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                    n = float(count)
                    self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                    self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1.0)), alpha=m)
            return out.to(x.dtype)

    return GlobalBatchNorm


_GLOBAL_BN: type | None = None


def global_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with every BatchNorm computing its training statistics over the global batch.

    CUDA: ``nn.SyncBatchNorm``; CPU: an equivalent built on differentiable all-reduces. The
    parameters and buffers carry over (same state-dict keys), so checkpoints and saved weights are
    unaffected. Single process: ``module`` itself.
    """
    global _GLOBAL_BN
    if not active():
        return module
    from torch import nn

    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if _GLOBAL_BN is None:
        _GLOBAL_BN = _global_batchnorm_class()
    return _swap_batchnorm(module, _GLOBAL_BN)


def _swap_batchnorm(module: nn.Module, cls: type) -> nn.Module:
    from torch import nn

    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(module, cls):
        new = cls(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new.to(next(iter(module.state_dict().values())).device) if module.state_dict() else new
    for name, child in module.named_children():
        setattr(module, name, _swap_batchnorm(child, cls))
    return module
