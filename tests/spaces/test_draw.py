"""Drawings: one box per block, morphed paths highlighted; PNG and SVG files."""
import pytest
import torch
from torch import nn

from morphnas.morphism.errors import SpecError
from morphnas.morphism.ops import apply_op
from morphnas.spaces.draw import draw_network, groups
from morphnas.spaces.registry import create_seed


def test_resnet20_boxes_list_every_path():
    boxes = groups(create_seed("resnet20"))
    assert [b.title.split()[0] for b in boxes] == (
        ["stem"] + [f"layer{s}.{i}" for s in (1, 2, 3) for i in range(3)] + ["head"])
    assert [b.stage for b in boxes] == [1, 1, 1, 1, 2, 2, 2, 3, 3, 3, 3]
    assert not any(b.morphed for b in boxes)
    assert [line.text for line in boxes[2].lines] == [
        "├ conv3x3 → bn → prelu → conv3x3 → bn", "├ id", "Σ → prelu"]
    assert [line.text for line in boxes[4].lines] == [
        "├ conv3x3/2 32 → bn → prelu → conv3x3 → bn", "├ conv1x1/2 32 → bn", "Σ → prelu"]
    assert boxes[-1].lines[0].text == "avgpool → flatten → fc 64→10"


def test_variant_highlights_exactly_the_morphed_paths():
    boxes = {b.title.split()[0]: b for b in groups(create_seed("morph20_1c1_2branch"))}
    morphed = sorted(name for name, b in boxes.items() if b.morphed)
    assert morphed == [f"layer{s}.{i}" for s in (1, 2, 3) for i in (1, 2)]
    lines = boxes["layer2.1"].lines
    assert [(line.text, line.morphed) for line in lines] == [
        ("├ conv3x3 → bn → prelu → conv3x3 → bn", False),
        ("├ conv1x1 → bn → prelu → conv1x1 → bn", True),
        ("├ conv1x1 → bn → prelu → conv1x1 → bn", True),
        ("Σ → prelu", False)]
    one = {b.title.split()[0]: b for b in groups(create_seed("morph20_1c1"))}["layer1.1"]
    assert ("├ 0.5·id", True) in [(line.text, line.morphed) for line in one.lines]


def test_base_network_marks_what_a_morph_added():
    net = create_seed("small_cnn")
    child, rec = apply_op(net, "deepen", "features.1.conv1")
    (box,) = groups(child, base=net)
    # deepen (defaults k1 = the conv's 3, k2 = 1): the 3x3 conv 16->32 becomes conv3x3 -> BN ->
    # parametric act -> conv1x1; only that line holds new edges.
    assert [(line.text, line.morphed) for line in box.lines] == [
        ("conv3x3 16 → bn → relu → maxpool2", False),
        ("→ conv3x3 32 → bn → p-relu → conv1x1", True),
        ("→ bn → relu → avgpool → flatten → fc 32→10", False)]
    assert not any(line.morphed for line in groups(net, base=net)[0].lines)


def test_imported_model_without_block_records():
    from morphnas.morphism.importer import from_torch

    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
            self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            x = self.conv(x)
            x = x + self.conv2(x)
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    net = from_torch(Res(), (3, 8, 8))
    (box,) = groups(net)
    texts = [line.text for line in box.lines]
    assert texts[0] == "conv3x3 4" and any(t.startswith("├ conv3x3") for t in texts)
    assert sum(t.startswith("├") for t in texts) == 2


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_files_are_written(tmp_path, suffix):
    out = draw_network(create_seed("morph20_1c1"), tmp_path / f"sub/net.{suffix}")
    data = out.read_bytes()
    if suffix == "png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        import matplotlib.image
        h, w, _ = matplotlib.image.imread(out).shape
        assert h > w > 300  # a single tall column for 11 boxes
    else:
        text = data.decode()
        assert text.lstrip().startswith("<?xml") and "<svg" in text


def test_big_network_uses_columns(tmp_path):
    import matplotlib.image
    out = draw_network(create_seed("resnet110"), tmp_path / "r110.png")
    h, w, _ = matplotlib.image.imread(out).shape
    assert w > 1000 and h < 3 * w


def test_bad_suffix(tmp_path):
    with pytest.raises(SpecError, match=r"must end in \.png or \.svg"):
        draw_network(create_seed("small_cnn"), tmp_path / "net.pdf")


def test_nested_branches_are_indented():
    net = create_seed("resnet20", width=8, input_size=8, in_channels=1)
    child, _ = apply_op(net, "split", "layer1.2.conv2")
    child, _ = apply_op(child, "morph_block", "layer1.2.shortcut", {"branches": 2})
    box = {b.title.split()[0]: b for b in groups(child)}["layer1.2"]
    assert [line.text for line in box.lines] == [
        "├ conv3x3 → bn → prelu", "│ ├ conv3x3", "│ ├ conv3x3", "│ Σ → bn",
        "├ conv1x1 → bn → prelu → conv1x1 → bn", "├ conv1x1 → bn → prelu → conv1x1 → bn", "Σ → prelu"]
    assert [line.morphed for line in box.lines] == [False, False, True, False, True, True, False]
