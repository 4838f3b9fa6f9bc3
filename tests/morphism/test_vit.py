"""Transformers in the IR (issue 25): token blobs, LayerNorm, attention, class token, position
embedding; counting; and the exact transformer morphs (``widen`` of the model width and of an MLP
hidden layer, ``add_heads``, ``deepen_block``) on a tiny ViT whose LayerNorms, biases and class
token are random (``perturb``), so no layer is a trivial identity that could hide a mistake.

Exactness targets: float64 relative output error <= 1e-10, float32 <= 1e-5.
"""
from __future__ import annotations

import pytest
import torch
from _ops_util import F32_TOL, F64_TOL, rel_err
from torch import nn

from morphnas.morphism.compile import compile_network, sync_from_module
from morphnas.morphism.errors import LintError, NotApplicable, SpecError
from morphnas.morphism.graph import Network
from morphnas.morphism.layers import Linear
from morphnas.morphism.layers_extra import Attention, LayerNorm, Tokens
from morphnas.morphism.ops import apply_op, default_registry
from morphnas.morphism.optstate import load_optimizer_state_by_name, map_param_state, optimizer_state_by_name
from morphnas.morphism.perturb import perturb
from morphnas.morphism.serialize import load_network, save_network
from morphnas.spaces.counting import count
from morphnas.spaces.registry import create_network


def _vit(**kw) -> Network:
    return perturb(create_network("tiny_vit", **kw), seed=5)


@pytest.fixture(scope="module")
def vit() -> Network:
    """The registered seed (1x28x28, 7x7 patches: 16 tokens + a class token, width 32, 2 blocks)."""
    return _vit()


def test_the_perturbed_vit_has_no_trivial_layer_norm(vit):
    lns = [e.name for e in vit.edges() if isinstance(e.layer, LayerNorm)]
    assert len(lns) == 5   # two per block and the final one
    for n in lns:
        assert (vit.params[n]["weight"] - 1).abs().min() > 0 and vit.params[n]["bias"].abs().min() > 0, n
    assert vit.params["class_token"]["token"].abs().min() > 0


def test_shapes_and_counts_of_tiny_vit(vit):
    shapes = vit.shapes()
    assert shapes["patches"] == (32, 4, 4) and shapes["tok"] == (16, 32) and shapes["embed"] == (17, 32)
    assert shapes["encoder.layers.0.h"] == (17, 64) and shapes["pooled"] == (32,) and shapes["output"] == (10,)
    c = count(vit)
    # params: patch conv, class token, position embedding, 2 x (2 LN, q/k/v/out, fc1, fc2), final LN, head
    block = 2 * 64 + (4 * 32 * 32 + 4 * 32) + (32 * 64 + 64) + (64 * 32 + 32)
    assert c.params == (32 * 49 + 32) + 32 + 17 * 32 + 2 * block + 64 + (32 * 10 + 10) == 19658
    # MACs: the conv per output pixel; per block q/k/v/out per token plus the two N^2 products, fc1, fc2 per token
    n = 17
    attn = 4 * n * 32 * 32 + 2 * n * n * 32
    assert c.flops == 32 * 49 * 16 + 2 * (attn + 2 * n * 32 * 64) + 32 * 10 == 340928
    assert c.depth == 1 + 2 * 4 + 1   # conv, per block attention (2) + fc1 + fc2, head


def test_attention_computes_torch_multihead_attention():
    """The kind's runtime against torch's own nn.MultiheadAttention with the same weights (float64)."""
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(16, 4, batch_first=True, dtype=torch.float64).eval()
    with torch.no_grad():
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    spec = Attention.standard(16, 4)
    assert (spec.head_dim, spec.scale) == (4, 0.5)
    mod = spec.module().double().eval()
    wq, wk, wv = mha.in_proj_weight.detach().chunk(3)
    bq, bk, bv = mha.in_proj_bias.detach().chunk(3)
    mod.load_state_dict({"q_weight": wq, "k_weight": wk, "v_weight": wv, "q_bias": bq, "k_bias": bk, "v_bias": bv,
                         "out_weight": mha.out_proj.weight.detach(), "out_bias": mha.out_proj.bias.detach()})
    x = torch.randn(3, 7, 16, dtype=torch.float64)
    want = mha(x, x, x, need_weights=False)[0]
    assert (mod(x) - want).abs().max().item() <= 1e-12


def test_bad_transformer_layers_are_refused_in_one_line():
    with pytest.raises(SpecError, match="dim 30 is not a multiple of heads 4"):
        Attention.standard(30, 4)
    with pytest.raises(SpecError, match="scale must be a finite number > 0"):
        Attention(8, 2, 4, 0.0)
    with pytest.raises(SpecError, match="patch 5"):
        create_network("tiny_vit", patch=5)
    net = Network((3, 4, 4))
    net.add_edge("input", "output", Linear(3, 2), "fc")
    with pytest.raises(LintError, match=r"linear needs a flat input \(F,\) or tokens \(N, F\)"):
        net.shapes()
    net = Network((3, 4, 4))
    net.add_edge("input", "t", Tokens(), "tokens")
    net.add_edge("t", "output", Attention.standard(8, 2), "attn")
    with pytest.raises(LintError, match="attention expects 8 features but the blob has 3"):
        net.shapes()


