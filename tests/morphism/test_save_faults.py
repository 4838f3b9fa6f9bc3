"""Saving a network on a full disk (issue 23): one line naming the filesystem and its free space, no
half-written file left, and the same directory saves whole once there is room."""
from __future__ import annotations

import pytest

from morphnas.morphism.errors import MorphnasError
from morphnas.morphism.serialize import load_network, save_network
from morphnas.spaces.registry import create_network


def test_a_full_disk_is_one_line_and_leaves_nothing_partial(small_disk):
    small_disk = small_disk("512k")
    big = create_network("resnet20")                     # ~1.1 MB of weights: more than the disk holds
    with pytest.raises(MorphnasError) as e:
        save_network(big, small_disk / "m1")
    msg = str(e.value)
    assert "\n" not in msg and "no space left on the filesystem holding it" in msg and "MiB free of 0.5 MiB" in msg
    assert "morphnas resume" in msg
    assert list(small_disk.iterdir()) == [], "no half-written member folder, file or staging folder"
    small = create_network("tiny_resnet")
    save_network(small, small_disk / "m1")               # the same folder, now with room: saved whole
    assert load_network(small_disk / "m1").num_params() == small.num_params()


def test_leftovers_of_a_crashed_save_do_not_block_the_next(tmp_path):
    d = tmp_path / "m2"
    d.mkdir()
    (d / "weights.pt.tmp").write_bytes(b"torn")          # what kill -9 in the middle of a save leaves
    net = create_network("tiny_resnet")
    save_network(net, d)
    assert sorted(p.name for p in d.iterdir()) == ["network.json", "weights.pt"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(MorphnasError, match="refusing to save into"):
        save_network(net, tmp_path / "other")            # a folder of the user's is still refused


def test_a_new_network_appears_whole_and_a_crashed_staging_folder_is_cleared(tmp_path):
    (tmp_path / ".m3.saving-99999").mkdir()               # kill -9 in the middle of writing a new member
    (tmp_path / ".m3.saving-99999" / "weights.pt").write_bytes(b"torn")
    net = create_network("tiny_resnet")
    save_network(net, tmp_path / "m3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m3"]
    assert sorted(p.name for p in (tmp_path / "m3").iterdir()) == ["network.json", "weights.pt"]
    save_network(net, tmp_path / "m3")                    # an existing network is replaced in place
    assert load_network(tmp_path / "m3").num_params() == net.num_params()
