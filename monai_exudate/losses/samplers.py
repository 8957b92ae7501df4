"""Pixel samplers that turn a label map into per-pixel multiplicities for a Dice loss over a multiset."""

from __future__ import annotations

import math

import torch

__all__ = ["UniformPixelSampler", "RebalancedPixelSampler", "INVERSE_FREQUENCY"]

INVERSE_FREQUENCY = "inverse_frequency"


def _channel_first_flat(target: torch.Tensor) -> torch.Tensor:
    """View ``[B, C, *spatial]`` as ``[C, B * prod(spatial)]`` so that each channel is sampled over the whole batch."""
    if target.ndim < 3:
        raise ValueError(f"target must have shape [B, C, *spatial], got {tuple(target.shape)}.")
    return target.transpose(0, 1).reshape(target.shape[1], -1)


def _restore_shape(flat: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_channel_first_flat`."""
    b, c = target.shape[:2]
    return flat.reshape(c, b, *target.shape[2:]).transpose(0, 1).contiguous()


class UniformPixelSampler:
    """Every pixel drawn exactly once: multiplicity 1 everywhere, so the Dice over the multiset is the plain Dice."""

    def __call__(self, target: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Per-pixel counts (all ones), same shape and floating dtype as ``target``."""
        return torch.ones_like(target, dtype=_float_dtype(target))

    def expected(self, target: torch.Tensor) -> torch.Tensor:
        """Expected per-pixel counts (all ones)."""
        return torch.ones_like(target, dtype=_float_dtype(target))


def _float_dtype(target: torch.Tensor) -> torch.dtype:
    return target.dtype if target.is_floating_point() else torch.get_default_dtype()


class RebalancedPixelSampler:
    """Re-balanced pixel sampler with replacement (small-exudate branch of the DSM loss).

    Per channel, ``N = B * prod(spatial)`` pixels are drawn over the whole batch: ``N1 = round(sample_rate * N)``
    uniformly among the positive pixels and ``N - N1`` uniformly among the background pixels, with replacement.
    A draw is returned as per-pixel multiplicities, so the Dice over the sampled multiset equals the Dice weighted by
    these counts. ``sample_rate="inverse_frequency"`` sets ``N1 / N`` to the background fraction of that channel.

    Degenerate channels: with no positive pixel all ``N`` draws go to the background (and with no background pixel
    all ``N`` draws go to the positives), so the multiset always holds ``N`` pixels and the loss stays finite.

    Args:
        sample_rate: fraction of draws taken among positive pixels, in [0, 1], or ``"inverse_frequency"``.
        generator: optional random generator used when the call does not pass one; draws are made on its device
            and moved to the target's device.
    """

    def __init__(self, sample_rate: float | str = 0.5, generator: torch.Generator | None = None) -> None:
        if isinstance(sample_rate, str):
            if sample_rate != INVERSE_FREQUENCY:
                raise ValueError(
                    f"sample_rate must be a float in [0, 1] or '{INVERSE_FREQUENCY}', got {sample_rate!r}."
                )
        elif not 0.0 <= float(sample_rate) <= 1.0:
            raise ValueError(f"sample_rate must lie in [0, 1], got {sample_rate}.")
        self.sample_rate = sample_rate
        self.generator = generator

    def _split(self, num_pos: int, num_neg: int) -> int:
        """Number of positive draws ``N1`` for one channel, applying the degenerate-channel rule."""
        total = num_pos + num_neg
        if num_pos == 0:
            return 0
        if num_neg == 0:
            return total
        if self.sample_rate == INVERSE_FREQUENCY:
            # N1 / N = background fraction, i.e. N1 = number of background pixels.
            return num_neg
        return int(math.floor(float(self.sample_rate) * total + 0.5))

    def __call__(self, target: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw one multiset; returns per-pixel counts with the shape of ``target`` (floating dtype)."""
        generator = generator if generator is not None else self.generator
        flat = _channel_first_flat(target) > 0.5
        counts = torch.zeros(flat.shape, dtype=torch.int64, device=target.device)
        draw_device = generator.device if generator is not None else target.device
        for c in range(flat.shape[0]):
            pos = flat[c]
            num_pos = int(pos.sum())
            total = pos.numel()
            n1 = self._split(num_pos, total - num_pos)
            for mask, size, n_draws in ((pos, num_pos, n1), (~pos, total - num_pos, total - n1)):
                if n_draws == 0:
                    continue
                picks = torch.randint(size, (n_draws,), generator=generator, device=draw_device)
                # the k-th count goes to the k-th pixel of the class, in memory order
                counts[c].masked_scatter_(mask, torch.bincount(picks.to(target.device), minlength=size))
        return _restore_shape(counts.to(_float_dtype(target)), target)

    def expected(self, target: torch.Tensor) -> torch.Tensor:
        """Expected per-pixel counts: ``N1 / num_pos`` on positives and ``(N - N1) / num_neg`` on background."""
        if target.ndim < 3:
            raise ValueError(f"target must have shape [B, C, *spatial], got {tuple(target.shape)}.")
        pos = target > 0.5
        dims = [0, *range(2, target.ndim)]
        num_pos = pos.sum(dims).tolist()
        total = target.numel() // target.shape[1]
        w_pos, w_neg = [], []
        for n_pos in num_pos:
            n1 = self._split(n_pos, total - n_pos)
            w_pos.append(n1 / n_pos if n_pos > 0 else 0.0)
            w_neg.append((total - n1) / (total - n_pos) if n_pos < total else 0.0)
        shape = (1, target.shape[1], *([1] * (target.ndim - 2)))
        dtype = _float_dtype(target)
        w_pos_t = torch.tensor(w_pos, dtype=dtype, device=target.device).reshape(shape)
        w_neg_t = torch.tensor(w_neg, dtype=dtype, device=target.device).reshape(shape)
        return torch.where(pos, w_pos_t, w_neg_t)
