"""optstate: optimizer state (SGD momentum, Adam moments) carried through morphs.

What is checked, and why it can fail:

* continuation: after a morph that only adds parameters, one more SGD step moves every kept weight
  of the child exactly as the parent's step moves it (the control without the mapped state fails);
* widen: the mapped buffers are the replicated rows / divided columns, written out here from the
  replica map read off the weights (not from widen's code);
* new edges start at zero, several records in a row, the optimizer helpers round-trip, bad state
  is refused with :class:`OptimizerStateError`;
* every registered growing op on small seeds gives state of the child's names and shapes, finite,
  zero on new edges, copied on untouched parameters.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _ops_util import perturbed_net

from morphnas.morphism.compile import compile_network, sync_from_module
from morphnas.morphism.errors import MorphnasError
from morphnas.morphism.graph import Network
from morphnas.morphism.ops import apply_op, default_registry
from morphnas.morphism.optstate import (
    OptimizerStateError,
    load_optimizer_state_by_name,
    map_param_state,
    optimizer_state_by_name,
    param_names,
)

MB = "momentum_buffer"


def _sgd(module: torch.nn.Module, lr: float = 0.05) -> torch.optim.SGD:
    """SGD as search/trial/train.py builds it: decay on ndim > 1 parameters only."""
    decay = [p for p in module.parameters() if p.ndim > 1]
    other = [p for p in module.parameters() if p.ndim <= 1]
    return torch.optim.SGD([{"params": decay, "weight_decay": 1e-4}, {"params": other, "weight_decay": 0.0}],
                           lr=lr, momentum=0.9)


def _batch(net: Network, n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((n, *net.input_shape), generator=gen, dtype=net.dtype)
    classes = next(e for e in net.in_edges(net.output_blob)).layer
    k = int(getattr(classes, "out_features", 10))
    return x, torch.randint(0, k, (n,), generator=gen)


def _step(module: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    module.train()
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(module(x), y).backward()
    opt.step()


def _random_state(net: Network, seed: int = 0, keys: tuple[str, ...] = (MB,)) -> dict[str, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for n in param_names(net):
        t = _param(net, n)
        out[n] = {k: torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t.dtype) for k in keys}
    return out


def _param(net: Network, name: str) -> torch.Tensor:
    edge, _, key = name.rpartition(".")
    return net.params[edge][key]


@pytest.fixture(scope="module")
def r8() -> Network:
    """tiny_resnet (1x8x8, width 8) with random BN statistics/affine and slopes, in float64."""
    return perturbed_net("tiny_resnet", seed=3).to(torch.float64)


# ----------------------------------------------------------------------------- 1. training continues
def test_one_more_step_after_insert_branch_moves_kept_weights_as_the_parent(r8):
    """Why this holds: insert_branch concatenates a branch whose channels enter their consumers
    through zero columns, so the child's loss is the parent's loss as a function of the kept
    weights, in train mode too (every kept BN sees the same inputs, so the same batch statistics;
    the branch's own BN normalises channels that are multiplied by zero). Same batch -> same
    gradients on kept weights; same weights, decay and (mapped) momentum -> the same SGD update."""
    gm = compile_network(r8)
    opt = _sgd(gm)
    for s in range(3):   # non-zero, non-trivial momentum buffers
        _step(gm, opt, *_batch(r8, seed=10 + s))
    parent = sync_from_module(r8, gm)
    child, rec = apply_op(parent, "insert_branch", "layer1.0.out", seed=0)
    assert rec.new_edges and not rec.removed_edges

    # The consumers of the new channels are the rewritten kept tensors: old columns first, zero new ones.
    c_old, c_new = parent.params["layer2.0.conv1"]["weight"], child.params["layer2.0.conv1"]["weight"]
    assert c_new.shape[1] == c_old.shape[1] + 2
    assert torch.equal(c_new[:, :8], c_old) and (c_new[:, 8:] == 0).all()

    mapped = map_param_state(parent, child, [rec], optimizer_state_by_name(opt, gm))
    gc = compile_network(child)
    opt_c = _sgd(gc)
    load_optimizer_state_by_name(opt_c, gc, mapped)

    before_p = {n: p.detach().clone() for n, p in gm.named_parameters()}
    before_c = {n: p.detach().clone() for n, p in gc.named_parameters()}
    x, y = _batch(r8, seed=99)
    _step(gm, opt, x, y)
    _step(gc, opt_c, x, y)
    dp = {n: p.detach() - before_p[n] for n, p in gm.named_parameters()}
    dc = {n: p.detach() - before_c[n] for n, p in gc.named_parameters()}

    kept = [n for n in dp if n in dc and dp[n].shape == dc[n].shape]
    assert len(kept) == len(dp) - 2   # all but the two widened consumers
    worst = max((dp[n] - dc[n]).abs().max().item() for n in kept)
    assert worst <= 1e-12, f"kept parameters moved differently: {worst:.3g}"
    for n in ("layer2.0.conv1.weight", "layer2.0.downsample.0.weight"):
        assert (dc[n][:, :8] - dp[n]).abs().max().item() <= 1e-12, n
        assert dc[n][:, 8:].abs().max().item() > 0   # the new columns do learn
    assert all(dp[n].abs().max().item() > 1e-6 for n in ("conv1.weight", "fc.weight"))   # a real step

    # Control: a fresh optimizer (what the test guards against) moves the kept weights differently.
    gc2 = compile_network(child)
    opt2 = _sgd(gc2)
    _step(gc2, opt2, x, y)
    fresh = max((p.detach() - before_c[n]).sub(dp[n]).abs().max().item()
                for n, p in gc2.named_parameters() if n in kept)
    assert fresh > 1e-4


# ----------------------------------------------------------------------------- 2. widen, by definition
def _replicas(parent: Network, child: Network, producer: str, c_old: int) -> np.ndarray:
    """The replica map read off the weights: child unit j copies parent unit mapping[j]."""
    w_old, w_new = parent.params[producer]["weight"], child.params[producer]["weight"]
    return np.array([next(i for i in range(c_old) if torch.equal(w_new[j], w_old[i])) for j in range(len(w_new))])


@pytest.mark.parametrize("params", [{"width": 12}, {"width": 12, "noise": 0.5}])
def test_widen_maps_buffers_like_net2net_maps_weights(r8, params):
    """8 -> 12 channels: four units get one replica (count 2), four none (count 1), so the consumer
    division is tested at two different counts. With noise the weights are perturbed but the state
    follows the noise-free replicate/divide map (documented in optstate)."""
    child, rec = apply_op(r8, "widen", "layer1.0.b1", params, seed=5)
    state = _random_state(r8, seed=1)
    mapped = map_param_state(r8, child, [rec], state)
    mapping = _replicas(r8, child, "layer1.0.conv1", 8)
    assert (mapping[:8] == np.arange(8)).all() and len(set(mapping[8:])) == 4
    counts = torch.as_tensor(np.bincount(mapping, minlength=8)[mapping], dtype=torch.float64)
    idx = torch.as_tensor(mapping)

    for n in ("layer1.0.conv1.weight", "layer1.0.bn1.weight", "layer1.0.bn1.bias", "layer1.0.prelu1.weight"):
        assert torch.equal(mapped[n][MB], state[n][MB][idx]), n   # replicated units: the parent's rows
    s_out = state["layer1.0.conv2.weight"][MB]
    expect = s_out[:, idx] / counts.view(1, -1, 1, 1)
    assert torch.equal(mapped["layer1.0.conv2.weight"][MB], expect)
    if "noise" not in params:   # the same definition holds for the weights themselves
        w = r8.params["layer1.0.conv2"]["weight"]
        assert torch.equal(child.params["layer1.0.conv2"]["weight"], w[:, idx] / counts.view(1, -1, 1, 1))
    else:
        assert rec.mode == "approximate"
    untouched = [n for n in param_names(r8) if not n.startswith(("layer1.0.conv", "layer1.0.bn1", "layer1.0.prelu1"))]
    assert all(torch.equal(mapped[n][MB], state[n][MB]) for n in untouched)


def test_netmorph_new_units_start_at_zero(r8):
    """NetMorph's new units get random incoming weights at the filter's std (not a linear map of
    the filter): their buffers are zero; their outgoing weights are zero columns: zero too."""
    child, rec = apply_op(r8, "widen", "layer1.0.b1", {"width": 12, "method": "netmorph"}, seed=2)
    state = _random_state(r8, seed=4)
    mapped = map_param_state(r8, child, [rec], state)
    m_in, m_out = mapped["layer1.0.conv1.weight"][MB], mapped["layer1.0.conv2.weight"][MB]
    assert torch.equal(m_in[:8], state["layer1.0.conv1.weight"][MB]) and (m_in[8:] == 0).all()
    assert torch.equal(m_out[:, :8], state["layer1.0.conv2.weight"][MB]) and (m_out[:, 8:] == 0).all()
    assert (child.params["layer1.0.conv1"]["weight"][8:] != 0).all()   # the weights there are not zero


def test_constants_the_op_fills_in_get_zero_state():
    """insert_branch into a DenseNet concatenation: the channel-wise layers its new channels reach
    get identity values there (BN gamma = sqrt(var + eps) = 1 + ...), constants and not a map of the
    old tensor, so their state is zero; the old channels keep theirs, also after the insertion
    slot (transition1 takes the 3 new channels in the middle of its 19). The slot is read off the
    consumer's zero input columns, not from the op's code."""
    net = perturbed_net("tiny_densenet", seed=1)
    child, rec = apply_op(net, "insert_branch", "features.denseblock1.denselayer1.cat", seed=0)
    state = _random_state(net, seed=6)
    mapped = map_param_state(net, child, [rec], state)
    for bn, conv in (("features.transition1.norm", "features.transition1.conv"),
                     ("features.denseblock1.denselayer2.norm1", "features.denseblock1.denselayer2.conv1")):
        new = (child.params[conv]["weight"] == 0).flatten(2).all(2).all(0)
        assert int(new.sum()) == 3
        if bn == "features.transition1.norm":
            assert new.nonzero().flatten().tolist() == [12, 13, 14]   # in the middle: old channels follow
        assert (child.params[bn]["weight"][new] - 1).abs().max() < 1e-3   # identity gamma, not 0
        for k in ("weight", "bias"):
            m = mapped[f"{bn}.{k}"][MB]
            assert (m[new] == 0).all() and torch.equal(m[~new], state[f"{bn}.{k}"][MB]), f"{bn}.{k}"
        m = mapped[f"{conv}.weight"][MB]
        assert (m[:, new] == 0).all() and torch.equal(m[:, ~new], state[f"{conv}.weight"][MB])


# ----------------------------------------------------------------------------- 3. new edges, sequences, helpers
@pytest.mark.parametrize("op,site,params", [("deepen", "layer1.0.conv1", {}), ("split", "fc", {"alpha": 0.25}),
                                            ("insert_bn", "layer1.0.c1", {})])
def test_new_edges_get_zero_buffers(r8, op, site, params):
    child, rec = apply_op(r8, op, site, params, seed=0)
    state = _random_state(r8, seed=2)
    mapped = map_param_state(r8, child, [rec], state)
    new = [n for n in param_names(child) if n.rpartition(".")[0] in rec.new_edges]
    assert new and all((mapped[n][MB] == 0).all() for n in new)
    assert all(n not in mapped for e in rec.removed_edges for n in state if n.startswith(e + "."))
    if op == "split":   # the kept edge holds alpha * G: its state is alpha * its old state
        for k in ("weight", "bias"):
            assert torch.allclose(mapped[f"fc.{k}"][MB], 0.25 * state[f"fc.{k}"][MB], rtol=1e-15, atol=0)


def test_a_renamed_tensor_keeps_its_state(r8):
    """activation at a PReLU edge: the edge is kept, its ``weight`` becomes PAct's ``a = w``; the
    replay maps the state the same way (a name with no counterpart in the parent, yet not new).
    At a fixed activation the new ``a = 0`` is a constant: zero state."""
    child, rec = apply_op(r8, "activation", "layer1.0.prelu1", seed=0)
    assert "layer1.0.prelu1.a" in param_names(child) and "layer1.0.prelu1.weight" not in param_names(child)
    state = _random_state(r8, seed=3)
    mapped = map_param_state(r8, child, [rec], state)
    assert torch.equal(mapped["layer1.0.prelu1.a"][MB], state["layer1.0.prelu1.weight"][MB])
    mlp = perturbed_net("mlp", seed=0)
    child, rec = apply_op(mlp, "activation", "act1", seed=0)
    mapped = map_param_state(mlp, child, [rec], _random_state(mlp))
    assert mapped["act1.a"][MB].shape == (16,) and (mapped["act1.a"][MB] == 0).all()


def test_several_records_map_in_sequence(r8):
    state = _random_state(r8, seed=5)
    c1, r1 = apply_op(r8, "widen", "layer1.0.b1", {"width": 12}, seed=1)
    c2, r2 = apply_op(c1, "insert_branch", "layer1.0.out", seed=2)
    c3, r3 = apply_op(c2, "deepen", "layer2.0.conv1", seed=3)
    once = map_param_state(r8, c3, [r1, r2.to_json(), r3], state)   # records as objects or JSON
    step = state
    for a, b, r in ((r8, c1, r1), (c1, c2, r2), (c2, c3, r3)):
        step = map_param_state(a, b, [r], step)
    assert list(once) == param_names(c3) == list(step)
    assert all(torch.equal(once[n][MB], step[n][MB]) for n in once)
    # widen's replication survives the later morphs; deepen's new convs start at zero
    mapping = torch.as_tensor(_replicas(r8, c1, "layer1.0.conv1", 8))
    assert torch.equal(once["layer1.0.conv1.weight"][MB], state["layer1.0.conv1.weight"][MB][mapping])
    assert (once["layer2.0.conv1.conv_a.weight"][MB] == 0).all()
    with pytest.raises(OptimizerStateError, match="do not turn the parent into the child"):
        map_param_state(r8, c3, [r1, r2], state)


def test_state_round_trips_through_the_optimizer_helpers(r8):
    gm = compile_network(r8)
    opt = _sgd(gm)
    for s in range(2):
        _step(gm, opt, *_batch(r8, seed=s))
    state = optimizer_state_by_name(opt, gm)
    assert set(state) == {n for n, _ in gm.named_parameters()} == set(param_names(r8))
    assert all(set(v) == {MB} for v in state.values())
    g2 = compile_network(sync_from_module(r8, gm))
    opt2 = _sgd(g2)
    load_optimizer_state_by_name(opt2, g2, state)
    again = optimizer_state_by_name(opt2, g2)
    assert all(torch.equal(again[n][MB], state[n][MB]) for n in state)
    x, y = _batch(r8, seed=7)
    _step(gm, opt, x, y)
    _step(g2, opt2, x, y)
    p1, p2 = dict(gm.named_parameters()), dict(g2.named_parameters())
    assert max((p1[n] - p2[n]).abs().max().item() for n in p1) == 0.0


def test_adam_moments_are_mapped_and_step_counters_copied(r8):
    gm = compile_network(r8)
    opt = torch.optim.Adam(gm.parameters(), lr=1e-3)
    _step(gm, opt, *_batch(r8))
    _step(gm, opt, *_batch(r8, seed=1))
    state = optimizer_state_by_name(opt, gm)
    parent = sync_from_module(r8, gm)
    child, rec = apply_op(parent, "deepen", "layer1.0.conv1", seed=0)
    mapped = map_param_state(parent, child, [rec], state)
    assert set(mapped["fc.weight"]) == {"exp_avg", "exp_avg_sq", "step"}
    assert torch.equal(mapped["fc.weight"]["exp_avg_sq"], state["fc.weight"]["exp_avg_sq"])
    assert float(mapped["fc.weight"]["step"]) == 2.0 and float(mapped["layer1.0.conv1.conv_a.weight"]["step"]) == 0.0
    gc = compile_network(child)
    opt_c = torch.optim.Adam(gc.parameters(), lr=1e-3)
    load_optimizer_state_by_name(opt_c, gc, mapped)
    _step(gc, opt_c, *_batch(r8, seed=2))   # Adam accepts it
    assert all(torch.isfinite(p).all() for p in gc.parameters())


def test_bad_state_is_refused(r8):
    state = _random_state(r8)
    bad = dict(state)
    bad["fc.weight"] = {MB: torch.zeros(3, 3, dtype=torch.float64)}
    child, rec = apply_op(r8, "widen", "layer1.0.b1", seed=0)
    with pytest.raises(OptimizerStateError, match=r"'fc.weight'\['momentum_buffer'\] has shape \(3, 3\)"):
        map_param_state(r8, child, [rec], bad)
    with pytest.raises(OptimizerStateError, match="does not have"):
        map_param_state(r8, child, [rec], {**state, "nope.weight": {MB: torch.zeros(1)}})
    assert issubclass(OptimizerStateError, MorphnasError)
    gm = compile_network(r8)
    opt = _sgd(gm)
    with pytest.raises(OptimizerStateError, match="has shape"):
        load_optimizer_state_by_name(opt, gm, bad)
    assert len(opt.state) == 0   # nothing was loaded
    with pytest.raises(OptimizerStateError, match="none of the optimizer's param groups"):
        load_optimizer_state_by_name(torch.optim.SGD([next(gm.parameters())], lr=0.1), gm, state)


# ----------------------------------------------------------------------------- 4. every growing op
REGISTRY = default_registry()
# Shrinking ops (approximate by design, they remove units and fold tensors) are not growth steps.
GROWING = [n for n in REGISTRY.names() if not REGISTRY.get(n).approximate]
SEEDS = ("tiny_resnet", "mlp", "tiny_densenet", "tiny_mobilenet", "tiny_vit")


@pytest.fixture(scope="module")
def seeds() -> dict[str, Network]:
    return {name: perturbed_net(name, seed=1) for name in SEEDS}


@pytest.mark.parametrize("op_name", GROWING)
def test_every_growing_op_gives_the_child_well_formed_state(op_name, seeds):
    op = REGISTRY.get(op_name)
    ran = 0
    for net_name, net in seeds.items():
        sites = op.sites(net)
        for i, site in enumerate(sites[:1] + sites[-1:] if len(sites) > 1 else sites):
            child, rec = apply_op(net, op, site, op.example_params(net, site), seed=i)
            if rec.mode == "approximate":
                continue   # defaults are exact (test_ops_conformance); a non-default approximation is no growth step
            state = _random_state(net, seed=i, keys=(MB, "exp_avg"))
            for n in state:
                state[n]["step"] = torch.tensor(3.0)
            mapped = map_param_state(net, child, [rec], state)
            where = f"{op_name} at {site!r} of {net_name}"
            assert list(mapped) == param_names(child), where
            for n, entries in mapped.items():
                t = _param(child, n)
                assert set(entries) == {MB, "exp_avg", "step"}, where
                for k in (MB, "exp_avg"):
                    assert entries[k].shape == t.shape and torch.isfinite(entries[k]).all(), f"{where}: {n}"
                if n.rpartition(".")[0] in rec.new_edges:
                    assert (entries[MB] == 0).all() and float(entries["step"]) == 0.0, f"{where}: {n} is new"
                elif n in state and torch.equal(_param(net, n), t):
                    assert torch.equal(entries[MB], state[n][MB]) and float(entries["step"]) == 3.0, f"{where}: {n}"
            ran += 1
    if not ran:
        pytest.skip(f"op {op_name} has no site on {', '.join(SEEDS)}")
