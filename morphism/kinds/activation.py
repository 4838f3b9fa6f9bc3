"""``activation``: a fixed element-wise non-linearity by name (the functions of ``runtime.ACTIVATIONS``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import SpecError, did_you_mean
from ..import_rules import Convert, Unsupported, extra_args, fn_name
from ..runtime import ACTIVATIONS
from .base import LayerSpec, Shape


class Elementwise(nn.Module):
    """A fixed element-wise non-linearity ``phi(x)`` by name."""

    def __init__(self, fn: str):
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ACTIVATIONS[self.fn](x)

    def extra_repr(self) -> str:
        return self.fn


def check_fn(fn: str) -> None:
    """Refuse an activation name the runtime does not know (also used by ``pact``)."""
    if fn not in ACTIVATIONS:
        raise SpecError(f"unknown activation function {fn!r}{did_you_mean(fn, ACTIVATIONS)}")


_MODULES: dict[type, tuple[str, Callable[[Any], str | None]]] = {
    # module type -> (IR fn, check returning a reason when a setting differs from the IR's)
    nn.ReLU: ("relu", lambda m: None),
    nn.ReLU6: ("relu6", lambda m: None),
    nn.Tanh: ("tanh", lambda m: None),
    nn.Sigmoid: ("sigmoid", lambda m: None),
    nn.SiLU: ("silu", lambda m: None),
    nn.GELU: ("gelu", lambda m: None if m.approximate == "none" else f"approximate={m.approximate!r}"),
    nn.ELU: ("elu", lambda m: None if m.alpha == 1.0 else f"alpha={m.alpha}"),
    nn.Softplus: ("softplus", lambda m: None if (m.beta, m.threshold) == (1.0, 20.0) else f"beta={m.beta}, threshold={m.threshold}"),
    nn.LeakyReLU: ("leaky_relu", lambda m: None if m.negative_slope == 0.01 else f"negative_slope={m.negative_slope} (use nn.PReLU)"),
    nn.Hardswish: ("hardswish", lambda m: None),
    nn.Hardsigmoid: ("hardsigmoid", lambda m: None),
    nn.Hardtanh: ("hardtanh", lambda m: None if (m.min_val, m.max_val) == (-1.0, 1.0) else f"min_val={m.min_val}, max_val={m.max_val}"),
}
# function -> (IR fn, names of its extra arguments with the values the IR computes)
_FUNCTIONS: dict[Any, tuple[str, tuple[tuple[str, Any], ...]]] = {
    F.relu: ("relu", (("inplace", None),)),
    torch.relu: ("relu", ()),
    torch.relu_: ("relu", ()),
    F.relu6: ("relu6", (("inplace", None),)),
    torch.tanh: ("tanh", ()),
    torch.sigmoid: ("sigmoid", ()),
    F.silu: ("silu", (("inplace", None),)),
    F.gelu: ("gelu", (("approximate", "none"),)),
    F.elu: ("elu", (("alpha", 1.0), ("inplace", None))),
    F.softplus: ("softplus", (("beta", 1.0), ("threshold", 20.0))),
    F.leaky_relu: ("leaky_relu", (("negative_slope", 0.01), ("inplace", None))),
    F.hardswish: ("hardswish", (("inplace", None),)),
    F.hardsigmoid: ("hardsigmoid", (("inplace", None),)),
    F.hardtanh: ("hardtanh", (("min_val", -1.0), ("max_val", 1.0), ("inplace", None))),
}
_METHODS = {"relu": "relu", "relu_": "relu", "tanh": "tanh", "tanh_": "tanh", "sigmoid": "sigmoid",
            "sigmoid_": "sigmoid"}


def _from_module(mod: nn.Module, shape: Shape | None) -> Convert | Unsupported:
    fn, check = _MODULES[type(mod)]
    bad = check(mod)
    if bad:
        return Unsupported(f"{type(mod).__name__}({bad})")
    return Convert([Activation(fn)], [{}], inplace=bool(getattr(mod, "inplace", False)))


def from_function(target: Any, args: tuple, kwargs: dict, shape: Shape | None = None) -> Convert | Unsupported | None:
    """An element-wise activation call, or ``None`` when ``target`` is not one (the importer also
    asks this on channels-last views, where only element-wise functions act alike)."""
    if target in _FUNCTIONS:
        fn, names = _FUNCTIONS[target]
        inplace, bad = extra_args(args, kwargs, names, fn_name(target))
        if bad:
            return Unsupported(bad)
        return Convert([Activation(fn)], [{}], inplace=inplace or target is torch.relu_)
    if isinstance(target, str) and target in _METHODS:
        if args or kwargs:
            return Unsupported(f"Tensor.{target} with arguments")
        return Convert([Activation(_METHODS[target])], [{}], inplace=target.endswith("_"))
    return None


@dataclass(frozen=True)
class Activation(LayerSpec):
    """A fixed element-wise non-linearity."""

    fn: str = "relu"
    kind: ClassVar[str] = "activation"
    channelwise: ClassVar[bool] = True
    keeps_channels: ClassVar[bool] = True
    runtime = Elementwise
    import_modules = dict.fromkeys(_MODULES, _from_module)
    import_functions = dict.fromkeys([*_FUNCTIONS, *_METHODS], from_function)

    def __post_init__(self):
        check_fn(self.fn)

    def draw_label(self) -> str:
        return self.fn
