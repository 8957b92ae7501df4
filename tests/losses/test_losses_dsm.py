"""Tests for the DSM loss."""

import pytest
import torch

from monai_exudate.losses import DSMLoss, SampledDiceLoss


def _pair(seed, h=4, w=4, frac=0.3, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    target = (torch.rand(1, 1, h, w, generator=g) < frac).to(dtype)
    target[0, 0, 0, 0] = 1  # at least one positive pixel
    logits = torch.randn(1, 1, h, w, generator=g, dtype=dtype)
    return logits, target


def test_alpha_mixing():
    (xl, yl), (xs, ys) = _pair(0, 8, 8, dtype=torch.float32), _pair(1, 8, 8, dtype=torch.float32)
    loss = DSMLoss(mode="expected", alpha=1.0)
    large = SampledDiceLoss("uniform")(xl, yl)
    small = SampledDiceLoss("rebalanced", 0.5, mode="expected")(xs, ys)
    assert loss(xl, yl, xs, ys).item() == pytest.approx(large.item())
    loss.alpha = 0.0
    assert loss(xl, yl, xs, ys).item() == pytest.approx(small.item())
    loss.alpha = 0.3
    assert loss(xl, yl, xs, ys).item() == pytest.approx(0.3 * large.item() + 0.7 * small.item())


def test_alpha_setter_validation():
    loss = DSMLoss()
    for bad in (-0.1, 1.01):
        with pytest.raises(ValueError, match="alpha"):
            loss.alpha = bad
    with pytest.raises(ValueError, match="alpha"):
        DSMLoss(alpha=2.0)
    loss.alpha = 0.25
    assert loss.alpha == 0.25


@pytest.mark.parametrize("small_sampler", ["rebalanced", "uniform"])
def test_gradcheck_expected_and_uniform(small_sampler):
    (xl, yl), (xs, ys) = _pair(0), _pair(1)
    loss = DSMLoss(sample_rate=0.25, mode="expected", small_sampler=small_sampler, alpha=0.4)
    xl.requires_grad_(True)
    xs.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: loss(a, yl, b, ys), (xl, xs))


def test_gradcheck_sampled_with_fixed_draw():
    (xl, yl), (xs, ys) = _pair(2), _pair(3)
    loss = DSMLoss(sample_rate=0.5, mode="sampled", alpha=0.6)

    def fixed_draw(a, b):
        # a fresh generator with the same seed gives the same multiset at every evaluation
        loss.small_loss.sampler.generator = torch.Generator().manual_seed(11)
        return loss(a, yl, b, ys)

    xl.requires_grad_(True)
    xs.requires_grad_(True)
    assert torch.autograd.gradcheck(fixed_draw, (xl, xs))


@pytest.mark.parametrize("mode", ["sampled", "expected"])
def test_finite_without_exudate(mode):
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    empty = torch.zeros(2, 1, 8, 8)
    loss = DSMLoss(mode=mode, alpha=0.5)(logits, empty, logits, empty)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()
    # with no positive pixel the loss still pushes probabilities down
    assert (logits.grad > 0).all()


def test_inverse_frequency_and_bad_mode():
    (xl, yl), (xs, ys) = _pair(0, 8, 8), _pair(1, 8, 8)
    assert torch.isfinite(DSMLoss(sample_rate="inverse_frequency", alpha=0.0)(xl, yl, xs, ys))
    with pytest.raises(ValueError, match="mode"):
        DSMLoss(mode="average")
    with pytest.raises(ValueError, match="same shape"):
        DSMLoss()(xl, yl, xs, ys[..., :4])
