"""Run configs: YAML -> typed config, errors that name the key and the close match, --set overrides."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from _paths import REPO  # noqa: E402

from morphnas.search.config import ConfigError, apply_overrides, config_from_dict, load_config, save_config

CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_and_build_their_action_space(path):
    from morphnas.spaces.actions import ActionSpace
    from morphnas.spaces.registry import REGISTRY
    cfg = load_config(path)
    ActionSpace.from_dict(cfg.actions)
    if "/" not in cfg.seed.network and ":" not in cfg.seed.network:
        REGISTRY.entry(cfg.seed.network)   # the seed name resolves


def test_expected_configs_exist():
    assert {p.name for p in CONFIGS} >= {"quickstart.yaml", "cifar10_resnet20.yaml", "cifar10_nash.yaml", "pareto.yaml"}


def test_defaults_and_derived_values():
    cfg = config_from_dict({"name": "x", "seed": {"lr": 0.2}})
    assert cfg.finetune_lr == pytest.approx(0.02)          # 1/10 of the seed's initial LR
    assert cfg.finetune.momentum == 0.9 and cfg.finetune.weight_decay == 1e-4 and cfg.finetune.schedule == "cosine"
    assert cfg.run_dir == Path("runs/x")
    assert config_from_dict({"finetune": {"lr": 0.005}}).finetune_lr == 0.005


@pytest.mark.parametrize("raw, message", [
    ({"budjet": {"trials": 3}}, r"unknown config key 'budjet'; did you mean 'budget'\?"),
    ({"finetune": {"epoch": 3}}, r"unknown config key 'finetune.epoch'; did you mean 'finetune.epochs'\?"),
    ({"data": {"dataset": "cifar-10"}}, r"'data.dataset': unknown value 'cifar-10'; did you mean 'cifar10'\?"),
    ({"finetune": {"epochs": "three"}}, r"'finetune.epochs' must be an integer, got 'three'"),
    ({"seed": {"lr": -1}}, r"'seed.lr' must be > 0, got -1"),
    ({"budget": {"trials": None, "wall_time": None}}, r"budget.trials, budget.flops and/or budget.wall_time"),
    ({"budget": {"wall_time": "ten minutes"}}, r"'budget.wall_time': 'ten minutes' is not a duration"),
    ({"strategy": {"name": "evolutoin"}}, r"did you mean 'evolution'\?"),
    ({"strategy": {"name": "evolution", "populaton_size": 4}}, r"did you mean 'strategy.population_size'\?"),
    ({"seed": 3}, r"'seed' must be a mapping"),
    ({"name": "a b"}, r"'name': 'a b' must be letters"),
    ({"data": {"val_fraction": 1.5}}, r"'data.val_fraction' must be in \(0, 1\)"),
])
def test_bad_configs_name_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)


def test_set_overrides_parse_yaml_values_and_create_sections():
    raw = apply_overrides({"budget": {"trials": 10}}, ["budget.trials=3", "budget.wall_time=10m",
                                                        "strategy.name=evolution", "ray.asha=true"])
    cfg = config_from_dict(raw)
    assert cfg.budget.trials == 3 and cfg.budget.wall_time == 600.0
    assert cfg.strategy == {"name": "evolution"} and cfg.ray.asha is True
    with pytest.raises(ConfigError, match=r"expected KEY=VALUE"):
        apply_overrides({}, ["budget.trials"])
    with pytest.raises(ConfigError, match=r"unknown config key 'budget.trial'; did you mean 'budget.trials'"):
        config_from_dict(apply_overrides({}, ["budget.trial=3"]))


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(CONFIGS[0], ["budget.trials=2", "name=rt"])
    save_config(cfg, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert again == cfg
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["budget"]["trials"] == 2


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match=r"does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "bad.yaml").write_text("budget: [1, 2\n")
    with pytest.raises(ConfigError, match=r"not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"top level must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_cli_search_reports_config_errors_in_one_line(tmp_path, capsys):
    from morphnas.search.cli import main
    (tmp_path / "c.yaml").write_text("name: t\nbudjet: {trials: 1}\n")
    assert main(["search", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'budget'" in err[0]
