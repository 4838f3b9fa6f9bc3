"""The JSON form of layer specs: ``{"kind": <name>, <field>: <value>, ...}``.

Kind names appear only here (and in the runtime builders of exports); a spec class is found by the
kind it registered (:func:`.kinds.layer_kinds`), and an unknown kind or field gets a one-line
error naming where it was read, the value and the close matches.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from .errors import SpecError, did_you_mean
from .kinds import layer_kinds
from .layers import LayerSpec


def spec_to_json(spec: LayerSpec) -> dict[str, Any]:
    return {"kind": spec.kind, **dataclasses.asdict(spec)}


def spec_from_json(data: Any, where: str = "layer") -> LayerSpec:
    """Build a spec from its JSON form, with errors that name ``where``, the field and the fix."""
    if not isinstance(data, dict) or "kind" not in data:
        raise SpecError(f"{where}: expected an object with a 'kind' field, got {data!r}")
    kind = data["kind"]
    kinds = layer_kinds()
    cls = kinds.get(kind)
    if cls is None:
        raise SpecError(f"{where}: unknown layer kind {kind!r}{did_you_mean(kind, kinds, known='known kinds')}")
    fields = {f.name for f in dataclasses.fields(cls)}
    extra = set(data) - fields - {"kind"}
    if extra:
        raise SpecError(f"{where}: {kind} has no field(s) {sorted(extra)}; its fields are {sorted(fields)}")
    try:
        return cls(**{k: v for k, v in data.items() if k != "kind"})
    except TypeError as e:
        raise SpecError(f"{where}: bad fields for {kind}: {e}") from None
