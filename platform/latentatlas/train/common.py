"""What every objective's epoch shares: the data order, sums over ranks, the bare model."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist


def epoch_batches(n: int, epoch: int, seed: int, rank: int, world: int, batch_size: int):
    """This rank's minibatch indices for one epoch: a permutation fixed by (seed, epoch),
    cut into `world` equal shards, so every rank runs the same number of steps and a
    resumed run sees exactly the order an uninterrupted one would have."""
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    per_rank = n // world
    shard = perm[rank * per_rank:(rank + 1) * per_rank]
    steps = max(1, per_rank // batch_size)
    return [shard[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


def all_sum(values: list[float], device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t.tolist()


def unwrap(model):
    """The model inside DistributedDataParallel (prepare_model wraps it when world > 1)."""
    return model.module if hasattr(model, "module") else model


class Sums:
    """Batch-size-weighted sums of named scalars; `means` reduces them over ranks."""

    def __init__(self, *names: str):
        self.names, self.values, self.count = names, [0.0] * len(names), 0

    def add(self, n: int, *values: float) -> None:
        self.values = [s + v * n for s, v in zip(self.values, values, strict=True)]
        self.count += n

    def means(self, device) -> tuple[dict[str, float], float]:
        *totals, count = all_sum([*self.values, self.count], device)
        return {k: v / count for k, v in zip(self.names, totals, strict=True)}, count


def restore_optimizer(optimizer, state: dict | None, lr: float) -> None:
    """Load a checkpoint's optimizer state; a resumed run may change the learning rate."""
    if state is None:
        return
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        group["lr"] = lr