# ------------------------------------------------------------------------------------------ morphs
def _both(net: Network, op: str, site: str, params: dict | None = None, seed: int = 0):
    """Apply in float64 and float32; assert both exactness targets; return the float32 child and record."""
    n64 = net.to(torch.float64)
    child64, _ = apply_op(n64, op, site, params, seed=seed)
    e64 = rel_err(n64, child64, torch.float64, batch=4)
    child, rec = apply_op(net, op, site, params, seed=seed)
    e32 = rel_err(net, child, torch.float32, batch=4)
    assert e64 <= F64_TOL and e32 <= F32_TOL, f"{op}@{site}: float64 {e64:.3g}, float32 {e32:.3g}"
    return child, rec


@pytest.mark.parametrize("op, site, params", [
    ("widen", "embed", {"factor": 2}),                            # model width 32 -> 64
    ("widen", "encoder.layers.1.mid", {"factor": 3, "split": "random"}),
    ("widen", "encoder.layers.0.h", {"factor": 1.5}),             # an MLP hidden layer (through GELU)
    ("add_heads", "encoder.layers.0.attn", {"heads": 2}),
    ("deepen_block", "embed", None),
    ("deepen_block", "encoder.layers.1.out", {"heads": 4, "mlp_dim": 48}),
])
def test_transformer_morphs_are_exact(vit, op, site, params):
    _both(vit, op, site, params)


def test_a_chain_of_morphs_stays_exact_and_serialises(vit, tmp_path):
    """Depth, heads, width, MLP width, again width: every step exact, the result saved and reloaded."""
    net = vit
    steps = [("deepen_block", "encoder.layers.0.out", None), ("add_heads", "encoder.layers.1.attn", None),
             ("widen", "embed", {"factor": 2}), ("widen", "encoder.layers.1.h", {"factor": 2}),
             ("add_heads", "encoder.layers.0.out.block.attn", {"heads": 1})]
    for i, (op, site, params) in enumerate(steps):
        net, _ = _both(net, op, site, params, seed=i)
    assert net.shapes()["embed"] == (17, 64) and net.shapes()["encoder.layers.1.h"] == (17, 128)
    assert rel_err(vit, net, torch.float32) <= F32_TOL
    loaded = load_network(save_network(net, tmp_path / "grown"))
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(compile_network(loaded).eval()(x), compile_network(net).eval()(x))


def test_widen_keeps_attention_scores_by_its_scale(vit):
    child, rec = _both(vit, "widen", "embed", {"factor": 2})
    a0, a1 = vit.edge("encoder.layers.0.attn").layer, child.edge("encoder.layers.0.attn").layer
    assert (a1.dim, a1.heads, a1.head_dim) == (64, 2, 32) and a1.scale == a0.scale / 2
    assert child.edge("encoder.layers.1.ln_2").layer.features == 64
    assert child.params["pos_embedding"]["embedding"].shape == (17, 64)
    assert "conv_proj" in rec.notes and "heads.head" in rec.notes
    # each feature copied exactly twice: the LayerNorm's statistics cannot change
    w = child.params["encoder.layers.0.ln_1"]["weight"]
    assert sorted(w.tolist()) == sorted(vit.params["encoder.layers.0.ln_1"]["weight"].tolist() * 2)


def test_widen_refuses_what_would_not_be_exact(vit):
    op = default_registry().get("widen")
    with pytest.raises(NotApplicable, match=r"only an integer factor .* 32 -> 48 is not a multiple"):
        op.check(vit, "embed", op.parse_params({"factor": 1.5}))
    with pytest.raises(NotApplicable, match="use method net2net, not netmorph"):
        op.check(vit, "encoder.layers.0.out", op.parse_params({"method": "netmorph"}))
    op.check(vit, "encoder.layers.0.h", op.parse_params({"method": "netmorph"}))   # no LayerNorm there


def test_add_heads_starts_with_zero_output_columns(vit):
    child, rec = _both(vit, "add_heads", "encoder.layers.1.attn", {"heads": 1})
    a = child.edge("encoder.layers.1.attn").layer
    assert (a.heads, a.head_dim) == (3, 16)
    p = child.params["encoder.layers.1.attn"]
    assert p["q_weight"].shape == (48, 32) and (p["out_weight"][:, 32:] == 0).all()
    assert torch.equal(p["out_weight"][:, :32], vit.params["encoder.layers.1.attn"]["out_weight"])
    assert p["k_weight"][32:].abs().min() > 0 and rec.mode == "exact-sparse"
    with pytest.raises(NotApplicable, match="is a linear, not an attention layer"):
        apply_op(vit, "add_heads", "heads.head")


