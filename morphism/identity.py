"""Identity-initialised layers: one home for every "insert it as the identity" helper.

Every layer made here computes the identity in eval mode at insertion and becomes trainable
afterwards: BN with γ = sqrt(var + eps), β = mean (:func:`identity_bn` with given or unit
statistics, :func:`identity_bn_unit_gamma` with var = 1 - eps so γ = 1); a parametric activation
with a = 1 (or a PReLU with slope 1, the same family: PReLU(w) = (1 - w)·relu + w·id).
:func:`calibrate_identity_bns` later gives inserted BNs the statistics of real data. Used by the
ops, the module builder and the search runner, so it lives outside both ``ops`` and ``module``.
"""
from __future__ import annotations

from typing import cast

import torch

from .compile import compile_network
from .errors import NotApplicable, did_you_mean
from .graph import Network
from .layers import BatchNorm2d, LayerSpec, PAct, PReLU
from .runtime import ACTIVATIONS

# Names accepted for an inserted activation: "prelu", any fixed function (as a PAct), or none.
ACT_CHOICES = ("prelu", *ACTIVATIONS)


def bn_identity_params(channels: int, dtype: torch.dtype, mean: torch.Tensor | None = None,
                       var: torch.Tensor | None = None, eps: float = 1e-5) -> dict[str, torch.Tensor]:
    """Tensors of a BN that is the identity in eval mode whatever its running statistics."""
    mean = torch.zeros(channels, dtype=torch.float64) if mean is None else mean.detach().double()
    var = torch.ones(channels, dtype=torch.float64) if var is None else var.detach().double()
    return {"weight": torch.sqrt(var + eps).to(dtype), "bias": mean.to(dtype),
            "running_mean": mean.to(dtype), "running_var": var.to(dtype),
            "num_batches_tracked": torch.tensor(0, dtype=torch.long)}


def check_act(act: str | None, op: str) -> None:
    """``NotApplicable`` naming the op unless ``act`` is an inserted-activation name (or none)."""
    if act is None or act == "none":
        return
    if act not in ACT_CHOICES:
        hint = did_you_mean(act, ACT_CHOICES, known=None)
        raise NotApplicable(f"{op}: act={act!r} is not an activation{hint} (choose from "
                            f"{', '.join(ACT_CHOICES)} or none)")


def identity_activation(act: str | None, channels: int, dtype: torch.dtype
                        ) -> tuple[LayerSpec, dict[str, torch.Tensor]] | None:
    """A parametric activation equal to the identity (``None`` for act None/"none")."""
    if act is None or act == "none":
        return None
    if act == "prelu":
        return PReLU(channels, 1.0), {"weight": torch.ones(channels, dtype=dtype)}
    return PAct(channels, act), {"a": torch.ones(channels, dtype=dtype)}


def identity_bn(channels: int, dtype: torch.dtype, mean: torch.Tensor | None = None,
                var: torch.Tensor | None = None, eps: float = 1e-5) -> tuple[BatchNorm2d, dict[str, torch.Tensor]]:
    """An identity BN with running statistics ``mean``/``var`` (default 0 and 1): γ = sqrt(var + eps)."""
    return BatchNorm2d(channels, eps), bn_identity_params(channels, dtype, mean=mean, var=var, eps=eps)


def identity_bn_unit_gamma(channels: int, dtype: torch.dtype) -> tuple[BatchNorm2d, dict[str, torch.Tensor]]:
    """An identity BN whose running variance is ``1 - eps``, so that γ = sqrt(var + eps) = 1 (the
    module builder's choice: its BNs start as plain γ = 1, β = 0 layers)."""
    bn = BatchNorm2d(channels)
    var = torch.full((channels,), 1.0 - bn.eps, dtype=torch.float64)
    return bn, bn_identity_params(channels, dtype, var=var, eps=bn.eps)


@torch.no_grad()
def calibrate_identity_bns(net: Network, edges: list[str] | tuple[str, ...], x: torch.Tensor,
                           train_mode: bool = True) -> Network:
    """A copy of ``net`` whose identity BNs ``edges`` hold the statistics of their inputs on ``x``.

    Still the identity in eval mode (γ = sqrt(var + eps), β = mean). In train mode a BN normalises
    by batch statistics, so an identity BN with made-up statistics (mean 0, var 1) changes the
    function as soon as fine-tuning starts; with the statistics of a training batch it stays close
    to the identity. ``train_mode`` measures them as fine-tuning will see them: the other BNs on
    batch statistics, the listed ones as identities. Edges that are not identity BNs (any op's
    ``record.new_edges`` may be passed) are left alone.
    """
    out = net.copy()
    gm = compile_network(out).train(train_mode)
    seen: dict[str, torch.Tensor] = {}
    hooks = []
    for name in edges:
        if not (out.has_edge(name) and isinstance(out.edge(name).layer, BatchNorm2d) and _is_identity_bn(out, name)):
            continue
        mod = gm.get_submodule(name).eval()   # the identity it is, while the rest runs as in training
        hooks.append(mod.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, i[0].detach())))
    gm(x.to(out.dtype))
    for h in hooks:
        h.remove()
    for name, t in seen.items():
        layer = cast(BatchNorm2d, out.edge(name).layer)   # only identity BNs were hooked
        mean, var = t.double().mean((0, 2, 3)), t.double().var((0, 2, 3), unbiased=False)
        out.replace_layer(name, layer, bn_identity_params(layer.num_features, out.dtype, mean, var, layer.eps))
    return out


def _is_identity_bn(net: Network, name: str) -> bool:
    p, eps = net.params[name], cast(BatchNorm2d, net.edge(name).layer).eps
    w = torch.sqrt(p["running_var"].double() + eps)
    return bool(torch.allclose(p["weight"].double(), w, rtol=1e-6) and torch.allclose(p["bias"], p["running_mean"]))
