"""from_torch: torch.fx import of user modules and torchvision ResNets, checked numerically."""
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from morphnas.morphism.compile import compile_network
from morphnas.morphism.errors import ImportUnsupported, MorphnasError
from morphnas.morphism.importer import from_torch
from morphnas.morphism.lint import lint_problems


def _randomise_bn(model: nn.Module, seed: int) -> None:
    """Trained-looking BN statistics, so a BN imported wrongly cannot hide behind the identity."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(c, generator=g) * 0.2)


def _compare(model: nn.Module, net, dtype, shape, seed=1):
    model = model.to(dtype).eval()
    x = torch.randn((2, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)
    with torch.no_grad():
        want = model(x)
        got = compile_network(net.to(dtype)).eval()(x)
    return ((want - got).abs().max() / want.abs().max()).item()


@pytest.mark.parametrize("name, blocks", [("resnet18", 8), ("resnet34", 16)])
def test_torchvision_resnet_imports_exactly(name, blocks):
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=10)
    _randomise_bn(model, 3)
    shape = (3, 64, 64)   # any size >= 32 runs the same graph; small keeps the test fast
    net = from_torch(model, shape)
    assert lint_problems(net) == []
    # torchvision's state-dict keys are kept one to one.
    assert sorted(net.state_dict()) == sorted(model.state_dict())
    for k, t in model.state_dict().items():
        assert torch.equal(net.state_dict()[k], t), k
    names = {e.name for e in net.edges()}
    # The block's shared ReLU is called twice: the second call gets its own edge.
    assert {"layer1.0.relu", "layer1.0.relu_1", "layer1.1.shortcut", "maxpool", "fc"} <= names
    assert "layer2.0.shortcut" not in names   # projection blocks add the downsample path instead
    assert net.edge("layer2.0.downsample.0").layer.stride == 2
    assert len(net.meta["blocks"]) == blocks
    assert net.meta["blocks"][1] == {"name": "layer1.1", "stage": 1, "index": 1, "in": "layer1.0.relu_1",
                                     "sum": "layer1.1.sum", "out": "layer1.1.relu_1", "shortcut": "layer1.1.shortcut"}
    assert _compare(model, net, torch.float32, shape) <= 1e-5
    net64 = from_torch(model.double(), shape)
    assert net64.dtype == torch.float64
    assert _compare(model, net64, torch.float64, shape) <= 1e-12


class Functional(nn.Module):
    """Every supported spelling of the ops the importer accepts."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding="same", bias=True)
        self.bn = nn.BatchNorm2d(4)
        self.prelu = nn.PReLU(4, init=0.1)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4, 4, (3, 3), stride=(1, 1), padding=(1, 1), bias=False)
        self.pool = nn.AvgPool2d(2)
        self.gap = nn.AdaptiveAvgPool2d((1, 1))
        self.flat = nn.Flatten()
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(4, 3)
        self.skip = nn.Identity()
        self.gelu = nn.GELU()

    def forward(self, x):
        y = self.act(self.bn(self.conv(x)))
        z = F.relu(self.conv2(y))
        z = torch.relu(z) + y                 # operator.add of a fresh tensor and a shared one
        z += self.skip(y)                     # iadd
        z = torch.add(z, F.leaky_relu(z))
        z = self.prelu(z) * 0.5
        z = z.sigmoid() / 2
        a = F.max_pool2d(z, 2)
        b = self.pool(torch.tanh(z))
        c = F.silu(a + b).contiguous()
        v1 = self.gap(c).view(c.size(0), -1)
        v2 = torch.flatten(F.adaptive_avg_pool2d(c, 1), 1)
        v3 = c.mean((2, 3))
        v4 = self.flat(self.gelu(c.mean(dim=(-2, -1), keepdim=True))).reshape(c.shape[0], -1)
        return self.fc(self.drop(v1 + v2 + v3 + v4))


def test_functional_spellings_import_exactly_in_float64():
    torch.manual_seed(0)
    model = Functional()
    _randomise_bn(model, 1)
    net = from_torch(model.double(), (2, 8, 8))
    # The module is not changed: still in training mode.
    assert model.training and model.bn.training
    assert lint_problems(net) == []
    assert _compare(model, net, torch.float64, (2, 8, 8)) <= 1e-13
    kinds = sorted(e.layer.kind for e in net.edges())
    assert kinds.count("conv2d") == 2 and kinds.count("global_avg_pool") == 4 and kinds.count("flatten") == 5
    assert kinds.count("activation") == 8 and kinds.count("prelu") == 1
    scales = sorted(e.layer.scale for e in net.edges() if e.layer.kind == "identity")
    # "* 0.5", "/ 2", the two shortcuts reading y, and z itself in torch.add(z, leaky_relu(z)).
    assert scales == [0.5, 0.5, 1.0, 1.0, 1.0]
    assert net.edge("conv").layer.padding == 1 and net.edge("conv").layer.bias
    assert net.edge("prelu").layer.init == 0.1


def test_sequential_root_keeps_its_numeric_names():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
    net = from_torch(model, (1, 8, 8))
    assert [e.name for e in net.edges()] == ["0", "1", "2", "3"]
    gm = compile_network(net)
    gm.load_state_dict(model.state_dict())   # the same keys, strict


