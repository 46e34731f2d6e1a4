"""What the fit loop's workers share: every row of the job's dataset (each worker holds all of it) and sums over
the workers (one collective)."""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist


class TrainingRows:
    """Every row of the job's dataset, numbered in the order the driver materialized it (fit.materialized_in_order).
    Each worker holds all of it: Arrow tables read from its node's object store without a copy."""

    def __init__(self, dataset_iterator):
        import ray

        self.blocks = ray.get(dataset_iterator.materialize().to_arrow_refs())
        self.starts = np.cumsum([0] + [block.num_rows for block in self.blocks])  # the row number each block starts at

    def __len__(self) -> int:
        return int(self.starts[-1])

    def take(self, row_ids: np.ndarray) -> list[dict]:
        block_of_row = np.searchsorted(self.starts, row_ids, side="right") - 1
        return [self.blocks[block].slice(row - self.starts[block], 1).to_pylist()[0] for row, block in zip(row_ids, block_of_row)]

    def list_lengths(self, column: str) -> np.ndarray:
        """The length of each row's list in `column` (0 where it is null), in row order."""
        import pyarrow.compute as pc

        lengths = [pc.fill_null(pc.list_value_length(block.column(column)), 0).to_numpy() for block in self.blocks]
        return np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int32)


def sum_over_workers(values: torch.Tensor, world_size: int) -> torch.Tensor:
    """Element-wise sum over the ranks of a tensor that lives on the worker's device (NCCL needs it there)."""
    if world_size > 1:
        dist.all_reduce(values)
    return values
