"""Device and precision policy."""

from __future__ import annotations

import pytest
import torch

from ssdd_cli import device as devmod
from ssdd_cli.errors import DeviceError


def test_auto_resolves_to_an_available_device() -> None:
    dev = devmod.resolve_device("auto")
    assert dev.type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("spec", ["tpu", "cuda:99" if torch.cuda.is_available() else "cuda"])
def test_bad_device_is_refused(spec: str) -> None:
    with pytest.raises(DeviceError):
        devmod.resolve_device(spec)


def test_explicit_amp_wins_and_auto_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert devmod.use_amp(cpu, True) and not devmod.use_amp(cpu, False)
    monkeypatch.setattr(devmod, "bf16_is_fast", lambda d: False)
    assert not devmod.use_amp(cpu, None)
    x = torch.randn(4, 4)
    with devmod.autocast(cpu, None):
        assert (x @ x).dtype == torch.float32
    monkeypatch.setattr(devmod, "bf16_is_fast", lambda d: True)
    assert devmod.use_amp(cpu, None)
    with devmod.autocast(cpu, None):
        assert (x @ x).dtype == torch.bfloat16
