"""A dataset is one decorated loader in one file: discovered, loaded, named in the config, refused when wrong."""
from __future__ import annotations

import sys
import textwrap

import pytest

from morphnas.search.config import ConfigError, config_from_dict
from morphnas.search.data.core import load_data
from morphnas.search.data.registry import (DatasetRegistrationError, dataset_names, discover,
                                           unregister_dataset)

DATASET_FILE = textwrap.dedent('''
    import torch
    from morphnas.search.data.registry import register_dataset

    @register_dataset("toy_stripes", raw_max=1.0, channels="grey", class_names=["flat", "striped"])
    def stripes(cfg, seed):
        """Flat or striped 6x6 images."""
        g = torch.Generator().manual_seed(0)
        y = torch.arange(200) % 2
        x = torch.rand(200, 1, 6, 6, generator=g) * 0.1
        x[y == 1, :, ::2, :] += 0.8
        return x[:160], y[:160], x[160:], y[160:]
''')


@pytest.fixture
def package(tmp_path, monkeypatch):
    pkg = tmp_path / "toydata"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield pkg
    unregister_dataset("toy_stripes")
    for m in [m for m in sys.modules if m.startswith("toydata")]:
        del sys.modules[m]


def test_one_file_adds_a_dataset_and_removing_it_removes_it(package):
    with pytest.raises(ConfigError, match=r"'data.dataset': unknown value 'toy_stripes'"):
        config_from_dict({"name": "t", "data": {"dataset": "toy_stripes"}})
    (package / "stripes.py").write_text(DATASET_FILE)
    discover("toydata")
    assert "toy_stripes" in dataset_names()
    cfg = config_from_dict({"name": "t", "data": {"dataset": "toy_stripes", "val_fraction": 0.25}})
    data = load_data(cfg.data, seed=0)
    assert (len(data.train), len(data.val), len(data.test)) == (120, 40, 40)
    assert data.num_classes == 2 and data.input_shape == (1, 6, 6)
    assert data.preprocess["class_names"] == ["flat", "striped"] and data.preprocess["raw_range"] == [0.0, 1.0]
    unregister_dataset("toy_stripes")
    assert "toy_stripes" not in dataset_names()


def test_a_dataset_file_that_registers_nothing_is_refused(package):
    (package / "nothing.py").write_text("X = 1\n")
    with pytest.raises(DatasetRegistrationError, match=r"dataset module nothing.py .* registers no dataset"):
        discover("toydata")


def test_the_built_in_datasets_are_registered_one_file_each():
    assert {"digits", "mnist5k", "cifar10", "cifar100", "mnist", "fashion_mnist", "svhn", "image_folder"} <= \
        set(dataset_names())
