"""Every transformer morph is exact on an imported torchvision ``vit_b_16`` (issue 25), not only on
the tiny ViTs: float64 relative error <= 1e-10, float32 <= 1e-5, with the LayerNorms, biases, class
token and head drawn at random first (torchvision starts LayerNorms at 1/0 and the head at zero,
which would make the identities trivial and the check compare zeros)."""
from __future__ import annotations

import pytest
import torch

from morphnas.morphism.compile import compile_network
from morphnas.morphism.importer import from_torch
from morphnas.morphism.ops import apply_op

torchvision = pytest.importorskip("torchvision")
pytestmark = pytest.mark.slow

F64_TOL, F32_TOL = 1e-10, 1e-5


@pytest.fixture(scope="module")
def vit_b_16():
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None, num_classes=10)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if any(k in name for k in ("ln", "norm", "head", "class_token", "bias")):
                scale, centre = 0.3, (0.8 if name.endswith("weight") and p.ndim == 1 else 0.0)
                p.copy_(torch.randn(p.shape, generator=gen) * scale + centre)
    net = from_torch(model.eval(), (3, 224, 224))
    ln = next(e for e in net.edges() if e.layer.kind == "layer_norm")
    assert ln.layer.features == 768
    return net


def _rel_err(parent, child, dtype, x):
    a = compile_network(parent.to(dtype)).eval()(x.to(dtype))
    b = compile_network(child.to(dtype)).eval()(x.to(dtype))
    return ((a - b).abs().max() / a.abs().max()).item(), a.abs().max().item()


@pytest.mark.parametrize("op, site, params", [
    ("add_heads", "encoder.layers.encoder_layer_5.attn", {"heads": 2}),
    ("deepen_block", "encoder.layers.encoder_layer_11.out", None),
    ("widen", "encoder.layers.encoder_layer_3.h", {"factor": 2}),     # an MLP hidden layer, through GELU
])
def test_each_transformer_morph_is_exact_on_vit_b_16(vit_b_16, op, site, params):
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        child, _ = apply_op(vit_b_16, op, site, params, seed=2)
        err64, scale = _rel_err(vit_b_16, child, torch.float64, x)
        err32, _ = _rel_err(vit_b_16, child, torch.float32, x)
    assert scale > 0.1, "the outputs are not trivially zero"
    assert err64 <= F64_TOL and err32 <= F32_TOL, (op, err64, err32)


def test_widening_the_model_width_of_vit_b_16_is_exact(vit_b_16):
    """Every LayerNorm, attention and residual of the 12 blocks, 768 -> 1536 features."""
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        child, _ = apply_op(vit_b_16, "widen", "embed", {"factor": 2}, seed=2)
        assert child.shapes()["embed"] == (197, 1536)
        err32, scale = _rel_err(vit_b_16, child, torch.float32, x)
    assert scale > 0.1 and err32 <= F32_TOL, err32
