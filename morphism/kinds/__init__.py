"""Layer kinds, one file each: a kind's spec, the module computing it, its label in drawings and how
the importer recognises it live in one class (:mod:`.base` says what a kind declares).

Adding a kind is one new file in this package, or anywhere, loaded with :func:`load_kind_file`::

    class NegateModule(nn.Module):              # the runtime: torch only, exports copy it
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return -x

    def _from_neg(target, args, kwargs, shape):  # how the importer recognises it
        return Convert([Negate()], [{}])

    @dataclass(frozen=True)
    class Negate(LayerSpec):
        kind: ClassVar[str] = "negate"
        channelwise: ClassVar[bool] = True
        keeps_channels: ClassVar[bool] = True
        runtime = NegateModule
        import_functions = {operator.neg: _from_neg, torch.neg: _from_neg}

        def draw_label(self) -> str:
            return "neg"

Importing this package imports each of its public modules in name order (files starting with ``_``
are helpers, ``base`` is the framework). A kind file that registers no kind is a
:class:`KindRegistrationError` naming the file, like a mistake in a kind's declaration.
:mod:`.layers` and :mod:`.layers_extra` re-export the classes under their old import paths.
"""
from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import sys
from pathlib import Path

from .. import runtime
from ..errors import KindRegistrationError
from . import _runtime
from .base import (FunctionKey, FunctionRule, LayerSpec, ModuleRule, NamedFunction, Shape, function_rule,
                   imported_module_types, module_rule, register_kind, registered_kinds, unregister_kind)

__all__ = ["FunctionKey", "FunctionRule", "KindRegistrationError", "LayerSpec", "ModuleRule", "NamedFunction",
           "Shape", "discover_kinds", "function_rule", "imported_module_types", "layer_kinds", "load_kind_file",
           "module_rule", "register_kind", "registered_kinds", "runtime_source", "unregister_kind"]

FRAMEWORK = {"base"}   # modules of this package that define no kind


def layer_kinds() -> dict[str, type[LayerSpec]]:
    """Every registered layer kind by name (a copy: register by subclassing :class:`.base.LayerSpec`)."""
    return registered_kinds()


def _kinds_of(module: str) -> list[type[LayerSpec]]:
    return [cls for cls in registered_kinds().values() if cls.__module__ == module]


def _registers_nothing(name: str, file: object) -> KindRegistrationError:
    return KindRegistrationError(
        f"kind file {name}.py ({file}) registers no layer kind; define a frozen dataclass subclassing "
        f"LayerSpec with a 'kind' in it (see morphism/kinds/base.py), or rename it _{name}.py if it only "
        "holds helpers")


def discover_kinds(package: str) -> list[type[LayerSpec]]:
    """Import every public module of ``package`` (in name order) and return the kinds they define;
    a module that defines none is a :class:`KindRegistrationError` naming the file."""
    pkg = importlib.import_module(package)
    found: list[type[LayerSpec]] = []
    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_") or info.name in FRAMEWORK:
            continue
        mod = importlib.import_module(f"{package}.{info.name}")
        kinds = _kinds_of(mod.__name__)
        if not kinds:
            raise _registers_nothing(info.name, mod.__file__)
        found.extend(kinds)
    return found


def load_kind_file(path: str | Path) -> list[type[LayerSpec]]:
    """Import the kind file at ``path`` (outside this package), which registers its kinds; returns
    them. Undo with :func:`unregister_kind`; the file may then be loaded again."""
    path = Path(path).resolve()
    name = f"morphnas_kind_{path.stem}"
    if _kinds_of(name):
        raise KindRegistrationError(f"kind file {path.name} ({path}) is loaded already (as module {name})")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise KindRegistrationError(f"kind file {path} cannot be loaded: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module   # where inspect finds the runtime's source for exports
    try:
        spec.loader.exec_module(module)
    except BaseException:
        for cls in _kinds_of(name):   # a later class of the file failed: take back the earlier ones
            unregister_kind(cls.kind)
        del sys.modules[name]
        raise
    kinds = _kinds_of(name)
    if not kinds:
        del sys.modules[name]
        raise _registers_nothing(path.stem, path)
    return kinds


def runtime_source() -> str:
    """The text of an export's ``morphnas_runtime.py``: :mod:`..runtime`, then the runtime of every
    registered kind (copied from its file, or torch's own class referenced) and their ``BUILDERS``."""
    return _runtime.runtime_source(list(runtime.BUILDERS.items()))


discover_kinds(__name__)
