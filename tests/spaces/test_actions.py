"""The action space: config errors, sampling valid actions from an explicit rng, constraints,
site filters and the fixed-domain sampler params."""
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from morphnas.morphism.ops import apply_op, default_registry
from morphnas.morphism.verify import output_diff
from morphnas.spaces.actions import (
    Action,
    ActionSpace,
    ActionSpaceError,
    ConstraintViolation,
    Domain,
    NoValidAction,
    parse_domain,
)
from morphnas.spaces.actions.sites import Where, stage_map
from morphnas.spaces.counting import count
from morphnas.spaces.registry import REGISTRY, create_seed

# Every shipped op but `module` (it needs a module file; its own tests cover it), with domains.
ALL_OPS = {
    "deepen": {"k2": [1, 3]}, "widen": {"factor": [1.5, 2.0]}, "insert_path": {"k1": [1, 3]},
    "morph_block": {"k1": [1, 3], "k2": [1, 3], "branches": [1, 2]}, "insert_layer": {"k": [1, 3]},
    "split": {"mode": ["scale", "random"]}, "enlarge_kernel": {}, "activation": {}, "insert_bn": {},
    "split_identity": {"ratio": {"low": 0.2, "high": 0.8}},
}
SMALL_SEEDS = {
    "tiny_resnet": {}, "small_cnn": {},
    "resnet20": {"width": 8, "input_size": 8, "in_channels": 1},
}


def space(**extra):
    return ActionSpace.from_dict({"ops": {k: v for k, v in ALL_OPS.items() if k in default_registry()},
                                  "actions_per_child": [1, 3], **extra})


def seed_net(name):
    return create_seed(name, **SMALL_SEEDS[name])


def same_net(a, b):
    return a.edge_names() == b.edge_names() and all(
        torch.equal(t, b.state_dict()[k]) for k, t in a.state_dict().items())


# --------------------------------------------------------------------------- config errors
# Each message is one line naming the key, the value and the fix.
@pytest.mark.parametrize("cfg, match", [
    ({"opz": {}}, r"unknown config key 'actions.opz'; did you mean 'actions.ops'\?"),
    ({"ops": {"deepn": {}}}, r"'actions.ops.deepn': unknown morph op 'deepn'; did you mean 'deepen'\?"),
    ({"ops": {"widen": {"factr": 2}}}, r"unknown config key 'actions.ops.widen.factr' .*did you mean 'factor'\?"),
    ({"ops": {"split_identity": {"ratio": [0.5, 1.5]}}},
     r"'actions.ops.split_identity.ratio': value 1.5 is refused by op split_identity"),
    ({"ops": {"widen": {"factor": {"low": 3, "high": 2}}}},
     r"'actions.ops.widen.factor' must have low <= high, got low=3, high=2; swap them"),
    ({"ops": {"widen": {"factor": {"low": 3}}}}, r"'actions.ops.widen.factor' must give both 'low' and 'high'"),
    ({"ops": {"widen": {"factor": {"low": 1, "hi": 2}}}}, r"'actions.ops.widen.factor.hi'; did you mean"),
    ({"ops": {"widen": {"factor": []}}}, r"'actions.ops.widen.factor' must be a non-empty list of choices, got \[\]"),
    ({"ops": {"widen": {"factor": [2, 2]}}}, r"'actions.ops.widen.factor' must list each choice once, got \[2, 2\]"),
    ({"ops": ["widen"], "constraints": {"max_flop": 1}}, r"did you mean 'actions.constraints.max_flops'\?"),
    ({"ops": ["widen"], "constraints": {"max_params": -1}},
     r"'actions.constraints.max_params' must be > 0, got -1; give a positive bound"),
    ({"ops": ["widen"], "constraints": {"max_params_mb": 0}}, r"'actions.constraints.max_params_mb' must be > 0, got 0"),
    ({"ops": ["widen"], "constraints": {"max_depth": 2.5}}, r"'actions.constraints.max_depth' must be an integer, got 2.5"),
    ({"ops": ["widen"], "where": {"stage": [1]}}, r"unknown config key 'actions.where.stage'; did you mean 'actions.where.stages'\?"),
    ({"ops": ["widen"], "where": {"stages": [-1]}}, r"'actions.where.stages' must be stage numbers >= 0 .*got \[-1\]"),
    ({"ops": ["widen"], "where": "anny"}, r"'actions.where': unknown value 'anny'; did you mean 'any'\? \(or give a mapping"),
    ({"ops": {"widen": {"where": "al"}}}, r"'actions.ops.widen.where': unknown value 'al'; choose from: any"),
    ({"ops": ["widen"], "actions_per_child": [3, 1]},
     r"'actions.actions_per_child' must be an int >= 1 or \[min, max\] with 1 <= min <= max, got \[3, 1\]"),
    ({"ops": ["widen"], "actions_per_child": 0}, r"'actions.actions_per_child' must be an int >= 1 .*got \[0, 0\]"),
    ({"ops": ["widen"], "max_tries": 0}, r"'actions.max_tries' must be >= 1, got 0"),
    ({"ops": ["widen"], "max_tries": True}, r"'actions.max_tries' must be an integer, got True"),
    ({"ops": {"widen": {"weight": 0}}}, r"'actions.ops.widen.weight' must be > 0, got 0"),
    ({"ops": {"widen": "fast"}}, r"'actions.ops.widen' must be a mapping of parameter domains, got 'fast'"),
    ({"ops": {}}, r"'actions.ops' must be a non-empty mapping .* enable at least one of: "),
    ({}, r"'actions.ops' is missing; list the morph ops"),
    ("deepen", r"'actions' must be a mapping of keys to values, got 'deepen'"),
])
def test_config_errors_name_the_key(cfg, match):
    with pytest.raises(ActionSpaceError, match=match) as info:
        ActionSpace.from_dict(cfg)
    assert "\n" not in str(info.value)


