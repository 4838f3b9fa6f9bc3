"""What a layer kind is: the :class:`LayerSpec` base class and the registry its subclasses join.

A layer kind is one frozen-dataclass subclass of :class:`LayerSpec`, in one file, that declares

* ``kind``: its name in JSON, unique;
* its fields (the hyper-parameters; its tensors live in ``Network.params[edge]``), ``out_shape``,
  ``param_shapes``, ``init_params``, ``is_linear`` and the traits ``channelwise``/``keeps_channels``;
* ``runtime``: what computes it, called with the fields as keywords: one of torch's module classes
  (``nn.Conv2d``), or an ``nn.Module`` class (or a function returning a module) of its own file,
  written with torch and :mod:`..runtime`'s names only, since exports copy its source (:mod:`._runtime`);
* ``draw_label()``: its short name in drawings (``conv3x3/2``, ``bn``, ``0.5·id``);
* optionally how :func:`..importer.from_torch` recognises it: ``import_modules`` maps a module type
  (matched exactly; modules of that type stay one call in the trace) to a :data:`ModuleRule`, and
  ``import_functions`` maps a function, a ``Tensor`` method name (a string) or a
  :class:`NamedFunction` to a :data:`FunctionRule`. The rules return :class:`..import_rules.Convert`.

Defining the class registers it (``__init_subclass__``): the class under its kind, its runtime in
``runtime.BUILDERS``, its rules in the importer's tables. Every check runs before anything is
recorded; a mistake is a :class:`KindRegistrationError` naming the class and its file.
``class X(LayerSpec, register=False)`` opts out (a stand-in that must stay unknown, in tests).
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping, Union

import torch
from torch import nn

from .. import runtime
from ..errors import KindRegistrationError, SpecError
from ._runtime import runtime_problem, torch_reference

if TYPE_CHECKING:  # the rules' result types (import_rules needs this module's Shape: no import at run time)
    from ..import_rules import Convert, Unsupported

Shape = tuple[int, ...]


@dataclass(frozen=True)
class NamedFunction:
    """A function target matched by name: ``__name__ == name`` and ``__module__`` starts with
    ``module`` (torchvision's ``stochastic_depth`` is recognised without importing torchvision)."""

    module: str
    name: str

    def matches(self, target: Any) -> bool:
        return (getattr(target, "__name__", "") == self.name
                and str(getattr(target, "__module__", "")).startswith(self.module))


# A leaf module of the rule's type and its input's shape (None when unknown) -> the layers computing it.
ModuleRule = Callable[[Any, "Shape | None"], "Convert | Unsupported"]
# A call on one feature map: (target, the arguments after the feature map, the keyword arguments, the
# map's shape) -> the layers computing it, or None when the call is not this kind's after all.
FunctionRule = Callable[[Any, tuple, dict, "Shape | None"], "Convert | Unsupported | None"]
FunctionKey = Union[Callable[..., Any], str, NamedFunction]

_KINDS: dict[str, type["LayerSpec"]] = {}                     # kind name -> class, in registration order
_MODULE_RULES: dict[type, tuple[str, ModuleRule]] = {}        # module type -> (kind, rule)
_FUNCTION_RULES: dict[Any, tuple[str, FunctionRule]] = {}     # function / method name / NamedFunction -> (kind, rule)


class LayerSpec:
    """Base of all layer kinds. Subclasses are frozen dataclasses with a ``kind`` name (module doc)."""

    kind: ClassVar[str] = ""
    # Traits the ops read instead of keeping lists of classes:
    channelwise: ClassVar[bool] = False     # acts on each channel separately (both ends share the channel axis)
    keeps_channels: ClassVar[bool] = False  # the output has the input's channels, same layout (C, H, W) -> (C, ., .)
    runtime: ClassVar[Callable[..., nn.Module] | None] = None   # the module computing the kind (see above)
    import_modules: ClassVar[Mapping[type, ModuleRule]] = {}
    import_functions: ClassVar[Mapping[FunctionKey, FunctionRule]] = {}
    if TYPE_CHECKING:  # every concrete kind is a dataclass (declared for the checker only)
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def out_shape(self, shape: Shape) -> Shape:
        """The output shape for an input of ``shape``; raises ``SpecError`` if it does not fit."""
        return shape

    def param_shapes(self) -> dict[str, Shape]:
        """Learnable parameters and buffers of the layer, by state-dict name."""
        return {}

    def init_params(self, gen: torch.Generator, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """Fresh tensors for a newly built layer (He init for convs, identity BN, ...)."""
        return {}

    def draw_label(self) -> str:
        """The layer's short name in drawings; every registered kind defines its own."""
        return self.kind

    def is_linear(self) -> bool:
        """True when the layer is a linear map of its input (used by the morph solver)."""
        return False

    def module(self) -> nn.Module:
        """A module computing this layer (:func:`.runtime.build_layer`); its ``state_dict`` keys are
        ``param_shapes()``'s keys."""
        return runtime.build_layer({"kind": self.kind, **dataclasses.asdict(self)})

    def __init_subclass__(cls, register: bool = True, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("kind", "") and register:   # no kind: an abstract helper base (e.g. the pooling base)
            register_kind(cls)


def need_chw(kind: str, shape: Shape) -> None:
    if len(shape) != 3:
        raise SpecError(f"{kind} needs a (C, H, W) feature map but got shape {tuple(shape)}")


def need_channels(kind: str, shape: Shape, channels: int) -> None:
    if shape[0] != channels:
        raise SpecError(f"{kind} expects {channels} input channels but the blob has {shape[0]}")


def conv_size(size: int, k: int, stride: int, pad: int, dilation: int = 1) -> int:
    """The output size of a convolution or pooling window along one axis."""
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


# ------------------------------------------------------------------------------------ registry
def _where(cls: type) -> str:
    file = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return f"class {cls.__qualname__} in {file}" if file else f"class {cls.__qualname__} in module {cls.__module__}"


def register_kind(cls: type[LayerSpec]) -> None:
    """Register ``cls`` (called when a subclass of :class:`LayerSpec` with a ``kind`` is defined)."""
    kind, where = cls.kind, _where(cls)

    def refuse(why: str) -> KindRegistrationError:
        return KindRegistrationError(f"layer kind {kind!r} ({where}) {why}")

    other = _KINDS.get(kind)
    if other is not None:
        raise KindRegistrationError(f"layer kind {kind!r} is defined twice ({_where(other)} and {where}); "
                                    "give the new class another 'kind'")
    made_by = cls.runtime
    if made_by is None:
        raise refuse("declares no runtime; set runtime = the nn.Module class computing it (torch only, "
                     "see morphism/kinds/base.py)")
    problem = runtime_problem(made_by)
    if problem:
        raise refuse(f"has a runtime exports cannot ship: {problem}")
    if torch_reference(made_by) is None:
        for name, known in _KINDS.items():
            theirs = known.runtime
            if theirs is not made_by and getattr(theirs, "__name__", None) == made_by.__name__:
                raise refuse(f"names its runtime {made_by.__name__!r} like kind {name!r} does ({_where(known)}); "
                             "an export holds both in one file, so rename one")
    if cls.draw_label is LayerSpec.draw_label:
        raise refuse("declares no draw_label(); return the layer's short name in drawings (e.g. 'conv3x3/2')")
    modules = dict(cls.__dict__.get("import_modules", {}))
    functions = dict(cls.__dict__.get("import_functions", {}))
    for t in modules:
        if not (isinstance(t, type) and issubclass(t, nn.Module)):
            raise refuse(f"lists {t!r} in import_modules, which is not an nn.Module class")
        if t in _MODULE_RULES:
            raise refuse(f"imports {t.__module__}.{t.__qualname__} modules, which kind {_MODULE_RULES[t][0]!r} "
                         "imports already")
    for f in functions:
        if not (callable(f) or isinstance(f, (str, NamedFunction))):
            raise refuse(f"lists {f!r} in import_functions, which is not a function, a method name or a NamedFunction")
        if f in _FUNCTION_RULES:
            raise refuse(f"imports calls of {f!r}, which kind {_FUNCTION_RULES[f][0]!r} imports already")
    _KINDS[kind] = cls
    runtime.BUILDERS[kind] = made_by
    _MODULE_RULES.update((t, (kind, rule)) for t, rule in modules.items())
    _FUNCTION_RULES.update((f, (kind, rule)) for f, rule in functions.items())


def unregister_kind(kind: str) -> type[LayerSpec]:
    """Remove a registered kind (its class, runtime and import rules); returns its class."""
    cls = _KINDS.pop(kind, None)
    if cls is None:
        raise SpecError(f"layer kind {kind!r} is not registered")
    runtime.BUILDERS.pop(kind, None)
    for table in (_MODULE_RULES, _FUNCTION_RULES):
        for key in [k for k, (owner, _) in table.items() if owner == kind]:
            del table[key]
    return cls


def registered_kinds() -> dict[str, type[LayerSpec]]:
    """The kinds registered so far, by name (a copy; :func:`morphnas.morphism.kinds.layer_kinds` is
    the complete list: importing that package imports every kind file)."""
    return dict(_KINDS)


def module_rule(module_type: type) -> ModuleRule | None:
    """The registered rule importing modules of exactly ``module_type``, if any."""
    hit = _MODULE_RULES.get(module_type)
    return hit[1] if hit else None


def imported_module_types() -> frozenset[type]:
    """Every module type a kind imports (the importer's trace keeps them as single calls)."""
    return frozenset(_MODULE_RULES)


def function_rule(target: Any) -> FunctionRule | None:
    """The registered rule importing calls of ``target`` (a function or a ``Tensor`` method name)."""
    try:
        hit = _FUNCTION_RULES.get(target)
    except TypeError:  # an unhashable target is nobody's
        hit = None
    if hit is None and not isinstance(target, str):
        hit = next((h for k, h in _FUNCTION_RULES.items() if isinstance(k, NamedFunction) and k.matches(target)), None)
    return hit[1] if hit else None
