"""Run plots: lineage layout, Pareto selection, and that the PNGs hold a drawing."""
from __future__ import annotations

import numpy as np
from matplotlib.image import imread

from morphnas.search.study.leaderboard import Row
from morphnas.search.study.plots import _tree_layout, architecture, lineage_tree, pareto_front, pareto_points
from morphnas.spaces.seeds.builders import cifar_resnet


def row(trial, member, parent, acc=0.5, state="COMPLETE", ops=("split",), params=100):
    return Row(trial=trial, member_id=member, parent_id=parent, depth=0, state=state,
               values=(acc,) if state == "COMPLETE" else None, ops="+".join(ops), val_acc=acc, params=params,
               params_mb=None, flops=None, preservation_error=None, member_path="", ops_list=tuple(ops))


TREE = [row(0, "s", None, ops=()), row(1, "a", "s"), row(2, "b", "s"), row(3, "c", "a", state="FAIL"),
        row(4, "d", "a"), row(5, "e", "b"), row(6, "orphan", "gone")]


def test_tree_layout_centres_parents_over_children():
    pos, children = _tree_layout(TREE)
    assert children == {"s": ["a", "b"], "a": ["c", "d"], "b": ["e"], "c": [], "d": [], "e": [], "orphan": []}
    # leaves in depth-first order get x = 0, 1, 2; parents sit at the middle of their children;
    # a member whose parent is not in the run starts a new root
    assert pos == {"c": (0.0, -2.0), "d": (1.0, -2.0), "a": (0.5, -1.0), "e": (2.0, -2.0), "b": (2.0, -1.0),
                   "s": (1.25, -0.0), "orphan": (3.0, -0.0)}


def test_pareto_points_minimise_x_maximise_y():
    pts = [(10, 0.5), (5, 0.4), (20, 0.9), (20, 0.8), (15, 0.45), (5, 0.3), (30, 0.9)]
    assert pareto_points(pts) == [1, 0, 2]
    assert pareto_points([]) == []


def _drawn(path):
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    return img


def test_lineage_and_pareto_png(tmp_path):
    p = lineage_tree(TREE, tmp_path / "sub" / "lineage.png")
    img = _drawn(p)
    # the failed member is drawn in red: some pixels are pure-ish red (0xd62728)
    red = (np.abs(img[..., 0] - 0xd6 / 255) < 0.02) & (np.abs(img[..., 1] - 0x27 / 255) < 0.02)
    assert red.sum() > 20
    q = pareto_front(TREE, tmp_path / "pareto.png")
    assert _drawn(q).std() > 0.05
    empty = pareto_front([], tmp_path / "empty.png")
    assert _drawn(empty).std() > 0.0


def test_lineage_tree_of_many_members_stays_bounded(tmp_path):
    rows = [row(0, "m0", None, ops=())] + [row(i, f"m{i}", f"m{(i - 1) // 3}", acc=i / 200) for i in range(1, 120)]
    img = _drawn(lineage_tree(rows, tmp_path / "big.png"))
    assert img.shape[0] <= 40 * 110 and img.shape[1] <= 40 * 110


def test_architecture_drawing(tmp_path):
    net = cifar_resnet(depth=8, width=8, in_channels=1, input_size=8, num_classes=10)
    p = architecture(net, tmp_path / "arch.png", title="t")
    assert _drawn(p).std() > 0.01


def test_deep_lineage_has_no_recursion_limit():
    rows = [row(0, "m0", None, ops=())] + [row(i, f"m{i}", f"m{i - 1}") for i in range(1, 3000)]
    pos, _ = _tree_layout(rows)
    assert pos["m2999"] == (0.0, -2999.0) and pos["m0"] == (0.0, -0.0)
