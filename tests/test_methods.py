"""The method registry: every registered method runs end to end; method names are compared only in its entries."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from conftest import tiny_distill_config

from ssdd_cli.api import distill, save_distilled
from ssdd_cli.bundle import load_bundle
from ssdd_cli.errors import ConfigError
from ssdd_cli.expand import expand_pairs
from ssdd_cli.methods.distill import plan_distillation
from ssdd_cli.methods.registry import _ENTRIES, get_method, list_methods

CPU = torch.device("cpu")
PACKAGE = Path(__file__).resolve().parents[1] / "ssdd_cli"
#: the registry and the entries themselves: the only modules allowed to compare method names
REGISTRY_MODULES = {"methods/registry.py", "methods/base.py"} | {
    module.removeprefix("ssdd_cli.").replace(".", "/") + ".py" for module in _ENTRIES.values()}


@pytest.mark.parametrize("name", list_methods())
def test_every_method_end_to_end(name: str, tiny_data, tiny_teacher, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Each registered method: a bundle within budget, storage as planned, that loads and expands to its support set."""
    entry = get_method(name)
    cfg = tiny_distill_config(name)
    res = distill(tiny_data, tiny_teacher, cfg, device=CPU)
    plan = plan_distillation(cfg, tiny_data, tiny_teacher.repr_dim)
    assert {k: v.numel() for k, v in res.tensors.items()} == plan.report.floats
    assert res.meta.method == name and res.meta.storage["cost"] <= cfg.budget
    assert res.meta.fit["steps_done"] == (cfg.num_steps if entry.trains else 0)
    bundle = load_bundle(save_distilled(res, tmp_path / f"{name}.safetensors"))
    assert bundle.storage().cost == pytest.approx(res.meta.storage["cost"], abs=1e-4)
    assert bundle.storage().images_only == entry.pixel_storage
    images, targets = expand_pairs(bundle)
    with torch.no_grad():
        xs, ys = res.synthetic.support()
    # expansion folds the upsampling into the bases: the same pairs up to float rounding
    torch.testing.assert_close(images, xs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(targets, ys, rtol=1e-5, atol=1e-5)
    assert images.shape[0] == bundle.num_images * len(bundle.views)


def test_aliases_and_unknown_names() -> None:
    assert get_method("krr-st") is get_method("KRRST") is get_method("krr_st")
    with pytest.raises(ConfigError, match="unknown method 'magic'; choose one of: boost, krr-st, random"):
        get_method("magic")


def test_random_method_is_the_evaluation_baseline(tiny_data, tiny_teacher) -> None:  # type: ignore[no-untyped-def]
    """``distill --method random --seed S`` stores exactly the pairs ``evaluate --baseline random`` trains on for seed S."""
    from ssdd_cli.api import random_pairs

    for seed in (0, 1):
        res = distill(tiny_data, tiny_teacher, tiny_distill_config("random", seed=seed), device=CPU)
        with torch.no_grad():
            xs, ys = res.synthetic.support()
        x2, y2 = random_pairs(tiny_data, tiny_teacher, 8, seed=seed, device=CPU)
        assert torch.equal(xs, x2) and torch.equal(ys, y2)
    other = distill(tiny_data, tiny_teacher, tiny_distill_config("random", seed=2), device=CPU)
    assert not torch.equal(other.tensors["images"], res.tensors["images"])


def _method_literals() -> set[str]:
    names = set()
    for key in list_methods():
        names |= {key, key.replace("_", "-"), key.replace("_", "")}
    return names


#: settings whose own vocabulary shares a word with method names (``init = "random"``: the basis ablation)
OTHER_VOCABULARIES = {"init"}


def _compared_literals(tree: ast.AST) -> list[tuple[int, str]]:
    """String constants that take part in ``==``/``!=``/``in`` comparisons or ``match`` cases."""
    hits = []
    for node in ast.walk(tree):
        left = node.left if isinstance(node, ast.Compare) else None
        if getattr(left, "attr", getattr(left, "id", None)) in OTHER_VOCABULARIES:
            continue
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                elts = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
                hits += [(node.lineno, e.value) for e in elts if isinstance(e, ast.Constant) and isinstance(e.value, str)]
        elif isinstance(node, ast.MatchValue) and isinstance(node.value, ast.Constant):
            hits.append((node.lineno, str(node.value.value)))
    return hits


def test_no_method_name_comparisons_outside_the_registry() -> None:
    """Behaviour that differs between methods lives in the method's entry, never in ``if method == "boost"``."""
    names = _method_literals()
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in REGISTRY_MODULES:
            continue
        offenders += [f"{rel}:{line} compares {value!r}" for line, value in _compared_literals(ast.parse(path.read_text()))
                      if value.lower() in names]
    assert offenders == []


def test_the_comparison_check_can_fail() -> None:
    """The scanner above finds the comparisons it is meant to forbid."""
    tree = ast.parse('if cfg.method == "krr_st":\n    pass\nx = m in ("boost", "random")\ny = cfg.init == "random"\n')
    assert [v for _, v in _compared_literals(tree) if v in _method_literals()] == ["krr_st", "boost", "random"]
