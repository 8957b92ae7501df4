"""Ignite handler that stops (or skips) a training step whose loss is NaN or infinite."""

from __future__ import annotations

import logging

import torch
from ignite.engine import Engine
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys

logger = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """Raised when the training loss is NaN or infinite."""


class NonFiniteLossHandler:
    """Check the loss right after it is computed, before any gradient reaches the weights.

    ``mode="stop"`` raises ``NonFiniteLossError`` naming the epoch and iteration: the run ends without another
    checkpoint, so the last good one stays as it was. ``mode="skip"`` drops the step: the loss is replaced by a
    constant and gradients are cleared, so the optimizer leaves every weight (and its momentum) untouched; under AMP
    the grad scaler already skips steps with non-finite gradients.
    """

    def __init__(self, mode: str = "stop") -> None:
        if mode not in ("stop", "skip"):
            raise ValueError(f"nonfinite loss mode must be 'stop' or 'skip', got {mode!r}")
        self.mode = mode
        self.skipped = 0

    def attach(self, engine: Engine) -> None:
        """Register the handler on ``engine`` (a MONAI trainer)."""
        engine.add_event_handler(IterationEvents.LOSS_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        loss = engine.state.output[CommonKeys.LOSS]
        if bool(torch.isfinite(loss.detach()).all()):
            return
        where = f"epoch {engine.state.epoch}, iteration {engine.state.iteration}"
        if self.mode == "stop":
            raise NonFiniteLossError(f"training loss is {loss.item()} at {where}; stopping, last checkpoint kept")
        self.skipped += 1
        logger.warning("training loss is %s at %s; step skipped (%d so far)", loss.item(), where, self.skipped)
        if getattr(engine, "amp", False) and getattr(engine, "scaler", None) is not None:
            return  # the grad scaler finds the non-finite gradients and skips the optimizer step itself
        # a leaf with no path to the weights: backward() gives them no gradient, and SGD skips gradient-less params
        engine.state.output[CommonKeys.LOSS] = torch.zeros((), device=loss.device, requires_grad=True)
        engine.optimizer.zero_grad(set_to_none=True)
