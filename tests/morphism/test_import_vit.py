"""Transformers imported by structure (issue 25): torchvision's VisionTransformer and pre-LN
``nn.TransformerEncoder`` models match the model (float64 <= 1e-12, float32 <= 1e-5), every
transformer morph is exact on the imported network, and what the IR cannot compute is refused."""
from __future__ import annotations

import pytest
import torch
from _ops_util import F32_TOL, F64_TOL, rel_err
from torch import nn

from morphnas.morphism.compile import compile_network
from morphnas.morphism.errors import ImportUnsupported
from morphnas.morphism.importer import from_torch
from morphnas.morphism.ops import apply_op

torchvision = pytest.importorskip("torchvision")


def _randomised(model: nn.Module) -> nn.Module:
    """torchvision zero-initialises the head and the class token and LayerNorms start at 1/0: make
    every one of them random so the check compares real numbers."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(k in name for k in ("ln", "norm", "head", "class_token", "bias")):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (0.8 if name.endswith("weight") and p.ndim == 1
                                                                      else 0.0))
    return model.eval()


def _small_vit() -> nn.Module:
    torch.manual_seed(0)
    return _randomised(torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                            hidden_dim=32, mlp_dim=64))


def _match(model: nn.Module, net, shape, dtype, tol):
    x = torch.randn((3, *shape), generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(dtype)
    want = model.to(dtype)(x)
    got = compile_network(net.to(dtype)).eval()(x)
    err = ((got - want).abs().max() / want.abs().max()).item()
    assert want.abs().max() > 0.1 and err <= tol, f"{dtype}: {err:.3g}"


def test_torchvision_vit_imports_exactly_and_grows_exactly():
    model = _small_vit()
    net = from_torch(model, (3, 32, 32))
    assert net.shapes()["embed"] == (17, 32)
    assert net.edge("encoder.layers.encoder_layer_0.attn").layer.heads == 2
    _match(model, net, (3, 32, 32), torch.float64, 1e-12)
    _match(model, net, (3, 32, 32), torch.float32, F32_TOL)
    n64 = net.to(torch.float64)
    for op, site, params in [("widen", "embed", {"factor": 2}),
                             ("widen", "encoder.layers.encoder_layer_1.h", {"factor": 2}),
                             ("add_heads", "encoder.layers.encoder_layer_0.attn", {"heads": 2}),
                             ("deepen_block", "encoder.layers.encoder_layer_0.out", None)]:
        child, _ = apply_op(n64, op, site, params, seed=2)
        assert rel_err(n64, child, torch.float64) <= F64_TOL, (op, site)
        child32, _ = apply_op(net, op, site, params, seed=2)
        assert rel_err(net, child32, torch.float32) <= F32_TOL, (op, site)


def test_a_pre_ln_transformer_encoder_imports_exactly():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.1, activation="gelu", batch_first=True, norm_first=True)
    model = _randomised(nn.TransformerEncoder(layer, 2, norm=nn.LayerNorm(16), enable_nested_tensor=False))
    net = from_torch(model, (6, 16))
    assert net.edge("layers.1.attn").layer.dropout == 0.1 and net.edge("layers.0.mlp.act").layer.fn == "gelu"
    _match(model, net, (6, 16), torch.float64, 1e-12)
    child, _ = apply_op(net.to(torch.float64), "deepen_block", "layers.0.out", seed=0)
    assert rel_err(net.to(torch.float64), child, torch.float64) <= F64_TOL


@pytest.mark.parametrize("make, message", [
    (lambda: nn.TransformerEncoderLayer(16, 2, 32, batch_first=True),
     "norm_first=False \\(post-LN\\); the IR's blocks are pre-LN: build it with norm_first=True"),
    (lambda: nn.TransformerEncoderLayer(16, 2, 32, norm_first=True),
     "batch_first=False"),
])
def test_what_the_ir_cannot_compute_is_refused(make, message):
    with pytest.raises(ImportUnsupported, match=message):
        from_torch(make(), (5, 16))


def test_a_vit_at_the_wrong_image_size_is_refused():
    with pytest.raises(ImportUnsupported, match=r"image_size=32\) on inputs of shape \(3, 64, 64\); import it at"):
        from_torch(_small_vit(), (3, 64, 64))


@pytest.mark.slow
def test_torchvision_vit_b_16_imports_from_the_registry():
    from morphnas.spaces.registry import create_network
    net = create_network("torchvision:vit_b_16", num_classes=10)   # from_torch checks it against the model
    assert net.shapes()["embed"] == (197, 768) and len([e for e in net.edges() if e.layer.kind == "attention"]) == 12
    torch.manual_seed(0)   # torchvision's head starts at zero: check a randomised one too
    model = _randomised(torchvision.models.vit_b_16(weights=None, num_classes=10))
    _match(model, from_torch(model, (3, 224, 224)), (3, 224, 224), torch.float32, F32_TOL)


# ---------------------------------------------------------------- the check of a fresh (zero-head) ViT
def _fresh_vit() -> nn.Module:
    """torchvision's own initialisation: the classification head is zero."""
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                hidden_dim=32, mlp_dim=64).eval()


