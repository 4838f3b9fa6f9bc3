"""Knowledge distillation from the parent: how an approximate child repairs the error it was born with.

Why: an exact morph hands its child the parent's function, so a short low-LR fine-tune on the
labels is all it needs. A shrinking morph (``remove_layer``, ``prune_channels``, ...) does not: its
child starts with a measured output error (``MorphRecord.error``). LEMONADE (Elsken et al., 2019)
repairs it by training the child to match its parent's soft outputs as well as the labels
(Hinton et al., 2015):

    loss = (1 - w) · CE(y, student) + w · T² · KL(softmax(teacher / T) || softmax(student / T))

``T`` (temperature) softens both distributions so the small logits carry information; ``T²`` keeps
the soft term's gradients on the scale of the hard term's as ``T`` changes. ``w = 0`` is plain
cross-entropy, ``w = 1`` pure distillation.

The parent's logits are computed on the fly, on exactly the (augmented) batch the student sees, by
the parent compiled once, in eval mode and without gradients: nothing is read from disk per step and
nothing is kept beyond the batch. The rule for when (:func:`wants_distillation`): ``enabled: auto``
(the default) distils a child when any of its morph records is approximate and never an exact one;
``true`` / ``false`` force it.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import torch
import torch.nn.functional as F

from morphnas.morphism.compile import compile_network
from morphnas.morphism.graph import Network

DEFAULT_TEMPERATURE = 4.0
DEFAULT_WEIGHT = 0.5


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, y: torch.Tensor,
                 temperature: float = DEFAULT_TEMPERATURE, weight: float = DEFAULT_WEIGHT) -> torch.Tensor:
    """The mixed loss above, averaged over the batch (KL summed over classes, ``batchmean``)."""
    t = float(temperature)
    hard = F.cross_entropy(student, y)
    if weight == 0:
        return hard
    soft = F.kl_div(F.log_softmax(student / t, dim=1), F.log_softmax(teacher.detach() / t, dim=1),
                    reduction="batchmean", log_target=True) * (t * t)
    return (1.0 - weight) * hard + weight * soft


class Teacher:
    """The parent as a frozen teacher: its logits on a batch, and the distillation loss against them."""

    def __init__(self, parent: Network, temperature: float = DEFAULT_TEMPERATURE, weight: float = DEFAULT_WEIGHT):
        if not temperature > 0:
            raise ValueError(f"distillation temperature must be > 0, got {temperature}")
        if not 0 <= weight <= 1:
            raise ValueError(f"distillation weight must be in [0, 1], got {weight}")
        self.temperature = float(temperature)
        self.weight = float(weight)
        self.network = parent
        self.module = compile_network(parent).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    def to(self, device: str | torch.device) -> "Teacher":
        self.module.to(device)
        return self

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.module.eval()       # BN uses the parent's running statistics, never the batch's
        return self.module(x)

    def loss(self, student_logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The distillation loss of the student's logits on batch ``x`` with labels ``y``."""
        return distill_loss(student_logits, self.logits(x).to(student_logits.dtype), y, self.temperature, self.weight)


def wants_distillation(enabled: Any, records: Iterable[Mapping[str, Any]]) -> bool:
    """Whether a child made by ``records`` (morph records as JSON) fine-tunes with distillation:
    ``enabled`` is ``"auto"`` (only when a record is approximate), ``True`` or ``False``."""
    if enabled == "auto":
        return any(r.get("mode") == "approximate" for r in records)
    return bool(enabled)


def teacher_for(parent: Network, settings: Mapping[str, Any], records: Iterable[Mapping[str, Any]]) -> Teacher | None:
    """The worker's hook: a :class:`Teacher` from the parent when ``settings`` (the
    ``finetune.distill`` section as a mapping; empty means the defaults) and the child's records ask
    for distillation, else ``None``."""
    if not wants_distillation(settings.get("enabled", "auto"), list(records)):
        return None
    return Teacher(parent, float(settings.get("temperature", DEFAULT_TEMPERATURE)),
                   float(settings.get("weight", DEFAULT_WEIGHT)))
