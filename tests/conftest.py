"""Shared test set-up: one torch thread (two threads on two shared cores can be 10x slower)."""
import os

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def tiny_resnet():
    """A 3-block CIFAR-style ResNet on 1x8x8 inputs (width 8): fast enough for every test."""
    from morphnas.spaces.builders import cifar_resnet
    return cifar_resnet(depth=8, width=8, in_channels=1, input_size=8, num_classes=10)
