"""Device and precision policy."""

from __future__ import annotations

import os

import pytest
import torch

from ssdd_cli import device as devmod
from ssdd_cli.errors import DeviceError


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend this is a CPU-only machine."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def one_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend this machine has exactly one CUDA device (torch.device('cuda:N') needs no GPU to exist)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


@pytest.mark.usefixtures("no_cuda")
def test_cpu_only_machine() -> None:
    """Without CUDA: auto/None/' CPU ' give the CPU; an explicit CUDA request is refused, pointing to --device cpu."""
    for spec in ("auto", None, "", " CPU ", "cpu"):
        assert devmod.resolve_device(spec) == torch.device("cpu"), spec
    for spec in ("cuda", "CUDA", "cuda:0"):
        with pytest.raises(DeviceError, match="CUDA is not available; use --device cpu") as info:
            devmod.resolve_device(spec)
        assert repr(spec.lower()) in str(info.value)  # the message names what was asked for


@pytest.mark.usefixtures("one_gpu")
def test_cuda_index_checked_against_the_device_count() -> None:
    """With one GPU: auto and cuda/cuda:0 resolve (no fallback to the CPU); cuda:3 names the real count."""
    assert devmod.resolve_device("auto") == torch.device("cuda")
    assert devmod.resolve_device("cuda") == torch.device("cuda")
    assert devmod.resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(DeviceError, match=r"'cuda:3' requested but only 1 CUDA device\(s\) exist"):
        devmod.resolve_device("cuda:3")
    with pytest.raises(DeviceError, match="only 1 CUDA"):
        devmod.resolve_device("cuda:1")  # off by one: index == count is out of range too


@pytest.mark.parametrize("spec, message", [
    ("tpu", "unknown device 'tpu'; use auto, cpu, cuda or cuda:N"),  # not a torch device type at all
    ("mps", "unsupported device 'mps'"),  # a torch device type ssdd does not run on
    ("meta", "unsupported device 'meta'"),
])
def test_other_devices_are_refused(spec: str, message: str) -> None:
    """Unknown strings and torch device types other than cpu/cuda raise DeviceError with the choices."""
    with pytest.raises(DeviceError, match=message.replace("(", r"\(")):
        devmod.resolve_device(spec)


@pytest.mark.parametrize("amx, avx512, fast", [(False, False, False), (True, False, True), (False, True, True),
                                               (True, True, True)])
def test_bf16_on_cpu_follows_the_instruction_sets(amx: bool, avx512: bool, fast: bool,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """On the CPU bf16 counts as fast only with AMX tiles or AVX512-BF16 (emulated bf16 is slower than fp32)."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512, raising=False)
    cpu = torch.device("cpu")
    assert devmod.bf16_is_fast(cpu) is fast
    assert devmod.use_amp(cpu, None) is fast  # "auto" amp follows it
    assert devmod.use_amp(cpu, True) and not devmod.use_amp(cpu, False)  # an explicit choice wins


def test_bf16_on_cpu_without_the_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A torch without the private CPU probes is treated as having no fast bf16 (no AttributeError)."""
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
    assert devmod.bf16_is_fast(torch.device("cpu")) is False


def test_bf16_on_cuda_and_other_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA: only when CUDA is present and reports native bf16; other device types: never."""
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devmod.bf16_is_fast(cuda) is False
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devmod.bf16_is_fast(cuda) is True
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert devmod.bf16_is_fast(cuda) is False
    assert devmod.bf16_is_fast(torch.device("meta")) is False


def test_explicit_amp_wins_and_auto_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    """autocast(None) is bf16 exactly where bf16 is fast; autocast(False) never changes the dtype."""
    cpu = torch.device("cpu")
    x = torch.randn(4, 4)
    monkeypatch.setattr(devmod, "bf16_is_fast", lambda d: False)
    assert not devmod.use_amp(cpu, None)
    with devmod.autocast(cpu, None):
        assert (x @ x).dtype == torch.float32
    with devmod.autocast(cpu, True):
        assert (x @ x).dtype == torch.bfloat16
    monkeypatch.setattr(devmod, "bf16_is_fast", lambda d: True)
    assert devmod.use_amp(cpu, None)
    with devmod.autocast(cpu, None):
        assert (x @ x).dtype == torch.bfloat16
    with devmod.autocast(cpu, False):
        assert (x @ x).dtype == torch.float32


def test_eval_mode_restores_the_previous_mode() -> None:
    """eval_mode switches to eval inside the block and restores training (also after an exception)."""
    m = torch.nn.BatchNorm1d(2).train()
    with devmod.eval_mode(m):
        assert not m.training
    assert m.training
    with pytest.raises(ValueError), devmod.eval_mode(m):
        raise ValueError
    assert m.training
    m.eval()
    with devmod.eval_mode(m):
        pass
    assert not m.training


def test_threads_auto_uses_idle_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--threads auto``: an explicit OMP_NUM_THREADS wins; else the cores not already busy, at least one."""
    assert 0.0 <= devmod.busy_cores(0.05) <= (os.cpu_count() or 1) + 1e-6
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        assert devmod.set_threads("auto") == before
        monkeypatch.delenv("OMP_NUM_THREADS")
        monkeypatch.setattr(devmod, "busy_cores", lambda: 5.0)  # more busy cores than there are
        assert devmod.set_threads("auto") == 1 and torch.get_num_threads() == 1
        assert devmod.set_threads("2") == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