def test_unknown_op_is_rejected_with_a_close_match():
    with pytest.raises(ActionSpaceError, match=r"unknown morph op 'morph_blok'; did you mean 'morph_block'\?"):
        ActionSpace.from_dict({"ops": ["deepen", "morph_blok"]})
    known = ", ".join(sorted(default_registry().names()))
    with pytest.raises(ActionSpaceError, match=f"unknown morph op 'zzz'; known ops: {known}$"):
        ActionSpace.from_dict({"ops": ["zzz"]})


def test_every_listed_param_value_goes_through_the_op():
    """A domain value the op's own ``parse_params`` refuses fails when the config is read, whatever
    its position in the list (not when a search happens to draw it)."""
    for listed in (["scale", "bogus"], ["bogus", "scale"]):
        with pytest.raises(ActionSpaceError, match=r"'actions.ops.split.mode': value 'bogus' is refused by op split"):
            ActionSpace.from_dict({"ops": {"split": {"mode": listed}}})
    with pytest.raises(ActionSpaceError, match=r"'actions.ops.split_identity.ratio': value 1.5 is refused"):
        ActionSpace.from_dict({"ops": {"split_identity": {"ratio": {"low": 0.2, "high": 1.5}}}})
    ok = ActionSpace.from_dict({"ops": {"split": {"mode": ["scale", "random"]}}})
    assert ok.ops[0].domains["mode"] == Domain("categorical", choices=("scale", "random"))


def test_config_forms_and_resolved_dict():
    sp = ActionSpace.from_dict({"ops": ["split_identity", "widen"], "actions_per_child": 2,
                                "constraints": {"max_params": "1e6", "max_depth": 40}})  # YAML's "1e6"
    assert sp.op_names == ["split_identity", "widen"]
    assert sp.actions_per_child == (2, 2)
    assert sp.constraints.max_params == 1_000_000 and sp.constraints.max_flops is None
    assert ActionSpace.from_dict({"ops": ["widen"], "constraints": {"max_flops": 6.0e7}}).constraints.max_flops == 60_000_000
    d = ActionSpace.from_dict({"ops": {"widen": {"factor": [1.5, 2.0], "weight": 3, "where": {"stages": [2]}}}}).to_dict()
    assert d["ops"]["widen"] == {"factor": [1.5, 2.0], "weight": 3.0, "where": {"stages": [2]}}
    assert ActionSpace.from_dict(d).to_dict() == d  # the resolved config reads back the same
    assert parse_domain({"low": 1, "high": 4}, "x") == Domain("int", low=1, high=4)
    assert parse_domain({"low": 1, "high": 4.5}, "x") == Domain("float", low=1.0, high=4.5)
    assert parse_domain(3, "x").choices == (3,)
    # An op's `where` replaces the section's; `where: any` (or null) on an op lifts it.
    sp = ActionSpace.from_dict({"ops": {"widen": {}, "deepen": {"where": "any"}, "split": {"where": None},
                                        "insert_bn": {"where": {"stages": 1}}}, "where": {"stages": [3]}})
    assert [o.where for o in sp.ops] == [Where(stages=(3,)), Where(), Where(), Where(stages=(1,))]


