"""bench/grow_transformer.py: its growth reaches exactly the target size and computes the small
network's function, and the compute-to-reach figure is read off a curve as documented."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from morphnas.morphism.ops import apply_op
from morphnas.morphism.verify import output_diff
from morphnas.spaces.counting import count

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        spec = importlib.util.spec_from_file_location("grow_transformer_bench", ROOT / "bench" / "grow_transformer.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod        # its dataclasses look their module up while being built
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(ROOT / "bench"))
    return mod


def test_growth_gives_the_target_size_and_keeps_the_function(bench):
    s = bench.Setting(3, dim=8, depth=2, heads=2, mlp_dim=16)
    small, target = bench.small_net(s), bench.target_net(s)
    net = small.to(torch.float64)
    for a in bench.growth_actions(s, 7):
        net, _ = apply_op(net, a.op, a.site, a.params, a.seed)
    assert (count(net).params, count(net).flops) == (count(target).params, count(target).flops)
    assert count(target).params > 4 * count(small).params
    assert net.shapes()["embed"] == (5, 16) and sum(e.layer.kind == "attention" for e in net.edges()) == 4
    x = torch.randn(3, 1, 14, 14, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert output_diff(small.to(torch.float64), net, x=x, dtype=torch.float64).rel_err <= 1e-10


def test_reach_interpolates_between_epochs(bench):
    curve = [[10.0, 1.0, 0.5], [20.0, 0.5, 0.2], [30.0, 0.25, 0.1], [40.0, 0.3, 0.1]]
    assert bench.reach(curve, 0.4) == pytest.approx(24.0)     # 20 + 10 * (0.5 - 0.4) / (0.5 - 0.25)
    assert bench.reach(curve, 0.25) == 30.0
    assert bench.reach(curve, 2.0) == 10.0                    # already there after the first epoch
    assert bench.reach(curve, 0.2) is None                    # never
