"""The search package's structure: config bounds, the strategy/command registries, jobs, no import cycles."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
from _paths import REPO  # noqa: E402

from morphnas.search.config import ConfigError, config_from_dict
from morphnas.search.state.records import Proposal
from morphnas.search.trial.jobs import Job, SeedSource
from morphnas.spaces.actions import Action

SEARCH = REPO / "search"


@pytest.mark.parametrize("raw, key", [
    ({"random_seed": -1}, "random_seed"),
    ({"random_seed": 2**64}, "random_seed"),
    ({"name": ".."}, "name"),
    ({"name": "."}, "name"),
    ({"name": "a/b"}, "name"),
    ({"data": {"image_size": 0}}, "data.image_size"),
    ({"data": {"train_limit": 0}}, "data.train_limit"),
    ({"data": {"batch_size": 0}}, "data.batch_size"),
    ({"data": {"test_fraction": 0}}, "data.test_fraction"),
    ({"data": {"augment": "flip"}}, "data.augment"),
    ({"ray": {"num_cpus": 0}}, "ray.num_cpus"),
    ({"ray": {"reduction_factor": 1}}, "ray.reduction_factor"),
    ({"ray": {"grace_period": 0}}, "ray.grace_period"),
    ({"ray": {"max_failures": -1}}, "ray.max_failures"),
    ({"verify": {"tolerance": 0}}, "verify.tolerance"),
    ({"verify": {"tolerance": ".nan"}}, "verify.tolerance"),
    ({"verify": {"tolerance": float("inf")}}, "verify.tolerance"),
    ({"verify": {"dtype": "float16"}}, "verify.dtype"),
    ({"resources": {"gpus_per_trial": -0.5}}, "resources.gpus_per_trial"),
    ({"resources": {"cpus_per_trial": 0}}, "resources.cpus_per_trial"),
    ({"resources": {"max_concurrent": 0}}, "resources.max_concurrent"),
    ({"seed": {"lr": 0}}, "seed.lr"),
    ({"seed": {"lr": float("nan")}}, "seed.lr"),
    ({"seed": {"epochs": -1}}, "seed.epochs"),
    ({"seed": {"schedule": "step"}}, "seed.schedule"),
    ({"seed": {"restart_epochs": 0}}, "seed.restart_epochs"),
    ({"seed": {"restart_mult": 0}}, "seed.restart_mult"),
    ({"finetune": {"lr": -0.1}}, "finetune.lr"),
    ({"finetune": {"lr_factor": 0}}, "finetune.lr_factor"),
    ({"finetune": {"schedule": "sgd"}}, "finetune.schedule"),
    ({"finetune": {"restart_epochs": 0}}, "finetune.restart_epochs"),
    ({"finetune": {"restart_mult": -2}}, "finetune.restart_mult"),
    ({"final": {"lr": 0}}, "final.lr"),
    ({"final": {"epochs": -3}}, "final.epochs"),
    ({"budget": {"trials": -1}}, "budget.trials"),
    ({"budget": {"wall_time": 0}}, "budget.wall_time"),
    ({"strategy": {"name": "hill_climb", "children": 0}}, "strategy.children"),
    ({"strategy": {"name": "evolution", "sample_size": 0}}, "strategy.sample_size"),
    ({"strategy": {"name": "random_walk", "parent": "oldest"}}, "strategy.parent"),
    ({"strategy": {"name": "tpe", "sampler": "cmaes"}}, "strategy.sampler"),
    ({"strategy": {"name": "tpe", "top_k": 0}}, "strategy.top_k"),
])
def test_each_bound_names_its_key_in_one_line(raw, key):
    with pytest.raises(ConfigError) as e:
        config_from_dict(raw)
    msg = str(e.value)
    assert f"'{key}'" in msg and "\n" not in msg


def test_new_choices_and_schedule_knobs():
    cfg = config_from_dict({"data": {"dataset": "mnist5k"},
                            "seed": {"schedule": "sgdr", "restart_epochs": 2, "restart_mult": 2},
                            "finetune": {"schedule": "constant"}})
    assert cfg.data.dataset == "mnist5k" and cfg.seed.schedule == "sgdr" and cfg.seed.restart_epochs == 2
    assert cfg.finetune.schedule == "constant" and cfg.finetune.restart_epochs is None
    assert config_from_dict({}).seed.schedule == "cosine" == config_from_dict({}).finetune.schedule


def test_train_fields_carry_restarts_only_for_sgdr():
    from morphnas.search.trial.jobs import train_fields as _train_fields
    cfg = config_from_dict({"seed": {"schedule": "sgdr", "restart_epochs": 3}})
    assert _train_fields(cfg.seed, 0.1, 64)["restart_epochs"] == 3
    assert "restart_epochs" not in _train_fields(cfg.finetune, 0.01, 64)


def test_job_round_trips_through_json():
    prop = Proposal("m0", (Action("deepen", "a.b", {"k": 3}, 7),), {"a0_op": "deepen"}, "p1")
    job = Job(kind="child", member_id="m1", member_path="members/m1", parent_id="m0", depth=1, born=1,
              parent_path="/x/members/m0", proposal=prop, train={"epochs": 1, "lr": 0.01}, train_seed=5,
              data={"dataset": "digits"}, gpus=0.0)
    assert Job.from_json(job.to_json()) == job
    seed = Job(kind="seed", member_id="m0", member_path="members/m0", seed=SeedSource("tiny_resnet"))
    assert Job.from_json(seed.to_json()) == seed and seed.proposal_id == "" and seed.action_dicts() == ()


def _package(tmp_path, monkeypatch, name: str, files: dict[str, str]) -> list[str]:
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for fname, text in files.items():
        (pkg / fname).write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    return [str(pkg)]


def test_a_strategy_module_that_registers_nothing_is_an_error(tmp_path, monkeypatch):
    from morphnas.search.errors import StrategyError
    from morphnas.search.strategies import discover
    path = _package(tmp_path, monkeypatch, "fake_strategies", {"forgotten.py": "X = 1\n"})
    with pytest.raises(StrategyError, match=r"strategy module forgotten\.py .*registers no strategy"):
        discover("fake_strategies", path)


def test_every_shipped_strategy_is_registered():
    from morphnas.search.strategies import NAMES
    assert {"random_walk", "hill_climb", "evolution", "pareto", "tpe"} <= set(NAMES)


def test_a_command_module_that_registers_nothing_is_an_error(tmp_path, monkeypatch):
    from morphnas.search.cli import CLIError, discover
    path = _package(tmp_path, monkeypatch, "fake_cmds", {"bogus_cmd.py": "def add_parser(sub):\n    pass\n"})
    with pytest.raises(CLIError, match=r"command module bogus_cmd\.py .*registers no command"):
        discover("fake_cmds", path)


def test_every_shipped_command_is_registered_in_help_order():
    from morphnas.search.cli import discover
    assert [c.name for c in discover()] == ["describe", "new", "morph", "verify", "search", "resume", "remove",
                                            "leaderboard", "dashboard", "export"]


# ------------------------------------------------------------------------------------ import cycles
def _modules() -> dict[str, Path]:
    out = {}
    for f in SEARCH.rglob("*.py"):
        parts = list(f.relative_to(SEARCH).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(["morphnas", "search", *parts])] = f
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Modules of morphnas.search that ``name`` imports anywhere (also inside functions)."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            subs = [f"{mod}.{a.name}" for a in node.names if f"{mod}.{a.name}" in modules]
            targets = subs if subs and len(subs) == len(node.names) else [mod, *subs]
        out.update(t for t in targets if t in modules and t != name)
    return out


def test_no_import_cycles_in_search():
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}

    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), list(graph[start])
        while todo:
            m = todo.pop()
            if m == goal:
                return True
            if m not in seen:
                seen.add(m)
                todo.extend(graph[m])
        return False

    cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if reaches(b, a))
    assert not cycles, "import cycles: " + "; ".join(cycles)