# --------------------------------------------------------------------------- sampling
def test_sampling_is_deterministic_in_the_rng_and_replays():
    net = seed_net("resnet20")
    sp = space()
    a = sp.sample_proposal(net, np.random.default_rng(7))
    b = sp.sample_proposal(net, np.random.default_rng(7))
    assert a.actions == b.actions and a.search_params == b.search_params
    assert 1 <= len(a.actions) <= 3
    child = net
    for act in a.actions:
        child, _ = apply_op(child, act.op, act.site, act.params, act.seed)
    assert same_net(child, a.child)
    assert a.counts == count(child)
    assert [Action.from_json(x.to_json()) for x in a.actions] == list(a.actions)
    draws = {tuple((x.op, x.site) for x in sp.sample(net, np.random.default_rng(s))) for s in range(8)}
    assert len(draws) >= 6  # different rngs explore different actions


@settings(max_examples=24, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SMALL_SEEDS)), seed=st.integers(0, 2**32 - 1))
def test_property_never_proposes_what_the_engine_rejects(name, seed):
    """Every sampled action applies (op accepts it, lint passes), the child meets the
    constraints, and computes the parent's function."""
    net = seed_net(name)
    sp = space(constraints={"max_params": int(count(net).params * 1.6)})
    s = sp.sample_proposal(net, np.random.default_rng(seed))
    child = net
    for act in s.actions:
        assert act.site in default_registry().get(act.op).sites(child)
        child, rec = apply_op(child, act.op, act.site, act.params, act.seed)
    assert same_net(child, s.child)
    assert not sp.violations(child) and count(child).params <= sp.constraints.max_params
    assert output_diff(net, child, batch=2).rel_err <= 1e-4


@settings(max_examples=16, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SMALL_SEEDS)), data=st.data())
def test_property_fixed_domain_params_map_to_valid_actions(name, data):
    net = seed_net(name)
    sp = space()
    domains = sp.param_domains(net)
    params = {}
    for k, d in domains.items():
        if d.kind == "categorical":
            params[k] = data.draw(st.sampled_from(d.choices), label=k)
        elif d.kind == "int":
            params[k] = data.draw(st.integers(int(d.low), int(d.high)), label=k)
        else:
            params[k] = data.draw(st.floats(d.low, d.high), label=k)
    try:
        s = sp.actions_from_params(net, params, seed=3)
    except NoValidAction:
        return  # e.g. morph_block asked of a network without identity shortcuts: a clean refusal
    assert len(s.actions) == params.get("n_actions", 1)
    child = net
    for act in s.actions:
        child, _ = apply_op(child, act.op, act.site, act.params, act.seed)
    assert same_net(child, s.child)


@pytest.mark.parametrize("name", REGISTRY.names())
def test_every_seed_gets_valid_actions(name):
    """Full-size seeds (ImageNet ones at 64x64 to stay fast): one proposal each, replayed."""
    net = create_seed(name, **({"input_size": 64} if name in ("resnet18", "resnet34") else {}))
    s = space().sample_proposal(net, np.random.default_rng(11))
    child = net
    for act in s.actions:
        child, _ = apply_op(child, act.op, act.site, act.params, act.seed)
    assert same_net(child, s.child)


def test_sampled_search_params_map_back_to_the_same_actions():
    net = seed_net("resnet20")
    sp = space()
    for seed in range(6):
        s = sp.sample_proposal(net, np.random.default_rng(seed))
        domains = sp.param_domains(net)
        assert set(s.search_params) <= set(domains)
        back = sp.actions_from_params(net, s.search_params, seed=0)
        assert [(a.op, a.site, a.params) for a in back.actions] == [(a.op, a.site, a.params) for a in s.actions]


