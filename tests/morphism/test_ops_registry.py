"""Op and layer-kind self-registration, and parameter validation in ``Params``.

Why: ops and layer kinds register themselves (no hand-kept list), so the failure modes of that
mechanism — a public op module that registers nothing, a name used twice — must be loud, one-line
errors; and every check of a parameter alone happens in ``parse_params``, before any network.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import ClassVar

import pytest
from _paths import REPO

from morphnas.morphism.errors import SpecError
from morphnas.morphism.kinds import layer_kinds
from morphnas.morphism.layers import LayerSpec
from morphnas.morphism.ops import MorphOp, OpRegistrationError, default_registry, register_op
from morphnas.morphism.ops.base import discover_ops


def _documented_ops() -> list[str]:
    """The op names of the README's op table, in its order: the documentation users read."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Morph operations"):]
    section = section[:section.index("\n## ", 5)]
    return re.findall(r"^\| `([a-z_0-9]+)` \|", section, re.M)


ORDER = _documented_ops()


def test_ops_are_listed_in_the_documented_order():
    # Adding an op is one file plus its README row: this fails until the row is there.
    assert len(ORDER) >= 20 and ORDER[0] == "deepen"
    assert [op.name for op in default_registry().listed()] == ORDER
    assert default_registry().names() == sorted(ORDER)


def _package(tmp_path, name, files):
    root = tmp_path / name
    root.mkdir()
    (root / "__init__.py").write_text("")
    for fname, text in files.items():
        (root / fname).write_text(text)
    sys.path.insert(0, str(tmp_path))
    return name


OP_SRC = '''
from morphnas.morphism.ops import MorphOp, register_op

@register_op
class {cls}(MorphOp):
    name = "{name}"
    {order}
'''


def test_a_public_op_module_that_registers_nothing_is_an_error(tmp_path):
    pkg = _package(tmp_path, "fake_ops_a", {
        "good.py": OP_SRC.format(cls="Good", name="fake_good_a", order=""),
        "_helper.py": "X = 1\n",              # helpers start with _ and are skipped
        "lonely.py": "X = 1\n"})
    try:
        with pytest.raises(OpRegistrationError, match=r"op module lonely.py \(.*lonely.py\) registers no op; "
                                                      r"register its op with the @register_op decorator"):
            discover_ops(pkg)
    finally:
        sys.path.remove(str(tmp_path))


def test_discovered_ops_follow_order_then_name(tmp_path):
    pkg = _package(tmp_path, "fake_ops_b", {
        "zed.py": OP_SRC.format(cls="Zed", name="fake_zed", order=""),
        "alpha.py": OP_SRC.format(cls="Alpha", name="fake_alpha", order=""),
        "late.py": OP_SRC.format(cls="Late", name="fake_late", order="order = 5")})
    try:
        assert [op.name for op in discover_ops(pkg).listed()] == ["fake_late", "fake_alpha", "fake_zed"]
    finally:
        sys.path.remove(str(tmp_path))


def test_an_op_registered_twice_is_an_error():
    class Dup(MorphOp):
        name = "split"
    with pytest.raises(OpRegistrationError, match="op 'split' is registered twice"):
        register_op(Dup())
    assert type(default_registry().get("split")).__name__ == "Split"


def test_a_layer_kind_defined_twice_is_an_error():
    with pytest.raises(SpecError, match="layer kind 'conv2d' is defined twice"):
        @dataclass(frozen=True)
        class Conv2dAgain(LayerSpec):
            kind: ClassVar[str] = "conv2d"
    assert layer_kinds()["conv2d"].__name__ == "Conv2d"


def test_layer_traits_are_declared_on_the_kinds():
    kinds = layer_kinds()
    assert {k for k, c in kinds.items() if c.channelwise} == {
        "batchnorm2d", "activation", "pact", "prelu", "identity", "maxpool2d", "avgpool2d", "global_avg_pool",
        "pad", "crop", "dropout", "flatten", "layer_scale", "stochastic_depth", "adaptive_avgpool2d",
        "adaptive_maxpool2d", "tokens", "pos_embed", "class_token", "token_pool"}
    assert {k for k, c in kinds.items() if c.keeps_channels} == {
        "batchnorm2d", "activation", "pact", "prelu", "identity", "maxpool2d", "avgpool2d", "global_avg_pool",
        "pad", "crop", "dropout", "channel_layernorm", "layer_scale", "stochastic_depth", "adaptive_avgpool2d",
        "adaptive_maxpool2d"}


@pytest.mark.parametrize("op, raw, message", [
    ("split", {"mode": ["scale", "bogus"]}, "op split parameter 'mode': unknown value ('scale', 'bogus')"),
    ("split", {"mode": "randon"}, "op split parameter 'mode': unknown value 'randon'; did you mean 'random'?"),
    ("split", {"alpha": "1.5"}, "op split parameter 'alpha' must be < 1, got 1.5; choose 0 < alpha < 1"),
    ("widen", {"factor": "inf"}, "op widen parameter 'factor' must be a finite number, got inf"),
    ("widen", {"factor": 1e9}, "op widen parameter 'factor' must be <= 64, got 1000000000.0"),
    ("widen", {"factor": float("nan")}, "op widen parameter 'factor' must be a finite number"),
    ("deepen", {"k1": 99999}, "op deepen parameter 'k1' must be <= 31, got 99999"),
    ("deepen", {"k1": 4}, "op deepen parameter 'k1' must be an odd kernel size"),
    ("deepen", {"mode": "fast"}, "op deepen parameter 'mode': unknown value 'fast'"),
    ("deepen", {"act": "rleu"}, "op deepen parameter 'act': unknown value 'rleu'; did you mean 'relu'?"),
    ("insert_layer", {"k": "2"}, "op insert_layer parameter 'k' must be an odd kernel size"),
    ("insert_bn", {"eps": 0}, "op insert_bn parameter 'eps' must be > 0, got 0"),
    ("insert_bn", {"mean": [0.0]}, "op insert_bn parameters 'mean' and 'var': give both or neither"),
    ("activation", {"fn": "tanhh"}, "op activation parameter 'fn': unknown value 'tanhh'; did you mean 'tanh'?"),
    ("split_identity", {"ratio": 0}, "op split_identity parameter 'ratio' must be > 0, got 0"),
    ("morph_block", {"branches": 3}, "op morph_block parameter 'branches' must be one of 1, 2, got 3"),
    ("insert_path", {"width": 0}, "op insert_path parameter 'width' must be >= 1, got 0"),
    ("add_heads", {"heads": 0}, "op add_heads parameter 'heads' must be >= 1, got 0"),
    ("deepen_block", {"mlp_dim": 0}, "op deepen_block parameter 'mlp_dim' must be >= 1, got 0"),
    ("enlarge_kernel", {"noise": -1}, "op enlarge_kernel parameter 'noise' must be >= 0, got -1"),
    ("module", {"tol": 2}, "op module parameter 'tol' must be < 1, got 2"),
    ("module", {"iterations": 10**9}, "op module parameter 'iterations' must be <= 100000"),
])
def test_parse_params_rejects_every_bad_value(op, raw, message):
    with pytest.raises(SpecError) as info:
        default_registry().get(op).parse_params(raw)
    text = str(info.value)
    assert message in text and "\n" not in text


def test_parse_params_accepts_cli_strings_and_defaults():
    reg = default_registry()
    assert reg.get("split").parse_params({"mode": "random", "alpha": "0.25"}).alpha == 0.25
    assert reg.get("deepen").parse_params({"k1": "3", "act": "none", "mid": "none"}).mid is None
    for op in reg:
        assert op.parse_params({}) == op.Params()
