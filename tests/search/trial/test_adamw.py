"""``optimizer: adamw`` (issue 25): a seed or fine-tune option next to SGD, carried into the job's
TrainSpec only when set (SGD jobs stay exactly as they were), refused in one line when unknown."""
from __future__ import annotations

import pytest
import torch

from morphnas.morphism.compile import compile_network
from morphnas.search.config import config_from_dict
from morphnas.search.errors import ConfigError
from morphnas.search.trial.jobs import seed_job
from morphnas.search.trial.train import TrainError, TrainSpec, make_optimizer
from morphnas.spaces.registry import create_network


def test_adamw_decays_weights_only_and_sgd_stays_the_default():
    gm = compile_network(create_network("tiny_vit", input_size=14, patch=7, dim=16, mlp_dim=32))
    opt = make_optimizer(gm, TrainSpec(1, 1e-3, weight_decay=0.05, optimizer="adamw"))
    assert type(opt) is torch.optim.AdamW
    decayed, other = opt.param_groups
    assert decayed["weight_decay"] == 0.05 and other["weight_decay"] == 0.0 and decayed["lr"] == 1e-3
    assert all(p.ndim > 1 for p in decayed["params"]) and all(p.ndim <= 1 for p in other["params"])
    assert type(make_optimizer(gm, TrainSpec(1, 0.1))) is torch.optim.SGD
    with pytest.raises(TrainError, match="optimizer must be 'sgd' or 'adamw', got 'adam'"):
        TrainSpec(1, 0.1, optimizer="adam")


def test_the_config_option_reaches_the_job_only_when_set():
    cfg = config_from_dict({"seed": {"optimizer": "adamw", "lr": 0.001}, "finetune": {"optimizer": "adamw"}})
    assert cfg.seed.optimizer == "adamw" and cfg.finetune.optimizer == "adamw"
    assert seed_job(cfg).train["optimizer"] == "adamw"
    assert "optimizer" not in seed_job(config_from_dict({})).train
    with pytest.raises(ConfigError, match="optimizer"):
        config_from_dict({"finetune": {"optimizer": "adam"}})
