"""A user's own code in a search: objects named by import path, or handed over from Python.

Config keys that take user code (``data.dataset``, ``trainer``) accept an import path
``"package.module:attribute"`` (dots in the attribute reach nested names). Every worker process
imports it by that path, so it works on a multi-node cluster whose nodes have the package
installed. From Python, :func:`morphnas.run_search` also takes the objects themselves; an object
whose module is importable is recorded by its import path, anything else (a class defined in a
script's ``__main__``) as ``python:<name>``, and the object travels to the workers with the trials
(Ray pickles it): such a run resumes from Python with the same object passed again.

:func:`load_object` resolves either form; every mistake is one line naming the config key, the
path and the fix.
"""
from __future__ import annotations

import importlib
from typing import Any

from morphnas.morphism.errors import did_you_mean
from morphnas.search.errors import ConfigError

__all__ = ["PYTHON_PREFIX", "PluginError", "is_import_path", "load_object", "path_of", "provide", "provided"]

PYTHON_PREFIX = "python:"
_PROVIDED: dict[str, Any] = {}     # "python:<name>" -> the object, in this process


class PluginError(ConfigError):
    """User code named in the config cannot be imported, or is not what the key needs."""


def is_import_path(value: Any) -> bool:
    """``"pkg.mod:attr"`` (or ``"python:<name>"``) rather than a registered name."""
    return isinstance(value, str) and ":" in value and not value.startswith(("torchvision:",))


def provide(name: str, obj: Any) -> None:
    """Make ``obj`` what ``python:<name>`` means in this process (the Python API and the workers do)."""
    _PROVIDED[name if name.startswith(PYTHON_PREFIX) else PYTHON_PREFIX + name] = obj


def provided() -> dict[str, Any]:
    """Every object handed over in this process (what the workers must get too)."""
    return dict(_PROVIDED)


def path_of(obj: Any) -> str:
    """How the config records ``obj``: its import path when it can be imported by that path
    (a module-level function or class), else ``python:<module>.<qualname>`` (a script's own)."""
    module, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if module is None or qual is None:         # an instance: recorded by its class
        module, qual = type(obj).__module__, type(obj).__qualname__
        name = f"{module}.{qual}.instance"
        return PYTHON_PREFIX + name
    if module != "__main__" and "<locals>" not in qual:
        try:
            if _resolve(importlib.import_module(module), qual) is obj:
                return f"{module}:{qual}"
        except Exception:   # not importable by its name: handed over instead
            pass
    return f"{PYTHON_PREFIX}{module}.{qual}"


def _resolve(mod: Any, attr: str) -> Any:
    obj = mod
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def load_object(path: str, key: str) -> Any:
    """The object ``path`` names (see the module docstring); ``key`` is the config key, for errors."""
    if path.startswith(PYTHON_PREFIX):
        if path not in _PROVIDED:
            raise PluginError(f"config {key!r}: {path!r} is an object handed over from Python, and this process "
                              f"does not have it; run (or resume) the search from Python with the object passed "
                              f"again (morphnas.resume(run, ...)), or name it by import path 'package.module:name'")
        return _PROVIDED[path]
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise PluginError(f"config {key!r}: {path!r} is not an import path; write 'package.module:name'")
    try:
        mod = importlib.import_module(module)
    except Exception as e:  # ImportError, or the module's own code raising while it is imported
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        what = "cannot be imported" if isinstance(e, ImportError) else f"raised {type(e).__name__} when imported"
        hint = "; is it installed, or on PYTHONPATH (sys.path)?" if isinstance(e, ImportError) else ""
        raise PluginError(f"config {key!r}: module {module!r} {what} ({first}){hint}") from None
    try:
        return _resolve(mod, attr)
    except AttributeError:
        names = [n for n in dir(mod) if not n.startswith("_")]
        raise PluginError(f"config {key!r}: module {module!r} has no {attr!r}"
                          f"{did_you_mean(attr.split('.')[-1], names, known=None)}") from None


def describe(obj: Any) -> str:
    """A short name of ``obj`` for messages."""
    return getattr(obj, "__qualname__", None) or type(obj).__qualname__
