"""FullBatchSampler: every batch full, every image once per epoch, order from (seed, epoch), equal DDP shards."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader

from monai_exudate.data.batch_sampler import FullBatchSampler


@pytest.mark.parametrize("num", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("batch", [2, 4])
def test_every_batch_is_full_and_every_image_seen(num, batch):
    sampler = FullBatchSampler(list(range(num)), batch_size=batch, seed=0)
    sampler.set_epoch(1)
    loader = DataLoader(torch.arange(num), batch_size=batch, sampler=sampler)
    batches = list(loader)
    assert len(batches) == len(loader) == math.ceil(num / batch)
    assert all(len(b) == batch for b in batches)
    assert set(torch.cat(batches).tolist()) == set(range(num))
    first_pass = torch.cat(batches).tolist()[:num]
    assert sorted(first_pass) == list(range(num))  # each image once before any repeat


def test_order_depends_on_seed_and_epoch_only():
    def order(seed, epoch):
        sampler = FullBatchSampler(list(range(9)), batch_size=2, seed=seed)
        sampler.set_epoch(epoch)
        torch.manual_seed(epoch * 7 + seed)  # the global random state plays no part
        return list(sampler)

    assert order(0, 3) == order(0, 3)
    assert order(0, 3) != order(0, 4)
    assert order(0, 3) != order(1, 3)


def test_ranks_get_equal_disjoint_shards():
    shards = []
    for rank in (0, 1):
        sampler = FullBatchSampler(list(range(7)), batch_size=2, seed=0, num_replicas=2, rank=rank)
        sampler.set_epoch(2)
        shards.append(list(sampler))
    assert len(shards[0]) == len(shards[1]) == 4  # 7 images: shards of 4 (one padded), 2 full batches each
    assert set(shards[0]) | set(shards[1]) == set(range(7))


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="batch_size"):
        FullBatchSampler([0, 1], batch_size=0)
    with pytest.raises(ValueError, match="empty"):
        FullBatchSampler([], batch_size=2)
