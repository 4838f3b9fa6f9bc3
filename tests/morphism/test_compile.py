"""compile_network: the fx GraphModule equals a hand-written PyTorch module of the same architecture."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from morphnas.morphism.compile import compile_network, sync_from_module
from morphnas.morphism.graph import Network
from morphnas.morphism.layers import Activation, Conv2d, Crop, Identity, PAct, Pad
from morphnas.morphism.perturb import perturb


class HandBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.prelu1 = nn.PReLU(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)
        self.prelu2 = nn.PReLU(cout)

    def forward(self, x):
        y = self.bn2(self.conv2(self.prelu1(self.bn1(self.conv1(x)))))
        return self.prelu2(y + (x if self.downsample is None else self.downsample(x)))


class HandResNet8(nn.Module):
    """ResNet-8 (one basic block per stage) on 1x8x8, written by hand like torchvision."""

    def __init__(self, width=8, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.prelu1 = nn.PReLU(width)
        self.layer1 = nn.Sequential(HandBlock(width, width, 1))
        self.layer2 = nn.Sequential(HandBlock(width, 2 * width, 2))
        self.layer3 = nn.Sequential(HandBlock(2 * width, 4 * width, 2))
        self.fc = nn.Linear(4 * width, classes)

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.prelu1(self.bn1(self.conv1(x))))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _pair(net: Network, dtype=torch.float32):
    gm = compile_network(net.to(dtype))
    hand = HandResNet8().to(dtype)
    hand.load_state_dict(gm.state_dict())          # strict: keys map one to one
    return gm, hand


def test_state_dict_keys_map_one_to_one(tiny_resnet):
    gm = compile_network(tiny_resnet)
    hand = HandResNet8()
    assert set(gm.state_dict()) == set(hand.state_dict())
    assert set(gm.state_dict()) == set(tiny_resnet.state_dict())
    for k, v in hand.state_dict().items():
        assert gm.state_dict()[k].shape == v.shape, k
    gm.load_state_dict(hand.state_dict())          # and back, strict


def test_outputs_and_gradients_equal_hand_written(tiny_resnet):
    x = torch.randn(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (6,), generator=torch.Generator().manual_seed(1))
    # Train mode (batch statistics), float32: same ops in the same order.
    gm, hand = _pair(perturb(tiny_resnet, 1))
    out_ir, out_hand = gm(x), hand(x)
    assert (out_ir - out_hand).abs().max().item() <= 1e-6 * out_hand.abs().max().item()
    F.cross_entropy(out_ir, y).backward()
    F.cross_entropy(out_hand, y).backward()
    grads_hand = dict(hand.named_parameters())
    for k, p in gm.named_parameters():
        g = grads_hand[k].grad
        assert (p.grad - g).abs().max().item() <= 1e-5 * (g.abs().max().item() + 1e-12), k
    # Running statistics move identically.
    for k, v in hand.state_dict().items():
        assert torch.allclose(gm.state_dict()[k].double(), v.double(), rtol=1e-6, atol=1e-7), k
    # Eval mode in float64 with perturbed BN: agreement to rounding.
    gm, hand = _pair(perturb(tiny_resnet, 2), torch.float64)
    gm.eval(), hand.eval()
    with torch.no_grad():
        a, b = gm(x.double()), hand(x.double())
    assert (a - b).abs().max().item() <= 1e-14 * b.abs().max().item()


def test_forward_is_generated_code_without_a_graph_loop(tiny_resnet):
    gm = compile_network(tiny_resnet)
    code = gm.code
    assert "for " not in code and "while " not in code
    calls = [line for line in code.splitlines() if "self" in line and "def forward" not in line]
    non_identity = [e for e in tiny_resnet.edges() if not isinstance(e.layer, Identity)]
    assert len(calls) == len(non_identity)
    assert not hasattr(gm.layer1[0] if isinstance(gm.layer1, nn.Sequential) else getattr(gm.layer1, "0"), "shortcut")


def test_identity_scales_parallel_edges_and_pact():
    net = Network((2, 5, 5))
    net.add_edge("input", "a", Conv2d(2, 2, 1), "c")
    net.add_edge("input", "a", Identity(0.5), "half")
    net.add_edge("input", "a", Identity(), "id")
    net.add_edge("a", "output", PAct(2, "relu"), "act", params={"a": torch.tensor([0.0, 1.0])})
    gm = compile_network(net.to(torch.float64))
    assert "mul" in gm.code
    x = torch.randn(3, 2, 5, 5, dtype=torch.float64)
    w = net.params["c"]["weight"].double()
    s = F.conv2d(x, w) + 1.5 * x
    want = torch.stack([F.relu(s[:, 0]), s[:, 1]], 1)   # a = 0 is phi, a = 1 is the identity
    assert torch.allclose(gm(x), want, rtol=0, atol=1e-14)


def test_pad_once_chain():
    net = Network((1, 6, 6))
    net.add_edge("input", "p", Pad(2), "pad")
    net.add_edge("p", "a", Conv2d(1, 1, 3), "c1")
    net.add_edge("a", "b", Conv2d(1, 1, 3), "c2")
    net.add_edge("p", "cr", Crop(2), "crop")
    net.add_edge("cr", "b", Activation("relu"), "r")
    net.add_edge("b", "output", Identity(), "out")
    gm = compile_network(net.to(torch.float64))
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    p = net.params
    want = F.conv2d(F.conv2d(F.pad(x, (2,) * 4), p["c1"]["weight"].double()), p["c2"]["weight"].double()) + F.relu(x)
    assert gm(x).shape == (1, 1, 6, 6)
    assert torch.allclose(gm(x), want, rtol=0, atol=1e-13)


def test_state_dict_round_trips_between_compiles(tiny_resnet):
    gm = compile_network(tiny_resnet)
    opt = torch.optim.SGD(gm.parameters(), lr=0.1)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    gm(x).square().mean().backward()
    opt.step()
    trained = sync_from_module(tiny_resnet, gm)
    assert not torch.equal(trained.params["fc"]["weight"], tiny_resnet.params["fc"]["weight"])
    gm2 = compile_network(trained)
    gm2.load_state_dict(gm.state_dict())   # strict
    gm.eval(), gm2.eval()
    with torch.no_grad():
        assert torch.equal(gm(x), gm2(x))
    assert compile_network(tiny_resnet.to(torch.float64)).fc.weight.dtype == torch.float64


def test_compile_lints_first():
    net = Network((2, 4, 4))
    net.add_edge("input", "output", Conv2d(3, 2, 1), "c")
    from morphnas.morphism.errors import LintError
    with pytest.raises(LintError, match="conv2d expects 3 input channels"):
        compile_network(net)


def test_compiling_leaves_the_global_rng_alone(tiny_resnet):
    state = torch.random.get_rng_state()
    compile_network(tiny_resnet)
    assert torch.equal(torch.random.get_rng_state(), state)
