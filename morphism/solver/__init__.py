"""Filter-level solvers for morphs: NetMorph decomposition of one filter into two.

``decompose`` is the entry point used by ``deepen`` and ``insert_path``; see its module docstring
for what "dense", "sparse" and "approx" mean and when each is possible.
"""
from .decompose import (Decomposition, decompose, dense_capacity_ok, min_dense_width, recommended_dense_width,
                        relative_residual, sparse_ok)

__all__ = ["Decomposition", "decompose", "dense_capacity_ok", "min_dense_width", "recommended_dense_width",
           "relative_residual", "sparse_ok"]
