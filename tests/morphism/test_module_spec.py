"""Module descriptions: parsing, the shipped examples, and every validation error naming its fix."""
from __future__ import annotations

import json

import pytest
from _paths import REPO  # noqa: E402

from morphnas.morphism.errors import MorphnasError
from morphnas.morphism.module import ModuleSpecError, as_module_spec, load_module_spec, parse_module_spec
from morphnas.morphism.module.library import MODULES

CONFIGS = REPO / "configs" / "modules"


def _edges(*rows):
    return [{"from": a, "to": b, "kernel": k} for a, b, k in rows]


def test_module_d_file_parses_with_its_structure():
    m = load_module_spec(CONFIGS / "module_d.yaml")
    assert m.name == "D" and m.source == "s" and m.sink == "t"
    assert m.blobs == ("a", "b", "c")
    assert [(e.name, e.src, e.dst, e.kernel) for e in m.edges][:2] == [("F1", "s", "a", 3), ("F2", "s", "b", 3)]
    assert m.radii() == {"s": 0, "a": 1, "b": 1, "c": 2, "t": 3}
    assert m.effective_kernel == 7


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_module_file_is_valid(path):
    m = load_module_spec(path)
    assert len(m.edges) >= 2 and m.effective_kernel >= 3


def test_pinned_widths_bn_and_activation_are_read():
    m = load_module_spec(CONFIGS / "module_d_bn.yaml")
    pinned = m.pinned_widths()
    assert set(pinned) == {"c"} and pinned["c"].resolve(16) == 32
    f1, f2 = m.edge("F1"), m.edge("F2")
    assert f1.bn and f1.act.fn == "relu" and f2.act.fn == "prelu" and not m.edge("F4").bn


def test_json_file_inline_json_and_builtin_names(tmp_path):
    data = {"edges": _edges(("s", "m", 1), ("m", "t", 3))}
    p = tmp_path / "chain.json"
    p.write_text(json.dumps(data))
    assert load_module_spec(p).effective_kernel == 3
    assert as_module_spec(json.dumps(data)).edges[0].name == "e0"   # unnamed edges get e<index>
    assert as_module_spec("D").effective_kernel == 7
    assert set(MODULES) >= {"D", "D_mixed", "1c1", "3c3"}
    with pytest.raises(ModuleSpecError, match="did you mean 'D_mixed'"):
        as_module_spec("D_mixd")


def test_round_trip_through_json():
    m = load_module_spec(CONFIGS / "module_d_bn.yaml")
    again = parse_module_spec(json.loads(json.dumps(m.to_json())))
    assert again == m


@pytest.mark.parametrize("data, message", [
    ({"edges": _edges(("s", "a", 3), ("a", "b", 3), ("b", "a", 1), ("b", "t", 1))}, r"cycle \(a -> b -> a\)"),
    ({"edges": _edges(("s", "a", 3), ("x", "a", 1), ("a", "t", 1))}, r"\['x'\] have no in-edges.*single source"),
    ({"edges": _edges(("s", "a", 3), ("a", "t", 1), ("a", "y", 1))}, r"\['y'\] have no out-edges.*single sink"),
    ({"blobs": {"a": {}}, "edges": _edges(("s", "a", 3), ("q", "t", 1), ("a", "t", 1))},
     r"'from' blob 'q' is not declared"),
    ({"edges": _edges(("s", "t", 2))}, r"kernel must be a positive odd integer.*got 2"),
    ({"edges": _edges(("s", "t", 0))}, r"kernel must be a positive odd integer"),
    ({"edges": [{"from": "s", "to": "t", "kernel": 3, "knrel": 1}]}, r"unknown key 'knrel'"),
    ({"edges": [{"from": "s", "to": "t", "kernal": 3}]}, r"did you mean 'kernel'"),
    ({"edges": [{"from": "s", "to": "t"}]}, r"missing 'kernel'"),
    ({"edges": []}, r"non-empty list"),
    ({"edegs": []}, r"did you mean 'edges'"),
    ({"source": "x", "sink": "x", "edges": _edges(("x", "x", 1))}, r"source and sink must differ"),
    ({"edges": _edges(("s", "t", 1), ("t", "s", 1))}, r"into the source"),
    ({"edges": [{"name": "F", "from": "s", "to": "t", "kernel": 1},
                {"name": "F", "from": "s", "to": "t", "kernel": 3}]}, r"'F' is used twice"),
    ({"blobs": {"a": {"width": 0}}, "edges": _edges(("s", "a", 1), ("a", "t", 1))}, r"width must be >= 1"),
    ({"blobs": {"a": {"width": "two"}}, "edges": _edges(("s", "a", 1), ("a", "t", 1))}, r"'2x'"),
    ({"edges": [{"from": "s", "to": "t", "kernel": 1, "act": "rleu"}]}, r"did you mean 'relu'"),
    ({"edges": [{"from": "s", "to": "t", "kernel": 1, "bn": "yes"}]}, r"bn must be true or false"),
])
def test_validation_errors_name_the_problem(data, message):
    with pytest.raises(ModuleSpecError, match=message) as info:
        parse_module_spec(data)
    assert isinstance(info.value, MorphnasError)


def test_bad_files_are_one_line_errors(tmp_path):
    with pytest.raises(ModuleSpecError, match="does not exist"):
        load_module_spec(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("edges: [\n")
    with pytest.raises(ModuleSpecError, match="not valid yaml"):
        load_module_spec(bad)
