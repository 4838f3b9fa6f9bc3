"""Argument helpers shared by the ``morphnas`` commands.

Values that argparse would reject with a two-line usage message (a bad ``--classes`` or
``--dtype``) are parsed here instead, so every user mistake ends as one line and exit code 2.
"""
from __future__ import annotations

import torch

from morphnas.morphism.errors import did_you_mean

from .registry import CLIError

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def positive_int(value: str | int | None, flag: str) -> int | None:
    """``None`` stays ``None``; otherwise an int >= 1 or a :class:`CLIError` naming ``flag``."""
    if value is None:
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise CLIError(f"{flag} must be a positive integer, got {value!r}") from None
    if n < 1:
        raise CLIError(f"{flag} must be a positive integer, got {value!r}")
    return n


def int_arg(value: str | int | None, flag: str) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CLIError(f"{flag} must be an integer, got {value!r}") from None


def dtype_arg(value: str) -> torch.dtype:
    if value in DTYPES:
        return DTYPES[value]
    raise CLIError(f"--dtype must be one of {', '.join(DTYPES)}, got {value!r}{did_you_mean(value, DTYPES, known=None)}")
