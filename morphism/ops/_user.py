"""Loading a user's own morph op from an import path, ``"package.module:ClassName"``.

:func:`load_op` imports the module, takes the attribute (a :class:`~.base.MorphOp` subclass, or an
instance of one), registers it in :func:`~.base.default_registry` unless it is there already
(calling it twice, or on a module whose ``@register_op`` already ran, is fine) and returns the op's
registered name. From then on the op is used by that name, like a built-in one: ``apply_op(net,
name, ...)``, ``replay`` and the search's workers all look ops up in the default registry, so a
worker process calls :func:`load_ops` with the search's paths (``ActionSpace.op_paths``) before it
makes children.

Every mistake is one :class:`OpLoadError` line naming the path and the fix: a path without ``:``,
a module that does not import, a missing attribute (with a did-you-mean), something that is no
MorphOp, an op that is declared wrongly (no name, no ``sites``/``check``/``_apply``, ``Params`` not
a dataclass), a name another op already has, a constructor or a registration that raises.
"""
from __future__ import annotations

import dataclasses
import importlib
import re
from typing import Any, Iterable

from ..errors import did_you_mean
from .base import MorphOp, OpRegistrationError, default_registry, register_op, registered

_DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
_BUILTIN_PREFIX = "morphnas.morphism.ops."
_REQUIRED = ("sites", "check", "_apply")


class OpLoadError(OpRegistrationError):
    """A user op named by an import path cannot be loaded; the message names the path and the fix."""


