"""morphnas: neural architecture search by function-preserving network morphism.

The Python API (see ``docs/python.md``)::

    import morphnas
    result = morphnas.run_search("configs/quickstart.yaml", data=make_data, trainer=MyTrainer)
    result.best, result.metric, result.value, result.load_best()
    morphnas.resume("runs/quickstart")

``run_search`` / ``resume`` / ``open_run`` and the plug-in types (``Datasets`` for a data factory,
``Trainer`` and ``EpochContext`` for a training loop) are imported on first use, so ``import
morphnas`` stays light (Ray and Optuna load when a search does). The subpackages are
``morphnas.morphism`` (the morph engine), ``morphnas.spaces`` (seeds, action spaces) and
``morphnas.search`` (the search itself); the search function is ``run_search``, not ``search``,
because ``morphnas.search`` is that subpackage.
"""

__version__ = "0.1.0"

_API = {
    "run_search": "morphnas.search.api", "resume": "morphnas.search.api", "open_run": "morphnas.search.api",
    "SearchResult": "morphnas.search.api", "Datasets": "morphnas.search.data.user",
    "Trainer": "morphnas.search.trial.trainer", "EpochContext": "morphnas.search.trial.trainer",
    "Config": "morphnas.search.config", "load_config": "morphnas.search.config",
    "MorphnasError": "morphnas.morphism.errors",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'morphnas' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
