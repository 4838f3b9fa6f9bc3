"""A user's own morph op in a search: ``load_op``, an ``actions.ops`` key that is an import path, and
``check_conformance`` before the search starts.

The user's ops live in ``_user_op_example.py`` beside this file (imported as a top-level module, as a
user's package would be); modules that fail on import are written to ``tmp_path``. Every test leaves
the op registries as it found them, so the ops never leak into other test files.
"""
from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from _ops_util import F64_TOL, NETS, rel_err, same_tensors

from morphnas.morphism.errors import MorphnasError
from morphnas.morphism.ops import (ConformanceError, OpLoadError, apply_op, base, check_conformance,
                                   default_registry, load_op, load_ops, registered)
from morphnas.morphism.serialize import load_network, save_network
from morphnas.spaces.actions import Action, ActionSpace, ActionSpaceError

HERE = Path(__file__).resolve().parent
MOD = "_user_op_example"
GOOD = f"{MOD}:ScaleIdentity"
BROKEN = f"{MOD}:BrokenScale"


@pytest.fixture(autouse=True)
def clean_registries(monkeypatch):
    """The user ops join process-wide registries: put them back as they were after each test, and
    import the example module afresh (its ``@register_op`` runs again)."""
    monkeypatch.syspath_prepend(str(HERE))
    reg = default_registry()
    ops, everywhere = dict(reg._ops), dict(base._REGISTERED)
    mods = set(sys.modules)
    sys.modules.pop(MOD, None)
    yield
    reg._ops.clear()
    reg._ops.update(ops)
    base._REGISTERED.clear()
    base._REGISTERED.update(everywhere)
    for m in set(sys.modules) - mods:
        if m == MOD or m.startswith("userops_tmp_"):
            del sys.modules[m]


def _one_line_error(path: str, exc=OpLoadError) -> str:
    with pytest.raises(exc) as info:
        load_op(path)
    msg = str(info.value)
    assert isinstance(info.value, MorphnasError)
    assert "\n" not in msg, msg
    assert repr(path) in msg, f"the message does not name the path: {msg}"
    return msg


# ------------------------------------------------------------------------------------------ load_op
def test_load_op_registers_a_decorated_op_and_returns_its_name():
    assert "scale_identity" not in default_registry()
    assert load_op(GOOD) == "scale_identity"
    mod = sys.modules[MOD]
    op = default_registry().get("scale_identity")
    assert op is registered(mod.ScaleIdentity)   # the decorator's instance, not a second one
    # idempotent: again, through an alias of the same class, and with load_ops
    assert load_op(GOOD) == "scale_identity" and load_op(f"{MOD}:OP") == "scale_identity"
    assert load_ops([GOOD, BROKEN]) == ("scale_identity", "scale_broken")
    assert default_registry().get("scale_identity") is op
    # from now on it is an op like the built-in ones, by name
    net = NETS["mlp"]()
    child, rec = apply_op(net, "scale_identity", "fc2", {"power": 2}, seed=0)
    assert rec.op == "scale_identity" and rec.new_edges == ("fc2_unscale",)
    assert rel_err(net, child, torch.float64) <= F64_TOL


def test_load_op_registers_an_undecorated_op_and_a_module_already_imported():
    mod = importlib.import_module(MOD)   # imported before load_op: its decorated op is already registered
    assert load_op(BROKEN) == "scale_broken"
    assert default_registry().get("scale_broken") is registered(mod.BrokenScale)
    assert load_op(BROKEN) == "scale_broken"
    assert load_op(GOOD) == "scale_identity"
    assert default_registry().get("scale_identity") is registered(mod.ScaleIdentity)


def test_load_ops_refuses_a_single_string():
    with pytest.raises(OpLoadError, match=r"load_ops takes a list of op paths, got the string .*pass \["):
        load_ops(GOOD)


@pytest.mark.parametrize("path, fix", [
    (f"{MOD}.ScaleIdentity", r"\(no ':'\); write the module's import path, a colon and the op class's name, "
                             r"e\.g\. 'mypkg\.ops:MyOp'"),
    ("a:b:c", r"more than one ':'.*e\.g\. 'mypkg\.ops:MyOp'"),
    ("bad module:Op", r"'bad module' is not a module import path"),
    ("no_such_pkg.ops:MyOp", r"cannot import module 'no_such_pkg\.ops' \(No module named 'no_such_pkg'\); "
                             r"install the package, or put the folder that holds it on sys\.path"),
    (f"{MOD}:ScaleIdentiti", r"has no attribute 'ScaleIdentiti' \(fix the name after the ':'\); "
                             r"did you mean 'ScaleIdentity'\?"),
    (f"{MOD}:Zzzz", r"has no attribute 'Zzzz' .*; it defines the op class\(es\) .*ScaleIdentity"),
    (f"{MOD}:NotAnOp", r"names the class NotAnOp, not a MorphOp; point it at a class deriving from "
                       r"morphnas\.morphism\.ops\.MorphOp"),
    (f"{MOD}:np", r"names a module, not a MorphOp"),
    (f"{MOD}:MorphOp", r"names the MorphOp base class itself; point it at your op class"),
    (f"{MOD}:Nameless", r"op class Nameless has no name; set the class attribute name = '<op name>'"),
    (f"{MOD}:WidenClash", r"its name 'widen' is taken by the built-in op morphnas\.morphism\.ops\.widen\.Widen; "
                          r"give WidenClash another name"),
    (f"{MOD}:NeedsArgs", r"constructing NeedsArgs\(\) raised TypeError: .*; an op class must construct with "
                         r"no arguments"),
])
def test_each_bad_path_is_one_line_naming_the_path_and_the_fix(path, fix):
    msg = _one_line_error(path)
    assert re.search(fix, msg), msg
    assert type(default_registry().get("widen")).__name__ == "Widen"   # nothing was replaced


