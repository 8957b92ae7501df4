"""Ignite handler that sets the DSM loss weight alpha at the start of every epoch."""

from __future__ import annotations

from collections.abc import Callable

import torch
from ignite.engine import Engine, Events


def find_alpha_owner(loss: torch.nn.Module) -> torch.nn.Module:
    """Return the module carrying the ``alpha`` attribute: the loss itself or a wrapped DSM loss."""
    for module in loss.modules() if isinstance(loss, torch.nn.Module) else [loss]:
        if hasattr(module, "alpha"):
            return module
    raise ValueError(f"loss {type(loss).__name__} has no DSM loss with an 'alpha' attribute")


class AlphaScheduleHandler:
    """Set ``alpha`` of the DSM loss from ``schedule(epoch)`` at each epoch start (epochs counted from 1).

    The value is also stored as ``engine.state.alpha`` and ``engine.state.metrics["alpha"]`` so stats and MLflow
    handlers log it. Because alpha is a
    function of the epoch alone, resuming from a checkpoint restores it with the epoch counter.

    With ``required=False`` a loss without alpha (a single-branch baseline) is accepted and the handler does nothing.
    """

    def __init__(self, loss: torch.nn.Module, schedule: Callable[[int], float], required: bool = True) -> None:
        try:
            self.owner: torch.nn.Module | None = find_alpha_owner(loss)
        except ValueError:
            if required:
                raise
            self.owner = None
        self.schedule = schedule

    def attach(self, engine: Engine) -> None:
        """Register the handler on ``engine``."""
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        if self.owner is None:
            return
        alpha = float(self.schedule(engine.state.epoch))
        self.owner.alpha = alpha
        engine.state.alpha = alpha
        # epoch-level loggers (StatsHandler, MLFlowHandler) report engine.state.metrics, and skip a trainer without any
        engine.state.metrics["alpha"] = alpha