def test_import_leaves_module_state_alone():
    model = torchvision.models.resnet18(num_classes=4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    from_torch(model, (3, 32, 32))
    assert model.training and all(m.training for m in model.modules())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k   # the check runs in eval mode: BN stats untouched


class Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.up = nn.Upsample(scale_factor=2)
        self.lrelu = nn.LeakyReLU(0.2)
        self.conv2 = nn.Conv2d(3, 4, (3, 1))

    def forward(self, x):
        a = self.conv(x)
        b = torch.cat([a, a], 1).permute(0, 1, 3, 2)
        return self.up(b) * b + self.lrelu(self.conv2(x)).sum()


def test_unsupported_ops_are_all_listed_and_the_first_is_named_in_one_short_line():
    with pytest.raises(ImportUnsupported) as err:
        from_torch(Unsupported(), (3, 8, 8))
    ops = err.value.ops
    text = str(err.value)
    for want in ("Tensor.permute", "torch.nn.modules.upsampling.Upsample", "LeakyReLU(negative_slope=0.2",
                 "Conv2d with non-square kernel (3, 1)", "Tensor.sum"):
        assert any(want in o for o in ops), (want, ops)
    assert not any("torch.cat" in o for o in ops), ops      # a channel concat is supported now
    assert ops[0].startswith("Tensor.permute(0, 1, 3, 2)") and ops[0] in text   # the first, in graph order
    assert "\n" not in text and len(text) < 300 and " 0x" not in text and f"+{len(ops) - 1} more" in text


class InplaceHazard(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        a = self.conv(x)
        b = F.relu(a, inplace=True)   # changes `a`, which is read again below
        return b + a


class ControlFlow(nn.Module):
    def forward(self, x):
        return x if x.sum() > 0 else -x


class Parameterised(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(2, 2, 1, 1))

    def forward(self, x):
        return F.conv2d(x, self.w)


def test_hazards_and_untraceable_code():
    with pytest.raises(ImportUnsupported, match="in-place 'relu' modifies a tensor that 'add' reads afterwards"):
        from_torch(InplaceHazard(), (2, 4, 4))
    with pytest.raises(ImportUnsupported, match="cannot trace"):
        from_torch(ControlFlow(), (2, 4, 4))
    with pytest.raises(ImportUnsupported) as err:
        from_torch(Parameterised(), (2, 4, 4))
    assert any("self.w" in o for o in err.value.ops) and any("conv2d" in o for o in err.value.ops)
    with pytest.raises(ImportUnsupported, match="output that is not a single tensor"):
        from_torch(TwoOutputs(), (2, 4, 4))


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 1)

    def forward(self, x):
        y = self.conv(x)
        return y, y


def test_wrong_input_shape_names_the_layer():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    with pytest.raises(MorphnasError, match="'0' does not fit.*expects 3 input channels.*check input_shape"):
        from_torch(model, (1, 8, 8))


def test_adds_merge_into_one_sum_blob():
    class TwoPaths(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(2, 2, 1)
            self.b = nn.Conv2d(2, 2, 3, padding=1)

        def forward(self, x):
            return self.a(x) + self.b(x) + x + x

    model = TwoPaths()
    net = from_torch(model, (2, 5, 5))
    # a and b write straight into the sum; x (read twice) comes through two identity edges.
    ins = net.in_edges(net.output_blob)
    assert sorted(e.layer.kind for e in ins) == ["conv2d", "conv2d", "identity", "identity"]
    assert len(net) == 4 and net.graph.number_of_nodes() == 2
    assert _compare(model, net.to(torch.float64), torch.float64, (2, 5, 5)) <= 1e-14


def test_module_paths_the_ir_cannot_spell_are_cleaned_and_recorded():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleDict({"block1-0": nn.Conv2d(2, 2, 1), "block1-1": nn.ReLU()})

        def forward(self, x):
            return self.blocks["block1-1"](self.blocks["block1-0"](x))

    net = from_torch(Odd(), (2, 3, 3))
    assert [e.name for e in net.edges()] == ["blocks.block1_0", "blocks.block1_1"]
    assert net.meta["renamed"] == {"blocks.block1_0": "blocks.block1-0", "blocks.block1_1": "blocks.block1-1"}


def test_torch_cat_is_a_concat_join_in_list_order():
    class Cat(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(2, 3, 1)

        def forward(self, x):
            return torch.cat([x, self.a(x), x], 1)

    model = Cat()
    net = from_torch(model, (2, 3, 3))
    assert net.join(net.output_blob) == "concat"
    assert [e.layer.kind for e in net.in_edges(net.output_blob)] == ["identity", "conv2d", "identity"]
    assert net.shapes()[net.output_blob] == (7, 3, 3)
    assert _compare(model, net.to(torch.float64), torch.float64, (2, 3, 3)) == 0.0


def test_a_model_is_traced_in_eval_mode_and_left_untouched():
    class TrainOnly(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(2, 2, 1)
            self.aux = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            y = self.a(x)
            return y + self.aux(x) if self.training else y

    model = TrainOnly().train()
    net = from_torch(model, (2, 3, 3))
    assert net.edge_names() == ["a"] and model.training and model.a.training


def test_refusal_names_the_first_op_and_where_without_internal_reprs():
    class Odd(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(2, 4, 1), nn.Upsample(scale_factor=2))

        def forward(self, x):
            return self.body(x).view(x.size(0), 4, -1)

    with pytest.raises(ImportUnsupported) as err:
        from_torch(Odd(), (2, 3, 3))
    text = str(err.value)
    assert "Upsample at 'body.1'" in text and len(text) < 300 and "object at" not in text and "\n" not in text
