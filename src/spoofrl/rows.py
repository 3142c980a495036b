"""Row selection shared by batch-like records (AlmBatch, Completions, Rollout): one way to name rows."""
from __future__ import annotations

from typing import Sequence

import torch

Rows = Sequence[int] | slice | torch.Tensor   # indices, a slice, or an index / boolean mask tensor


def row_indices(rows: Rows, size: int) -> list[int]:
    """The row numbers `rows` names among `size` rows."""
    if isinstance(rows, slice):
        return list(range(size))[rows]
    if isinstance(rows, torch.Tensor):
        rows = rows.nonzero().flatten() if rows.dtype == torch.bool else rows.flatten()
        return [int(r) for r in rows.tolist()]
    return [int(r) for r in rows]
