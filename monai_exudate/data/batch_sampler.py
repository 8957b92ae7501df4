"""Training sampler whose every batch is full, so a set of any size (odd, or smaller than a batch) trains."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized

import torch.distributed as dist
from monai.data import DataLoader, DistributedSampler


class FullBatchSampler(DistributedSampler):
    """MONAI ``DistributedSampler`` that fills the last, short batch of each epoch so every batch has ``batch_size``
    samples.

    Why not ``drop_last``: it loses a set smaller than a batch entirely, and BatchNorm in training mode (PSPNet's
    1x1-pooled branch) needs at least two samples per batch, so a short batch of one fails. Here each epoch visits
    every image of the shard once, in an order drawn from ``(seed, epoch)`` only (not from the global random
    state, so a resumed run draws the same order), and the last batch is topped up with the first images of that
    same order, repeated as often as needed (a set of one image makes batches of that image twice). An epoch has
    ``ceil(shard / batch_size)`` batches; the learning-rate schedule can count on ``len(dataloader)``.

    Without an initialised process group it is a single-process sampler (``num_replicas=1, rank=0``); under DDP
    each rank gets an equal shard (padded as ``DistributedSampler(even_divisible=True)`` does), so all ranks run
    the same number of iterations. MONAI's workflows call ``set_epoch`` at each epoch start.
    """

    def __init__(
        self,
        dataset: Sized,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if len(dataset) < 1:
            raise ValueError("the training set is empty: nothing to sample")
        distributed = dist.is_available() and dist.is_initialized()
        if num_replicas is None and not distributed:
            num_replicas, rank = 1, 0
        super().__init__(dataset, even_divisible=True, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed)  # fmt: skip
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(self.num_samples / self.batch_size) * self.batch_size

    def __iter__(self) -> Iterator[int]:
        shard = list(super().__iter__())
        filled = len(self)
        return iter((shard * math.ceil(filled / len(shard)))[:filled])


def full_batch_loader(dataset: Sized, batch_size: int, seed: int = 0, num_workers: int = 0) -> DataLoader:
    """A training ``DataLoader`` over ``dataset`` whose every batch is full, shuffled by :class:`FullBatchSampler`
    from ``seed`` (the bundles' training loaders)."""
    sampler = FullBatchSampler(dataset, batch_size=batch_size, seed=seed)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers)
