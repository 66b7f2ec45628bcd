"""Batch order as a pure function of (seed, step), so that resuming a run and splitting a batch
across ranks need no loader state: the data position *is* the step.
"""
from __future__ import annotations

import torch


class StepSampler:
    """Shuffled minibatches over ``n`` examples, reshuffled each epoch with ``seed + epoch``.

    ``indices(step)`` returns this rank's share of the global batch for ``step``; under
    ``world_size`` ranks each takes a contiguous slice, so together they cover the same global
    batch a single process would use.
    """

    def __init__(self, n: int, global_batch: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 drop_last: bool = True):
        if global_batch % world_size:
            raise ValueError(f"global batch {global_batch} is not divisible by world size {world_size}")
        if global_batch > n:
            raise ValueError(f"batch size {global_batch} is larger than the dataset ({n} examples)")
        self.n, self.batch, self.seed = n, global_batch, seed
        self.rank, self.world = rank, world_size
        self.steps_per_epoch = n // global_batch if drop_last else -(-n // global_batch)
        self._epoch, self._perm = None, None

    def order(self, g: torch.Generator) -> torch.Tensor:
        """One epoch's example order (batch ``i`` is the ``i``-th slice of ``batch`` items)."""
        return torch.randperm(self.n, generator=g)

    def indices(self, step: int) -> torch.Tensor:
        epoch, i = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
            self._perm, self._epoch = self.order(g), epoch
        batch = self._perm[i * self.batch: (i + 1) * self.batch]
        share = len(batch) // self.world
        return batch[self.rank * share: (self.rank + 1) * share]


class LengthBucketSampler(StepSampler):
    """StepSampler whose batches hold examples of similar length, so padding wastes little compute.

    Each epoch shuffles the examples, cuts the order into pools of ``pool`` batches, sorts every pool
    by ``lengths`` and cuts it into batches, then shuffles the batches (the bucketing of fairseq's
    and torchtext's iterators). Every example still appears at most once an epoch, the order is
    still a pure function of (seed, epoch), and a batch's lengths come from a random pool, so each
    batch is a random sample of one length range. Examples past the last whole batch wait for
    the next epoch, as with ``drop_last``.
    """

    def __init__(self, lengths, global_batch: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                 pool: int = 100):
        if pool < 1:
            raise ValueError(f"pool must be at least 1 batch (got {pool})")
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)
        if self.lengths.dim() != 1:
            raise ValueError(f"lengths must be one number per example (got shape {tuple(self.lengths.shape)})")
        super().__init__(len(self.lengths), global_batch, seed, rank, world_size, drop_last=True)
        self.pool = pool

    def order(self, g: torch.Generator) -> torch.Tensor:
        used = self.steps_per_epoch * self.batch
        perm = torch.randperm(self.n, generator=g)[:used]
        size = self.pool * self.batch
        pools = [p[torch.sort(self.lengths[p], stable=True).indices] for p in perm.split(size)]
        batches = torch.cat(pools).view(self.steps_per_epoch, self.batch)
        return batches[torch.randperm(self.steps_per_epoch, generator=g)].reshape(-1)


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Lay a 1-D token stream out as ``batch_size`` parallel columns: (B, L) with L = len // B.

    Row b holds the contiguous slice ``ids[b*L:(b+1)*L]``, so truncated BPTT can carry each row's
    hidden state from one window to the next.
    """
    length = ids.numel() // batch_size
    return ids[: length * batch_size].view(batch_size, length)


def rank_rows(data: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's rows of a batchified (B, L) stream."""
    b = data.shape[0]
    if b % world_size:
        raise ValueError(f"batch size {b} is not divisible by world size {world_size}")
    share = b // world_size
    return data[rank * share: (rank + 1) * share]


def tbptt_window(data: torch.Tensor, i: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``data[:, i:i+T]`` and next-token targets ``data[:, i+1:i+1+T]`` (T <= bptt)."""
    t = min(bptt, data.shape[1] - 1 - i)
    return data[:, i: i + t], data[:, i + 1: i + 1 + t]