def test_deepen_block_sites_and_defaults(vit):
    op = default_registry().get("deepen_block")
    assert op.sites(vit) == ["embed", "encoder.layers.0.mid", "encoder.layers.0.out", "encoder.layers.1.mid",
                             "encoder.layers.1.out"]
    with pytest.raises(NotApplicable, match="not on a residual stream"):
        op.check(vit, "encoder.layers.0.h", op.parse_params(None))
    with pytest.raises(NotApplicable, match=r"has shape \(32, 4, 4\); a transformer block needs tokens"):
        op.check(vit, "patches", op.parse_params(None))
    child, rec = _both(vit, "deepen_block", "encoder.layers.0.out")
    new = [e for e in rec.new_edges if e.endswith(".attn")]
    assert len(new) == 1 and child.edge(new[0]).layer == vit.edge("encoder.layers.0.attn").layer
    fc1 = next(e for e in rec.new_edges if e.endswith("mlp.fc1"))
    assert child.edge(fc1).layer.out_features == 64    # the seed's MLP width
    assert (child.params[new[0]]["out_weight"] == 0).all()
    assert [e.name for e in child.out_edges("encoder.layers.0.out")] == [
        "encoder.layers.0.out.block.ln_1", "encoder.layers.0.out.block.shortcut_1"]
    assert count(child).depth == count(vit).depth + 4


def test_mean_pooled_vit_on_14x14_grows_exactly():
    net = _vit(input_size=14, patch=7, pool="mean", dim=48, heads=3, mlp_dim=96)
    assert net.shapes()["embed"] == (4, 48) and not any(e.layer.kind == "class_token" for e in net.edges())
    for op, site, params in [("widen", "embed", {"factor": 2}), ("add_heads", "encoder.layers.0.attn", None),
                             ("deepen_block", "encoder.layers.1.out", None)]:
        _both(net, op, site, params)


# --------------------------------------------------------------------------------- optimizer state
def _adam_step(gm: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> None:
    opt.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(gm(x), y).backward()
    opt.step()


@pytest.mark.parametrize("op, site", [("add_heads", "encoder.layers.1.attn"), ("deepen_block", "embed")])
def test_adam_continues_on_kept_weights_after_a_silent_morph(op, site):
    """New heads / a new block add zero to the output, so every kept weight gets the parent's gradient;
    with the mapped Adam moments (new parameters zero) one more step moves them exactly as the parent's."""
    net = _vit(input_size=14, patch=7, dim=16, mlp_dim=32).to(torch.float64)
    gm = compile_network(net)
    opt = torch.optim.Adam(gm.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, 1, 14, 14, generator=gen, dtype=torch.float64), torch.randint(0, 10, (4,), generator=gen))
               for _ in range(4)]
    for x, y in batches[:3]:
        _adam_step(gm, opt, x, y)
    parent = sync_from_module(net, gm)
    child, rec = apply_op(parent, op, site, seed=1)
    mapped = map_param_state(parent, child, [rec], optimizer_state_by_name(opt, gm))
    new = [n for n in mapped if n.rpartition(".")[0] in rec.new_edges]
    assert all((mapped[n]["exp_avg"] == 0).all() and (mapped[n]["exp_avg_sq"] == 0).all() for n in new)
    if op == "add_heads":   # the new q rows have no history, the old ones keep theirs
        q = mapped[f"{site}.q_weight"]["exp_avg"]
        assert (q[16:] == 0).all() and torch.equal(q[:16], opt.state[gm.get_parameter(f"{site}.q_weight")]["exp_avg"])
    gc = compile_network(child)
    opt_c = torch.optim.Adam(gc.parameters(), lr=1e-3)
    load_optimizer_state_by_name(opt_c, gc, mapped)
    before_p = {n: p.detach().clone() for n, p in gm.named_parameters()}
    before_c = {n: p.detach().clone() for n, p in gc.named_parameters()}
    _adam_step(gm, opt, *batches[3])
    _adam_step(gc, opt_c, *batches[3])
    worst = 0.0
    for n, p in gm.named_parameters():
        dp = p.detach() - before_p[n]
        dc = gc.get_parameter(n).detach() - before_c[n]
        worst = max(worst, (dc[tuple(slice(0, s) for s in dp.shape)] - dp).abs().max().item())
    assert worst <= 1e-12, f"kept weights moved differently: {worst:.3g}"


def test_widen_copies_adam_moments_with_the_features(vit):
    net = vit.to(torch.float64)
    state = {n: {"exp_avg": torch.randn_like(t), "step": torch.tensor(2.0)}
             for e, p in net.params.items() for k, t in p.items() for n in [f"{e}.{k}"]}
    child, rec = apply_op(net, "widen", "embed", {"factor": 2}, seed=0)
    mapped = map_param_state(net, child, [rec], state)
    ln_old, ln_new = net.params["encoder.ln"]["weight"], child.params["encoder.ln"]["weight"]
    src = [int((ln_old == v).nonzero()[0]) for v in ln_new]     # the replica map read off the weights
    assert sorted(src) == sorted(list(range(32)) * 2)
    assert torch.equal(mapped["encoder.ln.weight"]["exp_avg"], state["encoder.ln.weight"]["exp_avg"][src])
    assert torch.equal(mapped["pos_embedding.embedding"]["exp_avg"], state["pos_embedding.embedding"]["exp_avg"][:, src])
    assert float(mapped["encoder.ln.weight"]["step"]) == 2.0
