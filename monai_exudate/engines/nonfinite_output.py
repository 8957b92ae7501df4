"""Ignite handlers that make non-finite numbers loud at evaluation: a NaN/inf network output, a NaN/inf checkpoint."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine
from monai.engines.utils import IterationEvents
from monai.handlers import CheckpointLoader
from monai.utils import CommonKeys

from monai_exudate.engines.finite import NonFiniteWeightsError, describe, nonfinite_entries


class NonFiniteOutputError(FloatingPointError):
    """Raised when the network's output for an image holds NaN or infinite values."""


def _tensors(output: Any) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, Mapping):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        return [t for item in output for t in _tensors(item)]
    return []


def _names(batch: Any, size: int) -> list[str]:
    image = batch.get(CommonKeys.IMAGE) if isinstance(batch, Mapping) else None
    meta = getattr(image, "meta", None) or (batch.get("image_meta_dict") if isinstance(batch, Mapping) else None)
    source = (meta or {}).get("filename_or_obj")
    if isinstance(source, str):
        source = [source]
    if isinstance(source, (list, tuple)) and len(source) == size:
        return [str(s) for s in source]
    return [f"sample {i} of the batch" for i in range(size)]


class NonFiniteOutputHandler:
    """Fail an evaluation, naming the image, as soon as the network output (before any activation or threshold)
    holds a NaN or inf, instead of letting it turn into an all-zero map and finite-looking metrics.

    Runs at MONAI's ``FORWARD_COMPLETED``, so it sees the raw prediction. Why not Ignite's ``TerminateOnNan``: that
    watches the engine output after post-processing and ends the run quietly, without naming an image.
    """

    def attach(self, engine: Engine) -> None:
        """Register the check on an evaluator (a MONAI ``SupervisedEvaluator``)."""
        engine.add_event_handler(IterationEvents.FORWARD_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        pred = engine.state.output.get(CommonKeys.PRED) if isinstance(engine.state.output, Mapping) else None
        bad: set[int] = set()
        size = 0
        for tensor in _tensors(pred):
            if tensor.ndim == 0 or not tensor.is_floating_point():
                continue
            size = max(size, tensor.shape[0])
            finite = torch.isfinite(tensor.detach()).flatten(1).all(1)
            bad |= {i for i, ok in enumerate(finite.tolist()) if not ok}
        if bad:
            names = _names(engine.state.batch, size)
            images = ", ".join(names[i] for i in sorted(bad))
            raise NonFiniteOutputError(
                f"network output holds NaN or inf for {images} (iteration {engine.state.iteration}); the weights "
                "or the input are broken, so no metric or map is produced from it"
            )


class FiniteCheckpointLoader(CheckpointLoader):
    """MONAI ``CheckpointLoader`` that refuses, naming the file, a checkpoint holding NaN or inf, and says which file
    is missing or unreadable. Every argument is ``CheckpointLoader``'s."""

    def __call__(self, engine: Engine) -> None:
        path = Path(self.load_path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint {path} not found: train first, or set ckpt_dir")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any failure to read is reported with the file name
            raise RuntimeError(f"checkpoint {path} is unreadable (truncated or not a torch file): {err}") from err
        bad = nonfinite_entries(state)
        if bad:
            raise NonFiniteWeightsError(f"checkpoint {path} holds non-finite values in {describe(bad)}; refused")
        super().__call__(engine)
