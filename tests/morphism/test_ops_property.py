"""Property: any sequence of 1-10 registered ops, at sites drawn from a seed, on a perturbed seed
network, stays within float32 relative error 1e-4 of the parent, and replaying the records
rebuilds the final child bit for bit."""
from __future__ import annotations

import pytest
import torch
from _ops_util import perturbed_net, rel_err, same_tensors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from morphnas.morphism.errors import NotApplicable
from morphnas.morphism.lint import lint_problems
from morphnas.morphism.ops import apply_op, default_registry, replay

REGISTRY = default_registry()
# Ops that are approximate by design (the removal ops) report their error instead; they are not chained here.
OPS = [n for n in REGISTRY.names() if not getattr(REGISTRY.get(n), "approximate", False)]
# Keep repeated growth small so ten steps stay fast (widen doubles by default).
OVERRIDES = {"widen": {"factor": 1.25}}
NETS = {name: perturbed_net(name, seed=11) for name in ("tiny_resnet", "small_cnn")}


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(net_name=st.sampled_from(sorted(NETS)),
       steps=st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 2**16)), min_size=1, max_size=10))
def test_random_op_sequences_preserve_the_function(net_name, steps):
    parent = NETS[net_name]
    net, records = parent, []
    for op_name, seed in steps:
        op = REGISTRY.get(op_name)
        sites = op.sites(net)
        if not sites:
            continue
        site = sites[seed % len(sites)]
        params = {**op.example_params(net, site), **OVERRIDES.get(op_name, {})}
        try:
            net, rec = apply_op(net, op, site, params, seed=seed)
        except NotApplicable:
            continue  # e.g. a site the overrides do not fit; the conformance suite covers the defaults
        records.append(rec)
    assert lint_problems(net) == []
    err = rel_err(parent, net, torch.float32, batch=4)
    assert err <= 1e-4, f"{[r.summary() for r in records]} on {net_name}: float32 relative error {err:.3g}"
    assert same_tensors(replay(parent, [r.to_json() for r in records]), net)


def test_a_long_fixed_sequence_on_resnet20():
    """The paper's kind of history: morph blocks, widen a stage, morph again, split and widen."""
    parent = perturbed_net("resnet20", seed=2)
    steps = [("morph_block", "layer1.1.shortcut", {}), ("widen", "layer1.1.sum", {"factor": 1.5}),
             ("morph_block", "layer1.1.shortcut", {"k1": 3, "k2": 3, "branches": 2}),
             ("widen", "layer1.1.morph0.b1", {"method": "netmorph"}),
             ("split_identity", "layer2.2.shortcut", {}), ("insert_path", "layer2.2.shortcut.0", {"k1": 3}),
             ("widen", "layer3.0.sum", {"split": "random"}),
             ("morph_block", "layer1.2.shortcut", {"k1": 3, "k2": 3, "mode": "dense"}),  # pad-once path
             ("widen", "layer1.2.sum", {"factor": 1.25}), ("widen", "layer1.2.morph.c1", {"method": "netmorph"})]
    net = parent
    for i, (op, site, params) in enumerate(steps):
        net, _ = apply_op(net, op, site, params, seed=i)
    assert rel_err(parent, net, torch.float32, batch=4) <= 1e-5
    assert rel_err(parent.to(torch.float64), net.to(torch.float64), torch.float64) <= 1e-7  # float32 weights
    assert net.num_params() > 1.5 * parent.num_params()


@pytest.mark.parametrize("name", sorted(NETS))
def test_sites_of_every_op_are_listed_deterministically(name):
    net = NETS[name]
    for op in REGISTRY:
        assert op.sites(net) == op.sites(net.copy())
