"""Shared test set-up: one torch thread (two threads on two shared cores can be 10x slower), and
the scheduling of ``make test``'s two pytest-xdist workers (``-n 2 --dist loadfile``).

Why the Ray tests run one after another on one worker: each starts its own Ray (or a two-node
cluster, or a driver in a subprocess) sized for this 2-core machine, and several prove
timing-dependent behaviour (two trials side by side, a trial landing on the second node, kill -9
in the middle of a trial). Two of them at once would compete for the same two cores. So every test
file that uses the ``ray`` marker is one work unit, sent first (it is the longest); the other
worker takes the remaining files one at a time (a file stays on one worker, so module fixtures
are built once and tests run in file order, as without xdist). xdist's own ``xdist_group`` mark
cannot do this here: with pytest 9 its ``loadgroup`` mode no longer sees the group in the test ids.
"""
import os
import re
import subprocess
from pathlib import Path

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

RAY_UNIT = "ray tests (one worker, one at a time)"
_USES_RAY = re.compile(r"\bmark\.ray\b")


@pytest.fixture
def tiny_resnet():
    """A 3-block CIFAR-style ResNet on 1x8x8 inputs (width 8): fast enough for every test."""
    from morphnas.spaces.seeds.builders import cifar_resnet
    return cifar_resnet(depth=8, width=8, in_channels=1, input_size=8, num_classes=10)


@pytest.fixture
def small_disk(tmp_path):
    """``small_disk(size)``: a fresh folder on a tmpfs of ``size`` (e.g. ``"512k"``), unmounted after the
    test: a disk that fills up. Skips (saying why) where mounting is impossible; CI runs as root."""
    mounted = []

    def mount(size: str) -> Path:
        d = tmp_path / f"disk{len(mounted)}"
        d.mkdir()
        if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(d)],
                          capture_output=True).returncode:
            pytest.skip("cannot mount a size-limited tmpfs here (needs root); the full-disk path is what this exercises")
        mounted.append(d)
        return d
    yield mount
    for d in mounted:
        subprocess.run(["umount", "-l", str(d)], capture_output=True)


# ----------------------------------------------------------------------------- pytest-xdist scheduling
def pytest_collection_modifyitems(config, items):
    """Files marked ``ray_fresh`` first, always: they join a Ray cluster of their own, which fails
    in a process where a local Ray already ran (Ray keeps per-process state after ``ray.shutdown``
    that a later ``ray.init(address=...)`` trips over). On an xdist worker then: Ray tests, files
    with ``slow`` tests, the rest (file order kept within each), so the scheduler below hands out the
    longest work first."""
    xdist = hasattr(config, "workerinput")

    def rank(item):
        if item.get_closest_marker("ray_fresh"):
            return -1
        if not xdist:
            return 2
        return 0 if item.get_closest_marker("ray") else 1 if item.get_closest_marker("slow") else 2
    first = {}
    for item in items:       # a file's rank is its most urgent test's
        path = item.nodeid.split("::", 1)[0]
        first[path] = min(first.get(path, 2), rank(item))
    items.sort(key=lambda item: first[item.nodeid.split("::", 1)[0]])   # stable: file order otherwise


@pytest.hookimpl(optionalhook=True)      # a hook of pytest-xdist; without xdist it is never called
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class RayFileScheduling(LoadFileScheduling):
        """``--dist loadfile`` where all files using the ``ray`` marker count as one file; work units
        go out in collection order (ordered above) instead of by number of tests."""

        def __init__(self, config, log=None):
            super().__init__(config, log)
            config.option.loadscopereorder = False
            self._ray_files: dict[str, bool] = {}

        def _split_scope(self, nodeid):
            path = super()._split_scope(nodeid)
            if path not in self._ray_files:
                f = Path(config.rootpath, path)
                self._ray_files[path] = f.is_file() and bool(_USES_RAY.search(f.read_text(errors="replace")))
            return RAY_UNIT if self._ray_files[path] else path

    return RayFileScheduling(config, log)
