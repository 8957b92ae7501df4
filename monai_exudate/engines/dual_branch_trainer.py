"""Supervised trainer that feeds each branch of a dual-branch network its own, independently shuffled batch."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from monai.engines.utils import default_prepare_batch
from monai.inferers import Inferer
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from monai_exudate.engines.aux_outputs import ForwardWithAuxInferer


class DualBranchPrepareBatch:
    """Prepare one batch for each branch: the engine's batch for the large branch, the next batch of a second loader
    for the small branch.

    Returns ``(x_large, (y_large, y_small), (x_small,), {})``, the four-item form MONAI's ``SupervisedTrainer``
    understands: its inferer gets ``x_small`` after ``x_large`` (:class:`~monai_exudate.engines.ForwardWithAuxInferer`
    calls ``network.forward_with_aux(x_large, x_small)``) and the loss is called as ``loss(pred, targets)``.
    """

    def __init__(self, small_branch_loader: Iterable, prepare_batch: Callable = default_prepare_batch) -> None:
        self.loader = small_branch_loader
        self.prepare_batch = prepare_batch
        self._iterator: Iterator | None = None

    def new_epoch(self, epoch: int) -> None:
        """Start a fresh pass (and, under DDP, a fresh shard shuffle) of the small-branch loader."""
        sampler = getattr(self.loader, "sampler", None)
        if isinstance(sampler, DistributedSampler):
            sampler.set_epoch(epoch)
        self._iterator = iter(self.loader)

    def _next(self) -> Any:
        if self._iterator is None:
            self._iterator = iter(self.loader)
        try:
            return next(self._iterator)
        except StopIteration:  # the two loaders may differ in length by a batch; wrap around
            self._iterator = iter(self.loader)
            return next(self._iterator)

    def __call__(self, batchdata: Any, device: Any = None, non_blocking: bool = False, **kwargs: Any) -> tuple:
        x_large, y_large = self.prepare_batch(batchdata, device, non_blocking, **kwargs)[:2]
        x_small, y_small = self.prepare_batch(self._next(), device, non_blocking, **kwargs)[:2]
        return x_large, (y_large, y_small), (x_small,), {}


class _TupleTargetLoss(torch.nn.Module):
    """Call a two-target loss as ``loss(pred, (y_large, y_small))``, the form the trainer uses."""

    def __init__(self, loss: Callable) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, pred: Any, targets: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return self.loss(pred, *targets)


class DualBranchTrainer(SupervisedTrainer):
    """MONAI ``SupervisedTrainer`` for dual-branch networks (DSM training); a single-branch trainer without a second
    loader.

    Each iteration takes a batch from ``train_data_loader`` for the large-exudate branch and one from
    ``small_branch_loader`` (a second, independently shuffled loader over the same training set) for the
    small-exudate branch. ``loss_function`` is then called as ``loss(pred, y_large, y_small)``. With
    ``small_branch_loader=None`` it behaves like ``SupervisedTrainer`` (the single-branch baselines).
    ``inferer`` defaults to :class:`~monai_exudate.engines.ForwardWithAuxInferer`: the losses take the network's
    logits with its auxiliary outputs (``forward_with_aux``), not the logits alone that ``forward`` returns.
    Every other argument is ``SupervisedTrainer``'s (AMP, handlers, metrics, ...).
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: Iterable | DataLoader,
        network: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_function: Callable,
        small_branch_loader: Iterable | DataLoader | None = None,
        prepare_batch: Callable = default_prepare_batch,
        inferer: Inferer | None = None,
        **kwargs: Any,
    ) -> None:
        self.dual = small_branch_loader is not None
        if self.dual:
            prepare_batch = DualBranchPrepareBatch(small_branch_loader, prepare_batch)
            loss_function = _TupleTargetLoss(loss_function)
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            prepare_batch=prepare_batch,
            inferer=ForwardWithAuxInferer() if inferer is None else inferer,
            **kwargs,
        )
        if self.dual:
            self.add_event_handler(Events.EPOCH_STARTED, lambda engine: prepare_batch.new_epoch(engine.state.epoch))
