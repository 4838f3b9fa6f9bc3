"""Fine-tuning a morphed network at a low LR does not make the loss jump above the parent's.

Offline data: scikit-learn's 8x8 digits. The parent (``tiny_resnet``) is trained briefly, then
morphed (``morph_block`` 1c1 and a Net2Net ``widen`` with random shares), and parent and child are
fine-tuned on the same batches at 1/10 of the parent's LR (Net2Net's advice).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from morphnas.morphism.compile import compile_network, sync_from_module
from morphnas.morphism.identity import calibrate_identity_bns
from morphnas.morphism.ops import apply_op
from morphnas.spaces.registry import create_network

LR = 0.05


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0
    x = (x - x.mean()) / x.std()
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    tr, te = perm[:1500], perm[1500:]
    return x[tr], y[tr], x[te], y[te]


def _train(net, data, steps: int, lr: float, seed: int):
    """SGD (momentum 0.9, wd 1e-4) in train mode; the held-out loss after every step."""
    xtr, ytr, xte, yte = data
    m = compile_network(net)
    opt = torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(xtr), (64,), generator=gen)
        m.train()
        loss = F.cross_entropy(m(xtr[idx]), ytr[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(_loss(m, xte, yte))
    return sync_from_module(net, m), losses


@torch.no_grad()
def _loss(module, x, y) -> float:
    return F.cross_entropy(module.eval()(x), y).item()


@pytest.fixture(scope="module")
def parent(digits):
    net, losses = _train(create_network("tiny_resnet"), digits, 100, LR, seed=0)
    assert losses[-1] < 0.5 < losses[0]  # it learned something: a meaningful parent
    return net


def test_morphed_child_starts_at_the_parents_loss_and_does_not_jump(parent, digits):
    xtr, _, xte, yte = digits
    child, rec = apply_op(parent, "morph_block", "layer1.0.shortcut", {}, seed=0)
    child, _ = apply_op(child, "widen", "layer2.0.sum", {"split": "random"}, seed=0)
    l0 = _loss(compile_network(parent), xte, yte)
    assert _loss(compile_network(child), xte, yte) == pytest.approx(l0, rel=1e-5)

    _, parent_curve = _train(parent, digits, 20, LR / 10, seed=1)
    _, child_curve = _train(child, digits, 20, LR / 10, seed=1)
    # inserted BNs start at made-up statistics (mean 0, var 1), which batch statistics replace in
    # train mode: a small bump at most, and the child is below the parent's start after 20 steps
    # (where it ends after 20 steps is within that bump's noise, so the test asks that it gets below
    # the parent's start at some point, not at the last step)
    assert max(child_curve) <= l0 * 1.1
    assert min(child_curve) < l0
    # with statistics of a training batch the child follows the parent's curve closely
    calibrated = calibrate_identity_bns(child, rec.new_edges, xtr[:256])
    assert _loss(compile_network(calibrated), xte, yte) == pytest.approx(l0, rel=1e-5)
    _, cal_curve = _train(calibrated, digits, 20, LR / 10, seed=1)
    assert max(cal_curve) <= l0 * 1.02
    assert cal_curve[-1] < l0 and abs(cal_curve[-1] - parent_curve[-1]) <= 0.05 * l0
    assert all(abs(c - p) <= 0.1 * p for c, p in zip(cal_curve, parent_curve))
