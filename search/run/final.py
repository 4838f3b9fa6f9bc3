"""The final stage of a run: the best member trained longer, evaluated once on the test split, exported.

Called by the driver after the search budget is spent (and again by ``resume`` if the run stopped
during this stage: it only reads members and rewrites ``best/``, so repeating it is safe). This is
the only place the test split is evaluated: model selection saw validation accuracy only.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Callable

import torch

from morphnas.morphism.errors import MorphnasError
from morphnas.morphism.serialize import load_network, save_network
from morphnas.search.config import Config, DataConfig
from morphnas.search.data.core import load_data
from morphnas.search.export.exporter import export_network
from morphnas.search.state.population import Population
from morphnas.search.state.rundir import RunDir
from morphnas.search.trial.jobs import plugin_fields
from morphnas.search.trial.train import Diverged, TrainSpec, evaluate, train
from morphnas.search.trial.worker import trainer_for
from morphnas.spaces.counting import count


def final_stage(cfg: Config, run: RunDir, population: Population, echo: Callable[[str], None]) -> dict[str, Any]:
    """Train the best member ``cfg.final.epochs`` more, report val/test accuracy, write ``best/``."""
    best = population.best()
    if best is None:
        raise MorphnasError("the run has no finished member to report")
    torch.set_num_threads(cfg.resources.cpus_per_trial)
    task = cfg.task.resolved()
    data = load_data(DataConfig(**dataclasses.asdict(cfg.data)), seed=cfg.random_seed, task=task.type)
    trainer = trainer_for(plugin_fields(cfg))
    val_key, test_key = task.metric.name, "test_" + task.metric.name[len("val_"):]

    def score(n: Any, split: Any) -> float:
        return evaluate(n, split, task=task, target_scale=data.target_scale)
    net = load_network(run.root / best.path)
    f = cfg.final
    report: dict[str, Any] = {"member_id": best.id, "parent_id": best.parent_id, "lineage_depth": best.depth,
                              "ops": list(best.ops), f"{val_key}_search": task.metric.value(best.val_acc),
                              "metric": task.metric.name, "direction": task.metric.direction}
    report["final_enabled"] = bool(f.enabled and f.epochs > 0)
    if f.enabled and f.epochs > 0:
        lr = f.lr if f.lr is not None else cfg.finetune_lr
        echo(f"[final] training {best.id} for {f.epochs} more epoch(s) at lr {lr:g}")
        spec = TrainSpec(f.epochs, lr, cfg.finetune.momentum, cfg.finetune.weight_decay, "cosine", cfg.data.batch_size,
                         optimizer=cfg.finetune.optimizer)
        # Keep the epoch (0 = as searched) with the best validation accuracy: longer training can
        # overfit a small dataset, and validation — never test — decides.
        kept = {"epoch": 0, "val_acc": score(net, data.val), "net": net}

        def keep_best(rep, trained) -> None:
            if rep.val_acc > kept["val_acc"]:
                kept.update(epoch=rep.epoch, val_acc=rep.val_acc, net=trained)
        try:
            # The final stage runs in the driver: use its GPU when it has one, like the trials do.
            use_gpu = torch.cuda.is_available() and cfg.resources.gpus_per_trial != 0
            train(net, data, spec, seed=cfg.random_seed + 7, on_epoch=keep_best,
                  device="cuda" if use_gpu else "cpu", amp=bool(use_gpu and cfg.resources.amp), trainer=trainer,
                  task=task, precision=cfg.resources.precision, channels_last=cfg.resources.channels_last,
                  compile=cfg.finetune.compile)
        except Diverged as e:
            # The search's members are safe; only this stage must run again, with a smaller LR.
            raise MorphnasError(f"final stage: {e}; fix it with: morphnas resume {run.root} "
                                f"--set final.lr={lr / 10:g}") from None
        net = kept["net"]
        report["final_epochs"], report["final_best_epoch"] = f.epochs, kept["epoch"]
        if kept["epoch"] == 0:
            echo(f"[final] the {f.epochs} extra epoch(s) did not improve validation {val_key}; "
                 f"keeping {best.id} as searched")
    report[val_key] = task.metric.value(score(net, data.val))
    report[test_key] = task.metric.value(score(net, data.test))          # the one look at the test set
    seed = population.get("m0")
    report[f"seed_{val_key}"] = task.metric.value(seed.val_acc)
    report[f"seed_{test_key}"] = task.metric.value(score(load_network(run.root / seed.path), data.test))
    report.update(count(net).to_json())
    save_network(net, run.best)
    (run.best / "report.json").write_text(json.dumps(report, indent=2))
    try:   # plus a standalone copy that loads with torch alone (spec + weights + loader, checked)
        export_network(net, run.best / "standalone", info=report, preprocess=data.preprocess)
    except Exception as e:  # the morphnas-format export above is the result; say what went wrong
        echo(f"[final] warning: standalone export failed ({type(e).__name__}: {e})")
    return report


def summary(report: dict[str, Any] | None) -> str:
    if not report:
        return "no final report"
    f = report
    v = f.get("metric", "val_acc")
    t = "test_" + v[len("val_"):]
    if f.get("final_enabled") is False:   # no final stage: report the search's pick, not a test score
        return (f"best {f['member_id']} ({', '.join(f['ops']) or 'seed'}): {v} {f[v]:.4f} "
                f"(final stage off: final.enabled is false); {f.get('params', 0)} params")
    return (f"best {f['member_id']} ({', '.join(f['ops']) or 'seed'}): {v} {f[v]:.4f}, "
            f"{t} {f[t]:.4f} (seed: val {f['seed_' + v]:.4f}, test {f['seed_' + t]:.4f}); "
            f"{f.get('params', 0)} params")
