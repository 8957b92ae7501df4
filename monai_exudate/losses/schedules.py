"""Epoch schedules for the DSM loss weight alpha (large-branch share), epochs counted from 1."""

from __future__ import annotations

import math

__all__ = ["ParabolicDecay", "LinearDecay", "CosineDecay", "ConstantAlpha"]


def _check_epoch(epoch: int) -> int:
    if isinstance(epoch, bool) or int(epoch) != epoch:
        raise ValueError(f"epoch must be an integer, got {epoch!r}.")
    if epoch < 1:
        raise ValueError(f"epoch is counted from 1, got {epoch}.")
    return int(epoch)


def _check_max_epochs(max_epochs: int) -> int:
    if isinstance(max_epochs, bool) or int(max_epochs) != max_epochs or max_epochs < 1:
        raise ValueError(f"max_epochs must be a positive integer, got {max_epochs!r}.")
    return int(max_epochs)


def _clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


class _Decay:
    """Shared validation: ``progress = min((epoch - 1) / max_epochs, 1)``, result clamped to [0, 1]."""

    def __init__(self, max_epochs: int) -> None:
        self.max_epochs = _check_max_epochs(max_epochs)

    def _progress(self, epoch: int) -> float:
        # past the last scheduled epoch the schedule stays at its end value (cosine would rise again)
        return min((_check_epoch(epoch) - 1) / self.max_epochs, 1.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_epochs={self.max_epochs})"


class ParabolicDecay(_Decay):
    """``alpha = 1 - ((E - 1) / E_max) ** 2`` (the authors' schedule, alpha = 1 in the first epoch)."""

    def __call__(self, epoch: int) -> float:
        return _clamp(1.0 - self._progress(epoch) ** 2)


class LinearDecay(_Decay):
    """``alpha = 1 - (E - 1) / E_max``."""

    def __call__(self, epoch: int) -> float:
        return _clamp(1.0 - self._progress(epoch))


class CosineDecay(_Decay):
    """``alpha = (1 + cos(pi * (E - 1) / E_max)) / 2``."""

    def __call__(self, epoch: int) -> float:
        return _clamp(0.5 * (1.0 + math.cos(math.pi * self._progress(epoch))))


class ConstantAlpha:
    """The same alpha at every epoch.

    ``max_epochs`` is accepted (and only validated) so that a config can swap schedules by changing ``_target_``.
    """

    def __init__(self, value: float, max_epochs: int | None = None) -> None:
        if not 0.0 <= float(value) <= 1.0:
            raise ValueError(f"value must lie in [0, 1], got {value}.")
        self.value = float(value)
        self.max_epochs = None if max_epochs is None else _check_max_epochs(max_epochs)

    def __call__(self, epoch: int) -> float:
        _check_epoch(epoch)
        return self.value

    def __repr__(self) -> str:
        return f"ConstantAlpha(value={self.value})"
