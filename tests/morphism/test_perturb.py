"""perturb: a copy whose BN, slopes and biases are random but well scaled; deterministic by seed."""
import torch

from morphnas.morphism.layers import PAct
from morphnas.morphism.perturb import perturb
from morphnas.morphism.verify import output_diff


def test_perturb_randomises_identity_parts_only(tiny_resnet):
    before = {k: v.clone() for k, v in tiny_resnet.state_dict().items()}
    rng_state = torch.random.get_rng_state()
    p = perturb(tiny_resnet, seed=7)
    assert torch.equal(torch.random.get_rng_state(), rng_state)      # no global RNG use
    for k, v in tiny_resnet.state_dict().items():                    # input untouched
        assert torch.equal(v, before[k]), k
    sd = p.state_dict()
    changed = {k for k in sd if not torch.equal(sd[k], before[k])}
    bn = [e.name for e in tiny_resnet.edges() if e.layer.kind == "batchnorm2d"]
    prelu = [e.name for e in tiny_resnet.edges() if e.layer.kind == "prelu"]
    want = ({f"{n}.{t}" for n in bn for t in ("weight", "bias", "running_mean", "running_var")}
            | {f"{n}.weight" for n in prelu} | {"fc.bias"})
    assert changed == want
    for n in bn:
        assert (sd[f"{n}.running_var"] >= 0.25).all() and (sd[f"{n}.running_var"] <= 2.0).all()
        assert (sd[f"{n}.weight"] >= 0.5).all() and (sd[f"{n}.weight"] <= 1.5).all()
        assert sd[f"{n}.running_mean"].std() > 0.1
    for n in prelu:
        w = sd[f"{n}.weight"]
        assert ((w > 0) & (w < 1)).all() and w.unique().numel() == w.numel()
    assert output_diff(tiny_resnet, p).rel_err > 0.05


def test_perturb_is_deterministic_by_seed_and_keeps_dtype(tiny_resnet):
    a, b, c = perturb(tiny_resnet, 1), perturb(tiny_resnet, 1), perturb(tiny_resnet, 2)
    for k in a.state_dict():
        assert torch.equal(a.state_dict()[k], b.state_dict()[k])
    assert any(not torch.equal(a.state_dict()[k], c.state_dict()[k]) for k in a.state_dict())
    d = perturb(tiny_resnet.to(torch.float64), 1)
    assert d.dtype == torch.float64
    # The float64 draw is the float32 one before rounding.
    assert torch.allclose(d.params["bn1"]["running_var"].float(), a.params["bn1"]["running_var"], rtol=0, atol=0)


def test_perturb_sets_pact_a_inside_the_unit_interval(tiny_resnet):
    net = tiny_resnet.copy()
    e = net.edge("fc")
    net.remove_edge("fc")
    net.add_edge("head.flat", "head.act", PAct(32, "relu"), "act")
    net.add_edge("head.act", "output", e.layer, "fc", params=tiny_resnet.params["fc"])
    assert torch.equal(net.params["act"]["a"], torch.ones(32))
    a = perturb(net, 3).params["act"]["a"]
    assert ((a > 0) & (a < 1)).all() and a.unique().numel() == 32
