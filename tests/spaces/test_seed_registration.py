"""A seed is one decorated builder in one file: discovered, built, listed, and refused when wrong."""
from __future__ import annotations

import sys
import textwrap

import pytest

from morphnas.spaces.registry import REGISTRY, SeedRegistrationError, create_seed, discover, list_seeds

SEED_FILE = textwrap.dedent('''
    from morphnas.spaces.seeds.builders import cifar_resnet
    from morphnas.spaces.seeds.catalog import register_seed

    @register_seed("toy_resnet_a", "a test seed", depth=8, width=4, in_channels=1, input_size=8)
    @register_seed("toy_resnet_b", "another name of the same builder", depth=8, width=2, in_channels=1, input_size=8)
    def toy(**kw):
        return cifar_resnet(**kw)
''')


@pytest.fixture
def package(tmp_path, monkeypatch):
    pkg = tmp_path / "toyseeds"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield pkg
    for name in ("toy_resnet_a", "toy_resnet_b", "toy_twice"):
        REGISTRY.unregister(name)
    for m in [m for m in sys.modules if m.startswith("toyseeds")]:
        del sys.modules[m]


def test_one_file_adds_a_seed_and_removing_it_removes_it(package):
    assert list_seeds("toy_*") == []
    (package / "toy.py").write_text(SEED_FILE)
    discover("toyseeds")
    assert list_seeds("toy_*") == ["toy_resnet_a", "toy_resnet_b"]
    a, b = create_seed("toy_resnet_a", num_classes=3), create_seed("toy_resnet_b", num_classes=3)
    assert a.shapes()[a.output_blob] == (3,) and a.num_params() > b.num_params()
    REGISTRY.unregister("toy_resnet_a")
    REGISTRY.unregister("toy_resnet_b")
    assert list_seeds("toy_*") == []
    assert "resnet20" in list_seeds("resnet*") and "tiny_resnet" not in list_seeds("resnet*")


def test_a_seed_file_that_registers_nothing_or_a_name_twice_is_refused(package):
    (package / "empty.py").write_text("X = 1\n")
    with pytest.raises(SeedRegistrationError, match=r"seed module empty.py .* registers no seed"):
        discover("toyseeds")
    (package / "empty.py").unlink()
    (package / "twice.py").write_text(textwrap.dedent('''
        from morphnas.spaces.seeds.builders import cifar_resnet
        from morphnas.spaces.seeds.catalog import register_seed
        register_seed("tiny_resnet")(cifar_resnet)
    '''))
    with pytest.raises(SeedRegistrationError, match=r"'tiny_resnet' is registered twice"):
        discover("toyseeds")
