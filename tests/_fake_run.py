"""A small fake run for leaderboard / dashboard / export / plot tests (no search, no Ray).

Five members of a 1x8x8 tiny ResNet (perturbed so BN and PReLU are not identities): a seed, three
children, a grandchild, and one failed trial. Results go through the real Leaderboard, so the
study is exactly what a search writes.
"""
from __future__ import annotations

from pathlib import Path

from morphnas.morphism.perturb import perturb
from morphnas.morphism.serialize import save_network
from morphnas.search.state.records import TrialResult
from morphnas.search.state.rundir import RunDir
from morphnas.search.study.leaderboard import Leaderboard
from morphnas.search.study.publish import Publisher
from morphnas.spaces.counting import count
from morphnas.spaces.seeds.builders import cifar_resnet

SEARCH_SPACE = {"op": ["split", "deepen", "widen"], "stage": {"low": 0, "high": 2},
                "position": {"low": 0.0, "high": 1.0}}

# member, parent, state, val acc history, search params, ops
MEMBERS = [
    ("m0", None, "COMPLETE", (0.40, 0.50), {}, ()),
    ("m1", "m0", "COMPLETE", (0.55, 0.625), {"op": "split", "stage": 0, "position": 0.5},
     ({"op": "split", "site": "layer1.0.conv1", "params": {}, "seed": 1},)),
    ("m2", "m0", "COMPLETE", (0.45, 0.60), {"op": "deepen", "stage": 1, "position": 0.0},
     ({"op": "deepen", "site": "layer2.0.conv2", "params": {"k": 3}, "seed": 2},)),
    ("m3", "m1", "FAIL", (0.30,), {"op": "widen", "stage": 2, "position": 1.0},
     ({"op": "widen", "site": "layer3.0.conv1", "params": {}, "seed": 3},)),
    ("m4", "m1", "COMPLETE", (0.70, 0.75), {"op": "deepen", "stage": 2, "position": 0.25},
     ({"op": "deepen", "site": "layer3.0.conv1", "params": {}, "seed": 4},
      {"op": "split", "site": "layer1.0.conv2", "params": {}, "seed": 5})),
]
DEPTH = {"m0": 0, "m1": 1, "m2": 1, "m3": 2, "m4": 2}


def member_net(i: int):
    net = cifar_resnet(depth=8, width=8, in_channels=1, input_size=8, num_classes=10)
    return perturb(net, seed=i)


def results(run: RunDir, multi: bool = False) -> list[TrialResult]:
    out = []
    for i, (mid, parent, state, hist, sp, ops) in enumerate(MEMBERS):
        path = ""
        counts = None
        if state == "COMPLETE":
            net = member_net(i)
            path = str(save_network(net, run.member(mid)))
            counts = count(net)
        values = (hist[-1],) if not multi else (hist[-1], float(counts.params if counts else 0))
        out.append(TrialResult(
            member_id=mid, parent_id=parent, depth=DEPTH[mid], state=state,
            values=values if state == "COMPLETE" else (), val_acc_history=hist, actions=ops, search_params=sp,
            params=counts.params if counts else 0, params_mb=counts.params_mb if counts else 0.0,
            flops=counts.flops if counts else 0, preservation_error=1e-7 * i if state == "COMPLETE" else None,
            epochs=len(hist), wall_time=10.0 + i, member_path=path,
            fail_reason="worker raised RuntimeError: loss is NaN" if state == "FAIL" else "",
            extra={"attempt": 1}))
    return out


def make_fake_run(root: Path, name: str = "fake", multi: bool = False, publish: bool = True):
    """Write config.yaml, the members and the study; returns (run, leaderboard, results)."""
    run = RunDir.at(root / name).make()
    run.config_path.write_text(f"name: {name}\nstrategy: {{name: hill_climb}}\n")
    directions = ["maximize", "minimize"] if multi else ["maximize"]
    names = ["val_acc", "params"] if multi else ["val_acc"]
    lb = Leaderboard.for_run(run, directions, names, search_space=SEARCH_SPACE)
    record = Publisher(lb).record if publish else lb.record
    res = results(run, multi)
    for r in res:
        record(r)
    return run, lb, res
