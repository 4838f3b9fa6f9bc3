"""Layer kinds are one class in one file: spec, runtime module, drawing label and import rules.

Why: adding a kind used to take entries in four files. These tests add one in a single temporary
file and follow it through everything a kind takes part in (compile, save/load, drawing, export in
a torch-only process, import from an ``nn.Module``), then remove it; they check that every kind
declares all of it, and that registration mistakes are refused with the file named.
"""
from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from morphnas.morphism import runtime
from morphnas.morphism.compile import compile_network
from morphnas.morphism.errors import ImportUnsupported, KindRegistrationError, SpecError
from morphnas.morphism.graph import Network
from morphnas.morphism.importer import from_torch
from morphnas.morphism.kinds import (
    LayerSpec,
    discover_kinds,
    layer_kinds,
    load_kind_file,
    runtime_source,
    unregister_kind,
)
from morphnas.morphism.layer_json import spec_from_json, spec_to_json
from morphnas.morphism.layers import (
    Activation,
    AvgPool2d,
    BatchNorm2d,
    Conv2d,
    Crop,
    Dropout,
    Flatten,
    GlobalAvgPool,
    Identity,
    Linear,
    MaxPool2d,
    PAct,
    Pad,
    PReLU,
)
from morphnas.morphism.layers_extra import (
    AdaptiveAvgPool2d,
    AdaptiveMaxPool2d,
    Attention,
    ChannelLayerNorm,
    ChannelShuffle,
    ChannelSlice,
    ClassToken,
    LayerNorm,
    LayerScale,
    PosEmbed,
    StochasticDepth,
    TokenPool,
    Tokens,
)
from morphnas.morphism.serialize import load_network, save_network
from morphnas.search.export.exporter import export_network
from morphnas.spaces.draw import draw_network, groups, layer_label

NEGATE_KIND = '''
"""An example layer kind in one file: ``negate`` computes ``-x``."""
from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from morphnas.morphism.import_rules import Convert
from morphnas.morphism.kinds import LayerSpec


class Negator(nn.Module):
    """A module of the user's own library: the importer keeps it whole and recognises it."""

    def forward(self, x):
        return x.neg()


class NegateModule(nn.Module):
    """The runtime: torch only, copied into exports."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


def _negate(*_):
    return Convert([Negate()], [{}])


@dataclass(frozen=True)
class Negate(LayerSpec):
    kind: ClassVar[str] = "negate"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True
    runtime = NegateModule
    import_modules = {Negator: _negate}
    import_functions = {operator.neg: _negate, torch.neg: _negate, "neg": _negate}

    def is_linear(self) -> bool:
        return True

    def draw_label(self) -> str:
        return "neg"
'''

# A child process that may import torch and nothing of morphnas: load the export and run it.
STANDALONE = textwrap.dedent("""
    import sys, torch
    sys.path.insert(0, sys.argv[1])
    import load_model
    model = load_model.load(sys.argv[1])
    with torch.no_grad():
        torch.save(model(torch.load(sys.argv[2], weights_only=True)), sys.argv[3])
    leaked = sorted(m for m in sys.modules if m == "morphnas" or m.startswith("morphnas."))
    assert not leaked, leaked
""")


class UsesNegation(nn.Module):
    def __init__(self, negator: type[nn.Module]):
        super().__init__()
        self.conv = nn.Conv2d(2, 3, 3, padding=1)
        self.flip = negator()

    def forward(self, x):
        return torch.neg(F.relu(-self.flip(self.conv(x))))