def test_param_domains_are_fixed_across_parents():
    net = seed_net("resnet20")
    sp = space()
    d0 = sp.param_domains(net)
    child = sp.sample_proposal(net, np.random.default_rng(1)).child
    assert sp.param_domains(child) == d0
    assert d0["a0_op"].choices == tuple(sp.op_names)
    assert (d0["a0_stage"].low, d0["a0_stage"].high) == (1, 3)
    assert d0["n_actions"] == Domain("int", low=1, high=3)
    assert d0["a2_morph_block_branches"].choices == (1, 2)
    assert "a0_enlarge_kernel_k" not in d0  # single-valued params are not sampler parameters


# --------------------------------------------------------------------------- constraints and filters
def test_constraints_are_checked_before_training():
    net = seed_net("resnet20")
    p = count(net).params
    sp = ActionSpace.from_dict({"ops": {"widen": {"factor": 2.0}}, "constraints": {"max_params": p + 10}})
    with pytest.raises(NoValidAction, match="max_params"):
        sp.sample(net, np.random.default_rng(0))  # every widen breaks the bound
    big = Action("widen", "layer3.1.sum", {"factor": 2.0})
    assert not sp.cost_ok(net, [big])
    with pytest.raises(ConstraintViolation, match=r"params \d+ > max_params"):
        sp.check(net, [big])
    loose = ActionSpace.from_dict({"ops": ["split_identity"], "constraints": {"max_depth": 20}})
    assert loose.cost_ok(net, [Action("split_identity", "layer1.1.shortcut")])
    assert loose.check(net).params == p
    # Deepening any conv on the longest path (not a projection shortcut) makes ResNet-20 21 deep.
    deep = ActionSpace.from_dict({"ops": {"deepen": {"where": {"exclude": ["*.downsample.*"]}}},
                                  "constraints": {"max_depth": 20}})
    with pytest.raises(NoValidAction, match="depth 21 > max_depth 20"):
        deep.sample(net, np.random.default_rng(0))
    tight = ActionSpace.from_dict({"ops": ["split_identity"], "constraints": {"max_flops": 1000}})
    with pytest.raises(NoValidAction, match=r"the parent already breaks the constraints \(flops"):
        tight.sample(net, np.random.default_rng(0))


def test_where_filters_sites():
    net = seed_net("resnet20")
    stages = stage_map(net)
    assert stages["conv1" and "stem.c1"] == 1 and stages["layer2.0.sum"] == 2 and stages["output"] == 3
    sp = ActionSpace.from_dict({"ops": {"morph_block": {}, "deepen": {"where": {"blocks": ["layer1.*"]}}},
                                "where": {"stages": [3]}})
    assert [i.site for i in sp.sites(net, "morph_block")] == ["layer3.1.shortcut", "layer3.2.shortcut"]
    assert {i.block for i in sp.sites(net, "deepen")} == {"layer1.0", "layer1.1", "layer1.2"}
    for seed in range(5):
        for a in sp.sample(net, np.random.default_rng(seed)):
            assert a.site.startswith("layer3.") if a.op == "morph_block" else a.site.startswith("layer1.")
    ex = ActionSpace.from_dict({"ops": ["split_identity"], "where": {"exclude": ["layer1.*", "layer2.*"]}})
    assert [i.site for i in ex.sites(net, "split_identity")] == ["layer3.1.shortcut", "layer3.2.shortcut"]
    none = ActionSpace.from_dict({"ops": ["morph_block"], "where": {"stages": [0]}})
    with pytest.raises(NoValidAction, match="no enabled op has a site"):
        none.sample(net, np.random.default_rng(0))


def test_imagenet_stem_is_stage_zero():
    net = create_seed("resnet18", input_size=64)
    s = stage_map(net)
    assert (s["stem.c1"], s["stem.out"], s["layer1.0.out"], s["layer4.1.out"], s["output"]) == (0, 1, 1, 4, 4)
    assert stage_map(create_seed("small_cnn"))["features.1.c1"] == 2
