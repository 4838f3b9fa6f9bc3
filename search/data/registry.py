"""The dataset registry: each ``search/data/datasets/<name>.py`` registers its datasets with a decorator.

A dataset is a function ``load(cfg, seed) -> (x_train, y_train, x_test, y_test)`` returning raw
image tensors scaled to [0, 1] (N, C, H, W) and int64 labels, decorated with
:func:`register_dataset`, which also says what :func:`~.core.load_data` and the export must know:
the raw value range, the channel order, the class names, whether validation splits are
stratified, and the default augmentation. Every public module of ``datasets/`` is imported once
(``pkgutil``), and one that registers nothing is an error naming the file, as for ops and
strategies: adding a dataset is adding one file.

The data wing does not import the config (it reads :class:`DataSettings`), so the config can
check a dataset name here.
"""
from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, Sequence

from morphnas.morphism.errors import MorphnasError, did_you_mean
from morphnas.morphism.schema import SchemaError


class DataSettings(Protocol):
    """What loading data reads of the config's ``data:`` section (:class:`~morphnas.search.config.DataConfig`)."""

    dataset: str
    root: str
    image_size: int | None
    val_fraction: float
    test_fraction: float
    augment: str
    download: bool
    train_limit: int | None
    options: dict[str, Any]           # keyword arguments of a user's factory
    path: str | None                  # csv: the file
    target: str | None                # csv: the column to predict
    features: list[str] | None        # csv: the input columns (None: all but the target)
    stream: Any                       # auto | True | False (user datasets)
    memory_mb: float                  # user datasets over this stream
    workers: int                      # DataLoader worker processes of a streamed dataset


Loader = Callable[[Any, int], Sequence[Any]]    # (DataSettings, seed) -> (x, y, x_test, y_test)


class DataError(MorphnasError):
    """A dataset cannot be loaded (missing files, failed download, bad image folder)."""


class DatasetRegistrationError(MorphnasError):
    """A dataset module or name declared wrongly (registered twice, a module that registers nothing)."""


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    load: Loader
    raw_max: float = 255.0                  # raw values a user feeds lie in [0, raw_max]
    channels: str = "RGB"                   # grey | RGB
    class_names: tuple[str, ...] | None = None
    stratified: bool = False                # validation (and train_limit) prefixes keep the class balance
    augment: str = "none"                   # what data.augment: auto means for it
    resizes_itself: bool = False            # the loader applies data.image_size (the export records no resize)
    description: str = ""


_DATASETS: dict[str, DatasetEntry] = {}
_DISCOVERED = False


def register_dataset(name: str, *, raw_max: float = 255.0, channels: str = "RGB",
                     class_names: Sequence[str] | None = None, stratified: bool = False, augment: str = "none",
                     resizes_itself: bool = False, description: str = "") -> Callable[[Loader], Loader]:
    """Decorator of a loader: ``data.dataset: <name>`` loads with it. Stack it for several names."""
    def deco(load: Loader) -> Loader:
        other = _DATASETS.get(name)
        if other is not None and other.load is not load:
            raise DatasetRegistrationError(f"dataset {name!r} is registered twice ({other.load.__module__} and "
                                           f"{load.__module__}); give the new one another name")
        _DATASETS[name] = DatasetEntry(name, load, float(raw_max), channels,
                                       tuple(class_names) if class_names is not None else None, stratified,
                                       augment, resizes_itself, description or (load.__doc__ or "").strip().split("\n")[0])
        return load
    return deco


def unregister_dataset(name: str) -> None:
    """Remove a registered dataset (tests that add one take it away again)."""
    _DATASETS.pop(name, None)


def discover(package: str = "morphnas.search.data.datasets", path: list[str] | None = None) -> tuple[str, ...]:
    """Import every public module of ``package``; each must register at least one dataset."""
    mod_pkg = importlib.import_module(package)
    for info in sorted(pkgutil.iter_modules(path if path is not None else mod_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{package}.{info.name}")
        if not any(e.load.__module__ == mod.__name__ for e in _DATASETS.values()):
            where = Path(getattr(mod, "__file__", "") or info.name)
            raise DatasetRegistrationError(f"dataset module {where.name} ({mod.__name__}) registers no dataset; "
                                           f"decorate its loader with @register_dataset or make the module "
                                           f"private (a leading '_')")
    return tuple(_DATASETS)


def _ensure() -> None:
    global _DISCOVERED
    if not _DISCOVERED:
        _DISCOVERED = True
        discover()


def dataset_names() -> tuple[str, ...]:
    """Every registered dataset name, sorted."""
    _ensure()
    return tuple(sorted(_DATASETS))


def dataset(name: str) -> DatasetEntry:
    """The entry of ``name``; an unknown name is a :class:`DataError` with close matches."""
    _ensure()
    if name not in _DATASETS:
        raise DataError(f"unknown dataset {name!r}{did_you_mean(name, list(_DATASETS), known=None)} "
                        f"(known: {', '.join(sorted(_DATASETS))})")
    return _DATASETS[name]


def check_dataset_name(value: Any, key: str) -> Any:
    """Config rule: ``data.dataset`` must name a registered dataset or be an import path
    ``package.module:factory`` (imported and checked when the data is first loaded)."""
    if isinstance(value, str) and ":" not in value:
        _ensure()
        if value not in _DATASETS:
            raise SchemaError(f"{key!r}: unknown value {value!r}{did_you_mean(value, list(_DATASETS), known=None)} "
                              f"(registered datasets: {', '.join(sorted(_DATASETS))}; or your own: "
                              f"'package.module:factory')")
    return value