def test_a_layer_kind_in_one_file_compiles_saves_draws_exports_and_imports(tmp_path):
    path = tmp_path / "negate_kind.py"
    path.write_text(NEGATE_KIND)
    before = dict(runtime.BUILDERS)
    (negate,) = load_kind_file(path)
    user = sys.modules[negate.__module__]
    model = UsesNegation(user.Negator)
    try:
        assert layer_kinds()["negate"] is negate and runtime.BUILDERS["negate"] is user.NegateModule
        gen = torch.Generator().manual_seed(0)
        net = Network((2, 5, 5))
        net.add_edge("input", "c", Conv2d(2, 3, 3, padding=1, bias=True), "conv", gen=gen)
        net.add_edge("c", "output", negate(), "neg")
        x = torch.randn(4, 2, 5, 5, generator=gen)
        want = -F.conv2d(x, net.params["conv"]["weight"], net.params["conv"]["bias"], padding=1)
        assert torch.equal(compile_network(net)(x), want)                               # compiles

        saved = save_network(net, tmp_path / "net")                                     # saves and loads
        assert {"kind": "negate"} in [e["layer"] for e in json.loads((saved / "network.json").read_text())["edges"]]
        assert spec_from_json(spec_to_json(negate())) == negate()
        assert torch.equal(compile_network(load_network(saved))(x), want)

        assert layer_label(negate()) == "neg"                                           # draws
        assert [line.text for g in groups(net) for line in g.lines] == ["conv3x3 3 → neg"]
        assert draw_network(net, tmp_path / "net.svg").stat().st_size > 0

        result = export_network(net, tmp_path / "exp")                                  # exports
        assert result.rel_err == 0.0
        shipped = (tmp_path / "exp" / "morphnas_runtime.py").read_text()
        assert "class NegateModule(nn.Module):" in shipped and "'negate': NegateModule," in shipped
        torch.save(x, tmp_path / "x.pt")
        (tmp_path / "standalone.py").write_text(STANDALONE)
        out = subprocess.run([sys.executable, str(tmp_path / "standalone.py"), str(tmp_path / "exp"),
                              str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
                             capture_output=True, text=True, cwd=tmp_path, env={"OMP_NUM_THREADS": "1", "PATH": ""})
        assert out.returncode == 0, out.stderr
        assert torch.equal(torch.load(tmp_path / "y.pt", weights_only=True), want)

        imported = from_torch(model, (2, 5, 5))                                         # imports (checked numerically)
        assert [(e.name, e.layer.kind) for e in imported.edges()] == [
            ("conv", "conv2d"), ("flip", "negate"), ("neg", "negate"), ("relu", "activation"), ("neg_1", "negate")]
    finally:
        unregister_kind("negate")
    # ... and gone again everywhere.
    assert "negate" not in layer_kinds() and runtime.BUILDERS == before and "NegateModule" not in runtime_source()
    with pytest.raises(SpecError, match="unknown layer kind 'negate'"):
        spec_from_json({"kind": "negate"})
    with pytest.raises(ImportUnsupported) as err:
        from_torch(model, (2, 5, 5))
    assert err.value.ops == ["Tensor.neg at 'flip'", "operator.neg at the top level", "torch.neg at the top level"]
    assert load_kind_file(path) and unregister_kind("negate")   # a removed kind's file loads again


EXAMPLES = [Conv2d(4, 8, 3, 2, 1, groups=2, bias=True), BatchNorm2d(8), Activation("gelu"), PAct(8, "tanh"),
            PReLU(8, 0.1), Identity(0.5), MaxPool2d(3, 2, 1), AvgPool2d(2, None, 0, False), GlobalAvgPool(), Flatten(),
            Linear(8, 3, False), Dropout(0.2), Pad(1), Crop(2), ChannelSlice(2, 6), ChannelShuffle(2),
            ChannelLayerNorm(8), LayerScale(8), StochasticDepth(0.1, "row"), AdaptiveAvgPool2d(3, 2),
            AdaptiveMaxPool2d(1, 1), Tokens(), LayerNorm(8), PosEmbed(5, 8), ClassToken(8), TokenPool("mean"),
            Attention(8, 2, 3, 0.25, bias=True, dropout=0.1)]


def test_every_kind_declares_a_runtime_a_label_and_builds_its_tensors():
    kinds = layer_kinds()
    assert {type(s) for s in EXAMPLES} == set(kinds.values())
    assert set(runtime.BUILDERS) == set(kinds)                       # filled from the registrations
    for name, cls in kinds.items():
        assert runtime.BUILDERS[name] is cls.runtime, name
        assert cls.draw_label is not LayerSpec.draw_label, name
    for spec in EXAMPLES:
        assert isinstance(spec.draw_label(), str) and spec.draw_label()
        state = spec.module().state_dict()
        assert {k: tuple(v.shape) for k, v in state.items()} == spec.param_shapes(), spec.kind


def test_the_exported_runtime_builds_every_kind_with_torch_alone(tmp_path):
    text = runtime_source()
    for cls in layer_kinds().values():   # each kind's own code, copied as it is (torch's classes referenced)
        made_by = cls.runtime
        assert made_by is not None
        if made_by.__module__.startswith("torch."):
            assert f"{cls.kind!r}: nn.{made_by.__name__}," in text
        else:
            assert inspect.getsource(made_by).strip() in text and f"{cls.kind!r}: {made_by.__name__}," in text
    (tmp_path / "morphnas_runtime.py").write_text(text)
    (tmp_path / "layers.json").write_text(json.dumps([spec_to_json(s) for s in EXAMPLES]))
    script = textwrap.dedent("""
        import json, sys
        sys.path.insert(0, sys.argv[1])
        import morphnas_runtime as rt
        built = {d["kind"]: sorted(rt.build_layer(d).state_dict()) for d in json.load(open(sys.argv[2]))}
        assert not [m for m in sys.modules if m == "morphnas" or m.startswith("morphnas.")]
        print(json.dumps([sorted(rt.BUILDERS), built]))
    """)
    out = subprocess.run([sys.executable, "-c", script, str(tmp_path), str(tmp_path / "layers.json")],
                         capture_output=True, text=True, cwd=tmp_path, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    assert out.returncode == 0, out.stderr
    kinds, built = json.loads(out.stdout)
    assert kinds == sorted(layer_kinds())
    assert built == {s.kind: sorted(s.param_shapes()) for s in EXAMPLES}


# Runtimes this file defines at the top level (exports copy top-level code only).
def _twice(x):
    return 2 * x


class ReadsAHelper(nn.Module):
    def forward(self, x):
        return _twice(x)


class LayerScaleModule(nn.Module):   # the name of layer_scale's runtime
    def forward(self, x):
        return x


def _declare(kind: str, **attrs) -> None:
    """Define a kind ``kind`` here with these class attributes (a label unless ``draw_label=None``)."""
    body = {"kind": kind, "draw_label": lambda self: kind, **attrs, "__annotations__": {"kind": ClassVar[str]},
            "__module__": __name__, "__qualname__": f"Kind_{kind}"}
    if body["draw_label"] is None:
        del body["draw_label"]
    dataclass(frozen=True)(type(f"Kind_{kind}", (LayerSpec,), body))


@pytest.mark.parametrize("kind, attrs, message", [
    ("layer_scale", {"runtime": nn.Identity},
     r"layer kind 'layer_scale' is defined twice \(class LayerScale in .*layer_scale\.py and class Kind_layer_scale in "
     r".*test_layer_kinds\.py\); give the new class another 'kind'"),
    ("no_runtime", {}, r"layer kind 'no_runtime' \(class Kind_no_runtime in .*test_layer_kinds\.py\) declares no runtime"),
    ("no_label", {"runtime": nn.Identity, "draw_label": None}, r"\(class Kind_no_label in .*test_layer_kinds\.py\) "
     r"declares no draw_label\(\)"),
    ("helper", {"runtime": ReadsAHelper}, r"has a runtime exports cannot ship: ReadsAHelper reads '_twice', which an "
     r"exported model would not have"),
    ("nested", {"runtime": type("Inner", (nn.Module,), {"__qualname__": "f.<locals>.Inner"})},
     r"f\.<locals>\.Inner is not defined at the top level of its file"),
    ("lambda", {"runtime": lambda: nn.Identity()}, r"<lambda> is not defined at the top level of its file"),
    ("not_a_module", {"runtime": len}, r"is neither an nn.Module class nor a function returning one"),
    ("same_name", {"runtime": LayerScaleModule},
     r"names its runtime 'LayerScaleModule' like kind 'layer_scale' does \(class LayerScale in .*layer_scale\.py\)"),
    ("conv_again", {"runtime": nn.Identity, "import_modules": {nn.Conv2d: None}},
     r"imports torch\.nn\.modules\.conv\.Conv2d modules, which kind 'conv2d' imports already"),
    ("flatten_again", {"runtime": nn.Identity, "import_functions": {"flatten": None}},
     r"imports calls of 'flatten', which kind 'flatten' imports already"),
    ("bad_key", {"runtime": nn.Identity, "import_modules": {"Conv2d": None}},
     r"lists 'Conv2d' in import_modules, which is not an nn.Module class"),
])
def test_registration_mistakes_are_refused_naming_the_file(kind, attrs, message):
    before, builders = layer_kinds(), dict(runtime.BUILDERS)
    with pytest.raises(KindRegistrationError, match=message):
        _declare(kind, **attrs)
    assert layer_kinds() == before and runtime.BUILDERS == builders   # nothing half-registered


def test_a_kind_file_that_registers_nothing_is_an_error(tmp_path):
    (tmp_path / "lonely_kind.py").write_text("X = 1\n")
    with pytest.raises(KindRegistrationError, match=r"kind file lonely_kind\.py \(.*lonely_kind\.py\) registers no "
                                                    r"layer kind; define a frozen dataclass subclassing LayerSpec"):
        load_kind_file(tmp_path / "lonely_kind.py")
    pkg = tmp_path / "fake_kinds"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "_helpers.py").write_text("Y = 2\n")       # helpers start with _ and are skipped
    (pkg / "lonely.py").write_text("X = 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(KindRegistrationError, match=r"kind file lonely\.py \(.*fake_kinds.lonely\.py\) registers "
                                                        r"no layer kind.*or rename it _lonely\.py"):
            discover_kinds("fake_kinds")
    finally:
        sys.path.remove(str(tmp_path))


def test_a_kind_file_loads_once(tmp_path):
    path = tmp_path / "negate_kind.py"
    path.write_text(NEGATE_KIND)
    load_kind_file(path)
    try:
        with pytest.raises(KindRegistrationError, match=r"kind file negate_kind\.py \(.*\) is loaded already"):
            load_kind_file(path)
    finally:
        unregister_kind("negate")
    with pytest.raises(SpecError, match="layer kind 'negate' is not registered"):
        unregister_kind("negate")
