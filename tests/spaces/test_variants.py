"""Paper variants: derived from their seed by morph_block, computing the seed's function."""
import pytest
import torch

from morphnas.morphism.errors import MorphnasError
from morphnas.morphism.layers import Conv2d, Identity
from morphnas.morphism.perturb import perturb
from morphnas.morphism.verify import output_diff
from morphnas.spaces.registry import UnknownName, create_seed
from morphnas.spaces.seeds.variants import PAPER_VARIANTS, VariantNameError, VariantSpec, derive_variant, parse_variant

# Blocks per stage of the seeds: CIFAR ResNet-<depth> has (depth - 2) / 6 in each of 3 stages;
# ImageNet ResNet-18/34 have torchvision's [2, 2, 2, 2] and [3, 4, 6, 3].
STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def expected_blocks(name: str) -> int:
    """Blocks the paper morphs, from the definition: index >= 1 within each stage (odd indices only
    for _half)."""
    spec = parse_variant(name)
    stages = STAGE_BLOCKS.get(spec.depth) or (((spec.depth - 2) // 6,) * 3)
    return sum(sum(1 for i in range(1, n) if not spec.half or i % 2 == 1) for n in stages)


def test_expected_blocks_formula():
    # ResNet-110: 18 blocks a stage, 17 morphed (9 odd); the paper's table lists these networks.
    assert [expected_blocks(n) for n in ("morph110_1c1", "morph110_1c1_half", "morph20_1c1", "morph34_1c1")] == [
        3 * 17, 3 * 9, 3 * 2, 2 + 3 + 5 + 2]


def test_parse_names():
    assert parse_variant("morph20_1c1") == VariantSpec("morph20_1c1", 20, 1, 1, 1, False)
    assert parse_variant("morph20_3c3") == VariantSpec("morph20_3c3", 20, 3, 3, 1, False)
    assert parse_variant("morph56_1c1_half") == VariantSpec("morph56_1c1_half", 56, 1, 1, 1, True)
    assert parse_variant("morph20_1c1_2branch_half").branches == 2
    assert parse_variant("resnet20") is None
    with pytest.raises(VariantNameError, match="unknown suffix '_2brnch'; did you mean '_2branch'"):
        parse_variant("morph20_1c1_2brnch")
    with pytest.raises(VariantNameError, match="odd"):
        parse_variant("morph20_2c1")
    with pytest.raises(VariantNameError, match="repeated"):
        parse_variant("morph20_1c1_half_half")
    with pytest.raises(UnknownName, match="no seed 'resnet22'"):
        create_seed("morph22_1c1")


def test_half_selects_odd_blocks():
    spec = parse_variant("morph56_1c1_half")
    assert [i for i in range(9) if spec.selects({"index": i})] == [1, 3, 5, 7]
    assert [i for i in range(9) if parse_variant("morph56_1c1").selects({"index": i})] == list(range(1, 9))


@pytest.mark.parametrize("name", PAPER_VARIANTS)
def test_paper_variant_preserves_its_seed(name):
    spec = parse_variant(name)
    variant = create_seed(name)
    seed = create_seed(spec.seed_name)
    assert variant.meta["name"] == name and variant.meta["variant"]["seed"] == spec.seed_name
    morphed = variant.meta["variant"]["morphed_blocks"]
    assert len(morphed) == expected_blocks(name)
    blocks = {b["name"]: b for b in seed.meta["blocks"]}
    assert all(spec.selects(blocks[s.rsplit(".", 1)[0]]) for s in morphed)
    # Structure of every morphed block: the new convs have kernels k1, k2 at the block width.
    seed_edges = set(seed.edge_names())
    for site in morphed:
        block = site.rsplit(".", 1)[0]
        new = [variant.edge(n) for n in variant.edge_names() if n.startswith(block + ".") and n not in seed_edges]
        convs = [e.layer for e in new if isinstance(e.layer, Conv2d)]
        width = seed.shapes()[blocks[block]["sum"]][0]
        assert sorted(c.kernel_size for c in convs) == sorted([spec.k1, spec.k2] * spec.branches)
        assert all(c.in_channels == c.out_channels == width and c.stride == 1 for c in convs)
        ids = [variant.edge(n).layer for n in variant.edge_names()
               if n.startswith(block + ".") and isinstance(variant.edge(n).layer, Identity)]
        assert [i.scale for i in ids] == ([0.5] if spec.branches == 1 else [])
    d = output_diff(seed, variant, batch=2)
    assert d.rel_err <= 1e-5, d


@pytest.mark.parametrize("name", ["morph20_1c1", "morph20_3c1", "morph20_3c3", "morph20_1c1_2branch",
                                  "morph56_1c1_half"])
def test_variant_of_a_perturbed_seed_is_exact(name):
    """Non-trivial BN statistics and PReLU slopes: float64 to 1e-10, float32 to 1e-5."""
    spec = parse_variant(name)
    small = dict(width=8, in_channels=1, input_size=8)
    seed64 = perturb(create_seed(spec.seed_name, dtype="float64", **small), seed=1)
    v64 = derive_variant(seed64, spec, seed=5)
    assert v64.dtype == torch.float64
    assert output_diff(seed64, v64, dtype=torch.float64).rel_err <= 1e-10
    seed32 = perturb(create_seed(spec.seed_name, **small), seed=1)
    assert output_diff(seed32, derive_variant(seed32, spec, seed=5)).rel_err <= 1e-5


def test_variant_is_deterministic_and_takes_seed_overrides():
    a = create_seed("morph20_3c1", width=8, input_size=8, in_channels=1, num_classes=100, seed=2)
    b = create_seed("morph20_3c1", width=8, input_size=8, in_channels=1, num_classes=100, seed=2)
    assert a.edge_names() == b.edge_names()
    assert all(torch.equal(t, b.state_dict()[k]) for k, t in a.state_dict().items())
    assert a.shapes()[a.output_blob] == (100,)
    assert a.meta["variant"]["records"][0]["op"] == "morph_block"


def test_variant_without_eligible_blocks_is_refused():
    seed = create_seed("tiny_resnet")  # one block per stage: nothing with index >= 1
    with pytest.raises(MorphnasError, match="nothing to morph"):
        derive_variant(seed, parse_variant("morph8_1c1"))