def test_a_module_that_fails_on_import_or_whose_decorator_refuses_the_op(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "userops_tmp_raises.py").write_text('raise RuntimeError("needs a GPU\\nsecond line")\n')
    (tmp_path / "userops_tmp_dep.py").write_text("import not_installed_dependency_xyz\n")
    (tmp_path / "userops_tmp_clash.py").write_text(textwrap.dedent("""
        from morphnas.morphism.ops import MorphOp, register_op

        @register_op
        class Mine(MorphOp):
            name = "widen"
    """))
    msg = _one_line_error("userops_tmp_raises:Op")
    assert "importing module 'userops_tmp_raises' raised RuntimeError: needs a GPU; fix the module" in msg
    msg = _one_line_error("userops_tmp_dep:Op")
    assert "cannot import module 'userops_tmp_dep' (No module named 'not_installed_dependency_xyz')" in msg
    msg = _one_line_error("userops_tmp_clash:Mine")
    assert "importing module 'userops_tmp_clash' failed: op 'widen' is registered twice" in msg
    assert "give the new op another name" in msg
    assert type(default_registry().get("widen")).__name__ == "Widen"


def test_a_registration_that_raises(tmp_path, monkeypatch):
    """Another module's op already holds the name in the process-wide registration (not loaded by path)."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "userops_tmp_twin.py").write_text(textwrap.dedent("""
        from _user_op_example import ScaleIdentity
        from morphnas.morphism.ops import register_op

        @register_op
        class Twin(ScaleIdentity):
            name = "scale_broken"
    """))
    importlib.import_module("userops_tmp_twin")
    msg = _one_line_error(BROKEN)
    assert "op 'scale_broken' is registered twice" in msg and "give the new op another name" in msg
    assert "scale_broken" not in default_registry()


# ------------------------------------------------------------------------------------------ actions
def test_an_import_path_key_enables_the_op_and_actions_name_it_by_its_registered_name():
    space = ActionSpace.from_dict({"ops": {GOOD: {"power": [1, 2], "weight": 20}, "widen": {}},
                                   "actions_per_child": [1, 2]})
    assert space.op_names == ["scale_identity", "widen"]
    assert space.op_paths == (GOOD,)
    net = NETS["tiny_resnet"]()
    rng = np.random.default_rng(0)
    mine = [a for _ in range(6) for a in space.sample(net, rng) if a.op == "scale_identity"]
    assert mine and {a.params["power"] for a in mine} <= {1, 2}
    for a in mine[:3]:   # the worker's way: the action's op by name, in the default registry
        a = Action.from_json(json.loads(json.dumps(a.to_json())))
        child, rec = apply_op(net, a.op, a.site, a.params, a.seed)
        assert rec.op == "scale_identity" and rel_err(net, child, torch.float64) <= F64_TOL
    # the resolved config keys the op by its path, so it loads again anywhere, and parses back the same
    resolved = space.to_dict()
    assert list(resolved["ops"]) == [GOOD, "widen"] and resolved["ops"][GOOD]["power"] == [1, 2]
    again = ActionSpace.from_dict(resolved)
    assert again.to_dict() == resolved and again.op_paths == (GOOD,)
    # a list of ops takes paths too; an op enabled by name only has no path to ship
    assert ActionSpace.from_dict({"ops": [BROKEN, "deepen"]}).op_paths == (BROKEN,)
    assert ActionSpace.from_dict({"ops": ["deepen"]}).op_paths == ()


@pytest.mark.parametrize("ops, message", [
    ({GOOD: {"power": [1, 9]}},
     rf"config key 'actions\.ops\.{GOOD}\.power': value 9 is refused by op scale_identity: .*power"),
    ({GOOD: {"powr": 1}}, rf"unknown config key 'actions\.ops\.{GOOD}\.powr' .*did you mean 'power'\?"),
    ({GOOD: {}, "scale_identity": {}},
     rf"config key 'actions\.ops\.scale_identity' enables op 'scale_identity' a second time \(also as '{GOOD}'\); "
     "list each op once"),
    ({"no_such_pkg:MyOp": {}}, r"config key 'actions\.ops\.no_such_pkg:MyOp': op path 'no_such_pkg:MyOp': cannot "
                               r"import module 'no_such_pkg'.*sys\.path"),
    ({f"{MOD}:NotAnOp": {}}, rf"config key 'actions\.ops\.{MOD}:NotAnOp': .* not a MorphOp"),
])
def test_a_bad_user_op_entry_is_one_line_naming_the_key(ops, message):
    with pytest.raises(ActionSpaceError) as info:
        ActionSpace.from_dict({"ops": ops})
    assert "\n" not in str(info.value) and re.search(message, str(info.value)), str(info.value)


def test_a_worker_process_loads_the_ops_and_makes_the_same_child(tmp_path):
    """A fresh interpreter (a worker) runs load_ops(space.op_paths), then applies a sampled action by name."""
    space = ActionSpace.from_dict({"ops": {GOOD: {"power": [1, 3]}}})
    net = NETS["mlp"]()
    action = space.sample(net, np.random.default_rng(3))[0]
    mine, _ = apply_op(net, action.op, action.site, action.params, action.seed)
    script = textwrap.dedent("""
        import json, sys
        from morphnas.morphism.ops import apply_op, load_ops
        from morphnas.morphism.serialize import load_network, save_network
        paths, action, parent, out = json.loads(sys.argv[1])
        print(load_ops(paths))
        child, _ = apply_op(load_network(parent), action["op"], action["site"], action["params"], action["seed"])
        save_network(child, out)
    """)
    parent = save_network(net, tmp_path / "parent")
    arg = json.dumps([list(space.op_paths), action.to_json(), str(parent), str(tmp_path / "child")])
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-c", script, arg], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "('scale_identity',)"
    assert same_tensors(load_network(tmp_path / "child"), mine)


# ------------------------------------------------------------------------------------------ conformance
@pytest.mark.parametrize("net_name", ["mlp", "tiny_resnet"])
def test_check_conformance_passes_for_the_exact_op(net_name):
    net = NETS[net_name]()
    mod = importlib.import_module(MOD)
    for op in (GOOD, mod.ScaleIdentity, mod.ScaleIdentity()):   # an import path, a class, an instance
        check_conformance(op, net, sites=2, seed=1)
    load_op(GOOD)
    check_conformance("scale_identity", net, sites=3)           # a registered name


def test_check_conformance_is_fast_on_a_small_net():
    net = NETS["mlp"]()
    op = importlib.import_module(MOD).ScaleIdentity()
    start = time.perf_counter()
    check_conformance(op, net, sites=2)
    assert time.perf_counter() - start < 1.0


def test_check_conformance_names_the_measured_error_of_a_broken_op():
    op = importlib.import_module(MOD).BrokenScale()
    with pytest.raises(ConformanceError) as info:
        check_conformance(op, NETS["mlp"]())
    msg = str(info.value)
    assert "\n" not in msg
    m = re.fullmatch(r"op scale_broken at site '(fc1|fc2|fc)' of mlp with \{\} fails 'function preserved': "
                     r"float64 relative output error (\S+) > 1e-10; .*", msg)
    assert m, msg
    assert 1e-5 < float(m.group(2)) < 1e-2   # the inverse scale is off by 1e-3


@pytest.mark.parametrize("cls, message", [
    ("NoSites", r"^op no_sites has no site on the seed network mlp; check it on a network where it applies"),
    ("BadSites", r"^op bad_sites on mlp fails 'sites\(\) returns the sites': sites\(net\) returned 2 non-string "
                 r"site\(s\), e\.g\. 1 \(int\)"),
    ("RaisingSites", r"^op raising_sites on mlp fails 'sites\(\) returns the sites': sites\(net\) raised "
                     r"RuntimeError: boom; it must return"),
    ("Mutating", r"^op mutating at site 'fc\d?' of mlp with \{\} fails 'input unchanged'"),
    ("Unseeded", r"^op unseeded at site 'fc\d?' of mlp with \{\} fails 'same seed -> same child'"),
])
def test_check_conformance_names_the_failed_property(cls, message):
    op = getattr(importlib.import_module(MOD), cls)
    with pytest.raises(ConformanceError) as info:
        check_conformance(op, NETS["mlp"]())
    assert "\n" not in str(info.value) and re.search(message, str(info.value)), str(info.value)


def test_check_conformance_refuses_what_is_no_op():
    with pytest.raises(ConformanceError, match=r"check_conformance needs a MorphOp"):
        check_conformance(object(), NETS["mlp"]())
    with pytest.raises(ConformanceError, match=r"sites must be an int >= 1, got 0"):
        check_conformance(importlib.import_module(MOD).ScaleIdentity(), NETS["mlp"](), sites=0)
    with pytest.raises(OpLoadError, match=r"cannot import module 'nope'"):
        check_conformance("nope:Op", NETS["mlp"]())


def test_every_built_in_op_passes_check_conformance_on_tiny_resnet():
    """No false alarms: the built-in ops (exact and approximate) pass wherever they have a site."""
    net = NETS["tiny_resnet"]()
    for op in default_registry():
        if op.sites(net):
            check_conformance(op, net, sites=1)
