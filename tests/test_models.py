"""Every registered architecture: shapes, gradients, seeded construction; the ResNet stem."""

from __future__ import annotations

import pytest
import torch

from ssdd_cli.errors import ConfigError
from ssdd_cli.models import (
    backbone_state_dict,
    create_model,
    list_models,
    model_descriptions,
    model_entry,
    register_model,
    registry,
)
from ssdd_cli.models.registry import Backbone

SIZE = 16


def test_registry_lists_the_known_models() -> None:
    """The registry holds the ConvNets and ResNets, each with a non-empty description."""
    names = list_models()
    for name in ("convnet3", "convnet4", "convnet2_xs", "resnet18", "resnet10", "vgg11", "alexnet", "mobilenetv2", "vit"):
        assert name in names
    descriptions = model_descriptions()
    assert list(descriptions) == names and all(d.strip() for d in descriptions.values())


class _Probe(Backbone):
    """A one-conv backbone recording how its builder was called."""

    def __init__(self, image_size: int, out_dim: int | None, in_channels: int) -> None:
        super().__init__()
        self.built_with = (image_size, out_dim, in_channels)
        self.conv = torch.nn.Conv2d(in_channels, 5, 3, padding=1)
        self.feature_dim, self.repr_dim = 5 * image_size * image_size, 5
        self.fc = torch.nn.Linear(self.feature_dim, out_dim) if out_dim else torch.nn.Identity()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def test_registering_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A registered builder is listed, described and built by create_model; the registry is restored afterwards.

    Any case/dash spelling finds it, seeded creation is deterministic, a second registration of the
    name is refused and the unknown-name error lists the new entry.
    """
    before = list_models()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # undone at the end of the test
    register_model("tiny_probe_net", "one conv (test only)", params=140)(_Probe)
    assert "tiny_probe_net" in list_models() and len(list_models()) == len(before) + 1
    assert model_descriptions()["tiny_probe_net"] == "one conv (test only)"
    model = create_model("Tiny-Probe-Net", image_size=8, out_dim=3, in_channels=1, seed=0)
    assert isinstance(model, _Probe) and model.built_with == (8, 3, 1)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 3)
    again = create_model("tiny_probe_net", image_size=8, out_dim=3, in_channels=1, seed=0)
    assert torch.equal(model.conv.weight, again.conv.weight)
    with pytest.raises(ValueError, match="registered twice"):
        register_model("tiny_probe_net", "again", params=140)(_Probe)
    # the unknown-name error lists what is registered now, including the new entry
    with pytest.raises(ConfigError, match="unknown architecture 'tiny_probe'.*tiny_probe_net"):
        create_model("tiny_probe")
    monkeypatch.undo()
    assert list_models() == before
    with pytest.raises(ConfigError, match="unknown architecture"):
        create_model("tiny_probe_net")


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("name", list_models())
def test_shapes_gradients_and_finiteness(name: str, size: int) -> None:
    """embed/represent/forward shapes match feature_dim/repr_dim/out_dim; every parameter gets a gradient."""
    model = create_model(name, image_size=size, out_dim=7, seed=0)
    # zero-initialised residual BatchNorm weights (ResNet) would zero some gradients: use ones
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(mod.weight)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    model.train()
    emb, rep, out = model.embed(x), model.represent(x), model(x)
    assert emb.shape == (2, model.feature_dim)
    assert rep.shape == (2, model.repr_dim)
    assert out.shape == (2, 7)
    for t in (emb, rep, out):
        assert torch.isfinite(t).all()
    out.pow(2).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname
    headless = create_model(name, image_size=size, out_dim=None, seed=0)
    assert headless(x).shape == (2, headless.feature_dim)
    assert not any(k.startswith("fc.") for k in backbone_state_dict(model))
    # the documented parameter count (registry, `ssdd models`, docs/models.md) is the built model's
    assert sum(p.numel() for p in headless.parameters()) == model_entry(name).params[size]


# method.md §7.2/§7.6: linear-probe feature sizes at 32 and 64 px
FEATURE_DIMS = {"convnet3": (8192, 32768), "resnet18": (512, 512), "resnet10": (512, 512), "vgg11": (512, 2048),
                "alexnet": (3072, 12288), "mobilenetv2": (1280, 1280), "vit": (256, 256)}


@pytest.mark.parametrize("name", sorted(FEATURE_DIMS))
def test_feature_sizes_follow_the_protocol(name: str) -> None:
    """embed() has the size method.md lists for each evaluation architecture, at 32 and 64 px."""
    for size, dim in zip((32, 64), FEATURE_DIMS[name]):
        model = create_model(name, image_size=size).eval()
        assert model.feature_dim == dim
        assert model.embed(torch.zeros(1, 3, size, size)).shape == (1, dim)


def test_small_images_are_refused_with_the_reason() -> None:
    """VGG-11's five max-pools need 32 px, the ViT's 8×8 grid a multiple of 8."""
    with pytest.raises(ConfigError, match="vgg11 cannot take 16-px images: .*too small"):
        create_model("vgg11", image_size=16)
    with pytest.raises(ConfigError, match="multiple of 8"):
        create_model("vit", image_size=36)


def test_convnet_dims() -> None:
    """ConvNet flat features = last width × (H / 2^blocks)²; the representation is the last width."""
    m = create_model("convnet3", image_size=32)
    assert (m.feature_dim, m.repr_dim) == (8192, 512)
    xs = create_model("convnet2_xs", image_size=16)
    assert (xs.feature_dim, xs.repr_dim) == (32 * 4 * 4, 32)


@pytest.mark.parametrize("name", ["convnet2_xs", "resnet10"])
def test_seeded_creation_is_deterministic_and_leaves_global_rng(name: str) -> None:
    """seed=s gives identical weights, another seed differs, and the global RNG state is untouched."""
    state = torch.get_rng_state()
    a = create_model(name, image_size=SIZE, out_dim=3, seed=5)
    b = create_model(name, image_size=SIZE, out_dim=3, seed=5)
    c = create_model(name, image_size=SIZE, out_dim=3, seed=6)
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)
    # without a seed the global RNG is used (and advanced)
    create_model(name, image_size=SIZE, out_dim=3)
    assert not torch.equal(torch.get_rng_state(), state)


def test_unknown_name() -> None:
    """An unknown architecture raises ConfigError listing the choices."""
    with pytest.raises(ConfigError, match="unknown architecture 'convnet9'.*convnet3"):
        create_model("convnet9")


def test_name_is_normalised() -> None:
    """Dashes and case are accepted."""
    assert create_model("ConvNet2-XS", image_size=SIZE).repr_dim == 32


def test_resnet18_stem() -> None:
    """ResNet-18 stem: 3×3 conv with padding 2 and no max-pool, so 32 px → 34×34 after conv1."""
    model = create_model("resnet18", image_size=32)
    assert model.conv1.padding == (2, 2) and model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert model.stem_padding == 2
    assert isinstance(model.maxpool, torch.nn.Identity)
    assert model.conv1(torch.zeros(1, 3, 32, 32)).shape == (1, 64, 34, 34)
    assert (model.feature_dim, model.repr_dim) == (512, 512)


def test_models_doc_matches_the_registry() -> None:
    """docs/models.md holds the registry's table (`ssdd models --markdown`)."""
    from pathlib import Path

    from ssdd_cli.models.registry import models_markdown

    doc = (Path(__file__).resolve().parents[1] / "docs" / "models.md").read_text()
    assert models_markdown() in doc, "docs/models.md is stale; regenerate it with `ssdd models --markdown`"


def test_vit_blocks_start_apart() -> None:
    """Each transformer block has its own initialisation (TransformerEncoder alone would copy one block six times)."""
    model = create_model("vit", image_size=32, seed=0)
    first = [p for p in model.blocks.layers[0].parameters()]
    for layer in model.blocks.layers[1:]:
        assert not torch.equal(layer.self_attn.in_proj_weight, model.blocks.layers[0].self_attn.in_proj_weight)
    assert len(model.blocks.layers) == 6 and len(first) > 0
