"""Kind runtimes in exports: the check that a runtime needs only torch, and the exported runtime file.

An exported model runs where morphnas is not installed. Its ``morphnas_runtime.py`` is
:mod:`morphnas.morphism.runtime` followed by the source of every registered kind's runtime, copied
from the kind's file (:func:`inspect.getsource`); torch's own module classes (``nn.Conv2d``) are
referenced, not copied. The copy runs the same code as morphnas only if every global name the
runtime reads means the same thing in both places, so a runtime may read only builtins and the
names of :mod:`..runtime` (``torch``, ``nn``, ``F``, ``ACTIVATIONS``, ...), bound in its own file to
the very same objects. :func:`runtime_problem` checks that when a kind registers.
"""
from __future__ import annotations

import __future__
import builtins
import dis
import inspect
import sys
import textwrap
from types import CodeType
from typing import Any, Callable

from torch import nn

from .. import runtime as core

_LOADS = {"LOAD_GLOBAL", "LOAD_NAME", "LOAD_FROM_DICT_OR_GLOBALS"}
_HEADER = ("# " + "-" * 98 + "\n"
           "# The layer kinds' runtimes, copied by `morphnas export` from their kind files "
           "(morphnas.morphism.kinds).")


def core_names() -> list[str]:
    """The names of :mod:`..runtime` a kind's runtime may read."""
    return sorted(n for n in vars(core) if not n.startswith("_") and n != "annotations")


def torch_reference(obj: Any) -> str | None:
    """``nn.Conv2d`` for one of torch's own module classes (exports refer to it), else None."""
    name = getattr(obj, "__name__", "")
    return f"nn.{name}" if isinstance(obj, type) and getattr(nn, name, None) is obj else None


def _source(obj: Any) -> str:
    return textwrap.dedent(inspect.getsource(obj)).rstrip("\n")


def _instructions(code: CodeType) -> list[dis.Instruction]:
    found = list(dis.get_instructions(code))
    for const in code.co_consts:
        if isinstance(const, CodeType):
            found.extend(_instructions(const))
    return found


def runtime_problem(obj: Any) -> str | None:
    """Why ``obj`` cannot be a kind's runtime (it must be shipped in exports), or None when it can."""
    if torch_reference(obj):
        return None
    if not (inspect.isfunction(obj) or (isinstance(obj, type) and issubclass(obj, nn.Module))):
        return f"{obj!r} is neither an nn.Module class nor a function returning one"
    if obj.__qualname__ != obj.__name__ or not obj.__name__.isidentifier():
        return f"{obj.__qualname__} is not defined at the top level of its file (exports copy it as one)"
    if obj.__name__ in vars(core):
        return f"{obj.__name__} has the name of something in morphism/runtime.py; rename it"
    try:
        source = _source(obj)
    except (OSError, TypeError) as e:
        return f"{obj.__name__} has no source file that exports could copy ({e})"
    code = compile(source, "<runtime>", "exec", flags=__future__.annotations.compiler_flag, dont_inherit=True)
    here = vars(sys.modules[obj.__module__]) if obj.__module__ in sys.modules else {}
    there = vars(core)
    for ins in _instructions(code):
        name = str(ins.argval)
        if ins.opname == "IMPORT_NAME" and name.split(".")[0] != "torch":
            return f"{obj.__name__} imports {name!r}; an exported model has only torch"
        if ins.opname not in _LOADS or name == obj.__name__ or (name.startswith("__") and name.endswith("__")):
            continue
        same = (there[name] is here.get(name)) if name in there else (hasattr(builtins, name) and name not in here)
        if not same:
            return (f"{obj.__name__} reads {name!r}, which an exported model would not have as it is here: a "
                    f"runtime may read only builtins and {', '.join(core_names())} (morphism/runtime.py's names)")
    return None


def runtime_source(runtimes: list[tuple[str, Callable[..., nn.Module]]]) -> str:
    """The text of an export's ``morphnas_runtime.py`` for these ``(kind, runtime)`` pairs: the runtime
    core, each runtime's source once (in the order given), then their ``BUILDERS`` entries."""
    parts = [_source(sys.modules[core.__name__]), "", "", _HEADER]
    copied: dict[str, Any] = {}
    entries = []
    for kind, obj in runtimes:
        ref = torch_reference(obj)
        if ref is None:
            ref = obj.__name__
            if copied.setdefault(ref, obj) is not obj:
                raise ValueError(f"two runtimes are named {ref!r} ({copied[ref].__module__} and {obj.__module__})")
        entries.append((kind, ref))
    for obj in copied.values():
        parts += ["", "", f"# from {obj.__module__}", _source(obj)]
    parts += ["", "", "BUILDERS.update({", *(f"    {kind!r}: {ref}," for kind, ref in entries), "})", ""]
    text = "\n".join(parts)
    compile(text, "morphnas_runtime.py", "exec")   # a file that does not parse must never reach an export
    return text
