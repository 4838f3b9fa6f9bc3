"""A table in a CSV file: ``data.path``, the ``data.target`` column, the ``data.features`` columns.

The first line names the columns. Features must be numbers; they are standardised per column
with the training split's statistics (recorded for the export, whose ``predict`` applies them to
raw rows). The target is a class label (any text; classes are its sorted distinct values) for
``task: classification``, or a number for ``task: regression`` (standardised for training, the
metric and the export's predictions in the target's own units). A fixed ``data.test_fraction`` of
the rows (seed-independent) is the test split.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from morphnas.search.data.registry import DataError, register_dataset

TEST_SEED = 12345


def read_table(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r and any(c.strip() for c in r)]
    except FileNotFoundError:
        raise DataError(f"data.path {str(path)!r}: no such file; name the CSV file with the table") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"data.path {str(path)!r} cannot be read as CSV ({e})") from None
    if len(rows) < 2:
        raise DataError(f"data.path {str(path)!r}: needs a header line and at least one row")
    header = [h.strip() for h in rows[0]]
    for i, r in enumerate(rows[1:], start=2):
        if len(r) != len(header):
            raise DataError(f"data.path {str(path)!r} line {i}: {len(r)} values for {len(header)} columns")
    return header, rows[1:]


def _numbers(rows: list[list[str]], col: int, name: str, path: Path) -> np.ndarray:
    out = np.empty(len(rows), dtype=np.float64)
    for i, r in enumerate(rows):
        try:
            out[i] = float(r[col])
        except ValueError:
            raise DataError(f"data.path {str(path)!r} line {i + 2}, column {name!r}: {r[col]!r} is not a number; "
                            f"drop the column from data.features or encode it as numbers") from None
    if not np.isfinite(out).all():
        raise DataError(f"data.path {str(path)!r}, column {name!r}: has NaN or infinite values; fill them in")
    return out


@register_dataset("csv", raw_max=1.0, channels="features")
def csv_table(cfg, seed: int, task: str = "classification"):
    """A CSV table: ``data.path``, ``data.target`` and (default: every other column) ``data.features``."""
    if not cfg.path:
        raise DataError("dataset 'csv' needs data.path (the CSV file) and data.target (the column to predict)")
    path = Path(cfg.path).expanduser()
    header, rows = read_table(path)
    if not cfg.target:
        raise DataError(f"dataset 'csv' needs data.target, the column to predict (columns: {', '.join(header)})")
    if cfg.target not in header:
        raise DataError(f"data.target {cfg.target!r} is not a column of {str(path)!r} (columns: {', '.join(header)})")
    features = list(cfg.features) if cfg.features else [h for h in header if h != cfg.target]
    missing = [f for f in features if f not in header]
    if missing:
        raise DataError(f"data.features {missing} are not columns of {str(path)!r} (columns: {', '.join(header)})")
    if cfg.target in features:
        raise DataError(f"data.features includes the target {cfg.target!r}; leave it out")
    x = np.stack([_numbers(rows, header.index(f), f, path) for f in features], axis=1)
    t = header.index(cfg.target)
    info = {"features": features, "target": cfg.target}
    if task == "regression":
        y = torch.tensor(_numbers(rows, t, cfg.target, path), dtype=torch.float32)
    else:
        labels = [r[t].strip() for r in rows]
        classes = sorted(set(labels), key=lambda v: (_maybe_number(v), v))
        index = {c: i for i, c in enumerate(classes)}
        y = torch.tensor([index[v] for v in labels], dtype=torch.int64)
        info["class_names"] = classes
    xt = torch.tensor(x, dtype=torch.float32)
    perm = torch.from_numpy(np.random.default_rng(TEST_SEED).permutation(len(y)))
    n_test = int(round(cfg.test_fraction * len(y)))
    if n_test < 1 or len(y) - n_test < 2:
        raise DataError(f"data.path {str(path)!r} has {len(y)} rows: too few for a test split of "
                        f"{cfg.test_fraction} and a validation split; add rows")
    return xt[perm[n_test:]], y[perm[n_test:]], xt[perm[:n_test]], y[perm[:n_test]], info


def _maybe_number(v: str) -> float:
    try:
        return float(v)
    except ValueError:
        return float("inf")
