"""lint reports every broken invariant, each message naming the blob or edge involved."""
from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch

from morphnas.morphism.errors import LintError
from morphnas.morphism.graph import Network
from morphnas.morphism.layers import Activation, BatchNorm2d, Conv2d, Identity, LayerSpec, Linear
from morphnas.morphism.lint import lint, lint_problems


def base() -> Network:
    net = Network((2, 4, 4))
    net.add_edge("input", "a", Conv2d(2, 3, 3, 1, 1), "conv")
    net.add_edge("a", "b", BatchNorm2d(3), "bn")
    net.add_edge("b", "output", Activation("relu"), "relu")
    return net


def test_well_formed_networks_are_clean(tiny_resnet):
    assert lint_problems(base()) == []
    assert lint_problems(tiny_resnet) == []
    lint(tiny_resnet)


def test_cycle():
    net = base()
    net.add_edge("b", "a", Identity(), "back")
    problems = lint_problems(net)
    assert any(p.startswith("cycle through blobs") and "a" in p and "b" in p for p in problems), problems


def test_dangling_blobs():
    net = base()
    net.add_edge("a", "dead_end", Activation("tanh"), "tanh")
    net.add_blob("orphan")
    net.add_edge("orphan", "b", Conv2d(3, 3, 1), "from_nowhere")
    problems = lint_problems(net)
    assert "dangling blob 'dead_end': nothing reads it" in problems
    assert "dangling blob 'orphan': nothing flows into it" in problems


def test_channel_mismatch_at_a_join():
    net = base()
    net.add_edge("input", "b", Conv2d(2, 5, 1), "proj")
    problems = lint_problems(net)
    assert any("blob 'b' sums in-edges of different shapes (bn: (3, 4, 4), proj: (5, 4, 4))" in p
               and "channel mismatch at a join" in p for p in problems), problems


def test_layer_that_does_not_fit_its_input():
    net = base()
    net.add_edge("a", "output", Linear(3, 3), "fc")
    problems = lint_problems(net)
    assert any(p.startswith("edge 'fc' (a -> output): linear needs a flat input") for p in problems), problems


@dataclass(frozen=True)
class Mystery(LayerSpec, register=False):   # a kind morphnas does not know
    kind: ClassVar[str] = "mystery"

    def module(self):
        return torch.nn.Identity()


def test_unknown_kind():
    net = base()
    net.add_edge("a", "b", Mystery(), "odd")
    assert "edge 'odd' has an unknown layer kind Mystery" in lint_problems(net)


def test_prefix_clashing_names():
    net = base()
    net.add_edge("input", "a", Conv2d(2, 3, 1), "conv.extra")
    problems = lint_problems(net)
    assert "edge name 'conv' is also the prefix of edge 'conv.extra'; module paths would clash" in problems


def test_wrong_and_missing_tensors():
    net = base()
    net.params["conv"]["weight"] = torch.zeros(3, 2, 1, 1)
    del net.params["bn"]["running_var"]
    problems = lint_problems(net)
    assert "edge 'conv' tensor 'weight' has shape (3, 2, 1, 1), expected (3, 2, 3, 3)" in problems
    assert any(p.startswith("edge 'bn' has tensors") and "running_var" in p for p in problems), problems


def test_input_and_output_rules():
    net = base()
    net.add_edge("a", "input", Identity(), "into_input")
    net.add_edge("output", "z", Identity(), "after_output")
    problems = lint_problems(net)
    assert "input blob 'input' has in-edges ['into_input']" in problems
    assert "output blob 'output' has out-edges ['after_output']" in problems
    cut = Network((2, 4, 4))
    cut.add_edge("input", "x", Activation(), "r")
    cut.add_edge("x", "y", Activation(), "r2")
    assert "no path from 'input' to 'output'" in lint_problems(cut)


def test_lint_raises_with_every_problem():
    net = base()
    net.add_edge("input", "b", Conv2d(2, 5, 1), "proj")
    net.add_edge("input", "a", Conv2d(2, 3, 1), "conv.extra")
    with pytest.raises(LintError) as err:
        lint(net)
    assert len(err.value.problems) == 2
    assert str(err.value).startswith("2 problem(s) in the network: ")