def first_line(e: BaseException) -> str:
    """The first non-empty line of an exception's message (its type name when it has none)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


def is_builtin(op: MorphOp) -> bool:
    """Whether ``op`` ships with morphnas (its class lives in this package)."""
    return type(op).__module__.startswith(_BUILTIN_PREFIX)


def load_op(path: str) -> str:
    """Import the op named by ``path`` (``"package.module:ClassName"``), register it, return its name."""
    module_name, attr = _split(path)
    reg = default_registry()   # built-ins first, so a user op can never take a built-in's name by importing first
    module = _import(path, module_name)
    obj = _attribute(path, module, module_name, attr)
    op = _instance(path, obj)
    name = _name(path, op)
    if name in reg:
        have = reg.get(name)
        if type(have) is type(op):
            return name   # loaded before (or the same class through another path): nothing to do
        what = "built-in op" if is_builtin(have) else "op"
        raise OpLoadError(f"op path {path!r}: its name {name!r} is taken by the {what} "
                          f"{type(have).__module__}.{type(have).__qualname__}; give {type(op).__qualname__} "
                          f"another name (class attribute name = '...')")
    try:
        registered_op: MorphOp | None = registered(type(op))
    except OpRegistrationError:
        registered_op = None
    if registered_op is None:
        try:
            register_op(op)
        except OpRegistrationError as e:
            raise OpLoadError(f"op path {path!r}: {first_line(e)}") from None
        except Exception as e:  # noqa: BLE001 - anything a user's op raises is reported, one line
            raise OpLoadError(f"op path {path!r}: registering {type(op).__qualname__} raised "
                              f"{type(e).__name__}: {first_line(e)}; fix the op class") from None
    else:
        op = registered_op
    reg.register(op)
    return name


def load_ops(paths: Iterable[str]) -> tuple[str, ...]:
    """:func:`load_op` for each path, in order; returns the registered names (what a worker calls
    with ``ActionSpace.op_paths`` before it makes children)."""
    if isinstance(paths, str):
        raise OpLoadError(f"load_ops takes a list of op paths, got the string {paths!r}; "
                          f"pass [{paths!r}] or call load_op")
    return tuple(load_op(p) for p in paths)


# ------------------------------------------------------------------------------------------ steps
def _split(path: Any) -> tuple[str, str]:
    fix = ("write the module's import path, a colon and the op class's name, e.g. 'mypkg.ops:MyOp'")
    if not isinstance(path, str):
        raise OpLoadError(f"op path {path!r} must be a string 'package.module:ClassName'; {fix}")
    if path.count(":") != 1:
        raise OpLoadError(f"op path {path!r} is not 'package.module:ClassName' "
                          f"({'no' if ':' not in path else 'more than one'} ':'); {fix}")
    module_name, attr = path.split(":")
    if not _DOTTED.match(module_name):
        raise OpLoadError(f"op path {path!r}: {module_name!r} is not a module import path "
                          f"(dotted identifiers, no spaces); {fix}")
    if not _DOTTED.match(attr):
        raise OpLoadError(f"op path {path!r}: {attr!r} is not a class name (identifiers, no spaces); {fix}")
    return module_name, attr


def _import(path: str, module_name: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except OpRegistrationError as e:   # its @register_op refused the op (a name taken): the message has the fix
        raise OpLoadError(f"op path {path!r}: importing module {module_name!r} failed: {first_line(e)}") from None
    except ImportError as e:
        raise OpLoadError(f"op path {path!r}: cannot import module {module_name!r} ({first_line(e)}); install "
                          f"the package, or put the folder that holds it on sys.path (PYTHONPATH)") from None
    except Exception as e:  # noqa: BLE001 - a user's module raising on import is reported, one line
        raise OpLoadError(f"op path {path!r}: importing module {module_name!r} raised {type(e).__name__}: "
                          f"{first_line(e)}; fix the module so that it imports") from None


def _attribute(path: str, module: Any, module_name: str, attr: str) -> Any:
    obj, done = module, module_name
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            names = [n for n in dir(obj) if not n.startswith("_")]
            hint = did_you_mean(part, names, known=None)
            if not hint:
                ops = sorted(n for n in names if isinstance(getattr(obj, n, None), type)
                             and issubclass(getattr(obj, n), MorphOp) and getattr(obj, n) is not MorphOp)
                hint = f"; it defines the op class(es) {', '.join(ops)}" if ops else "; it defines no MorphOp class"
            raise OpLoadError(f"op path {path!r}: {done!r} has no attribute {part!r} (fix the name after "
                              f"the ':'){hint}") from None
        done = f"{done}.{part}"
    return obj


def _instance(path: str, obj: Any) -> MorphOp:
    if isinstance(obj, MorphOp):
        return obj
    if not (isinstance(obj, type) and issubclass(obj, MorphOp)):
        what = f"the class {obj.__qualname__}" if isinstance(obj, type) else f"a {type(obj).__name__}"
        raise OpLoadError(f"op path {path!r} names {what}, not a MorphOp; point it at a class deriving from "
                          f"morphnas.morphism.ops.MorphOp (or an instance of one)")
    if obj is MorphOp:
        raise OpLoadError(f"op path {path!r} names the MorphOp base class itself; point it at your op class")
    try:
        return registered(obj)   # its @register_op already made the instance
    except OpRegistrationError:
        pass
    try:
        return obj()
    except Exception as e:  # noqa: BLE001 - a user's constructor raising is reported, one line
        raise OpLoadError(f"op path {path!r}: constructing {obj.__qualname__}() raised {type(e).__name__}: "
                          f"{first_line(e)}; an op class must construct with no arguments "
                          f"(or point the path at an instance)") from None


def _name(path: str, op: MorphOp) -> str:
    cls = type(op).__qualname__
    try:
        name = op.name
    except Exception as e:  # noqa: BLE001 - a user's name property raising is reported, one line
        raise OpLoadError(f"op path {path!r}: reading {cls}.name raised {type(e).__name__}: {first_line(e)}; "
                          f"make name a plain class attribute") from None
    if not isinstance(name, str) or not name:
        raise OpLoadError(f"op path {path!r}: op class {cls} has no name; set the class attribute "
                          f"name = '<op name>'")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise OpLoadError(f"op path {path!r}: op name {name!r} of {cls} is not an identifier; use letters, "
                          f"digits and '_' (e.g. {re.sub(r'[^A-Za-z0-9_]', '_', name)!r})")
    if op.site_kind not in ("edge", "blob"):
        raise OpLoadError(f"op path {path!r}: op {name} has site_kind {op.site_kind!r}; set it to 'edge' or 'blob'")
    missing = [m for m in _REQUIRED if getattr(type(op), m, None) is getattr(MorphOp, m)]
    if missing:
        raise OpLoadError(f"op path {path!r}: op class {cls} does not implement {', '.join(m + '()' for m in missing)}; "
                          f"define them (see morphnas.morphism.ops.MorphOp)")
    params = getattr(op, "Params", None)
    if not (isinstance(params, type) and dataclasses.is_dataclass(params)):
        raise OpLoadError(f"op path {path!r}: op {name}'s Params is {params!r}, not a dataclass; declare it as "
                          f"@dataclass(frozen=True) class Params (or leave it out: no parameters)")
    return name