def _swap_qk(real):
    def broken(mha, where):
        spec, p = real(mha, where)
        p["q_weight"], p["k_weight"] = p["k_weight"], p["q_weight"]
        return spec, p
    return broken


def _eps_1e5(real):
    def broken(layer, where):
        b = real(layer, where)
        return {**b, "eps": 1e-5}      # nn.LayerNorm's default instead of the model's 1e-6
    return broken


@pytest.mark.parametrize("target, wrap", [("_attention", _swap_qk), ("_block", _eps_1e5)])
def test_a_broken_import_of_a_fresh_zero_head_vit_is_caught(monkeypatch, target, wrap):
    """A fresh torchvision ViT outputs zeros for any input, so the plain output check compares zeros
    with zeros and passes a broken import; the check on the float64 copy with the zero parameters
    drawn at random catches it."""
    from morphnas.morphism import import_vit, importer
    from morphnas.morphism.errors import MorphnasError
    model = _fresh_vit()
    x = torch.randn(4, 3, 32, 32)
    assert model(x).abs().max().item() == 0.0          # the premise: the head is zero
    good = from_torch(model, (3, 32, 32))              # the honest import passes both checks
    assert good.edge("encoder.layers.encoder_layer_0.ln_1").layer.eps == 1e-6
    monkeypatch.setattr(import_vit, target, wrap(getattr(import_vit, target)))
    broken = import_vit.from_structure(model, (3, 32, 32))
    importer._verify(model, broken, 0)                 # the plain check alone cannot see it
    with pytest.raises(MorphnasError, match=r"import check on a float64 copy of the model with its all-zero "
                                            r"parameters drawn at random: .*relative error (\S+) > 1e-09"):
        from_torch(model, (3, 32, 32))


def test_the_probe_copy_randomises_only_the_zero_parameters():
    from morphnas.morphism.importer import _probe_copy
    model = _fresh_vit()
    probe = _probe_copy(model, 0)
    before, after = dict(model.named_parameters()), dict(probe.named_parameters())
    zero = [n for n, p in before.items() if not p.detach().any()]
    assert "heads.head.weight" in zero and "class_token" in zero and "encoder.layers.encoder_layer_0.ln_1.bias" in zero
    for n, p in before.items():
        q = after[n]
        assert q.dtype == torch.float64
        if n in zero:
            assert (q != 0).all(), n
        else:
            assert torch.equal(q, p.detach().double()), n
    assert not model.heads.head.weight.detach().any()   # the model itself is untouched


def test_a_large_model_is_probed_in_its_own_dtype_and_still_caught(monkeypatch):
    from morphnas.morphism import import_vit, importer
    from morphnas.morphism.errors import MorphnasError
    monkeypatch.setattr(importer, "PROBE_FLOAT64_MAX_PARAMS", 1000)     # the small ViT counts as large
    model = _fresh_vit()
    probe = importer._probe_copy(model, 0)
    assert next(probe.parameters()).dtype == torch.float32 and probe.heads.head.weight.abs().min() > 0
    from_torch(model, (3, 32, 32))
    monkeypatch.setattr(import_vit, "_attention", _swap_qk(import_vit._attention))
    with pytest.raises(MorphnasError, match=r"import check on a float32 copy of the model with its all-zero "
                                            r"parameters drawn at random: .* > 0.0001"):
        from_torch(model, (3, 32, 32))
