"""Tests for the uniform and re-balanced pixel samplers."""

import pytest
import torch

from monai_exudate.losses import RebalancedPixelSampler, UniformPixelSampler


def _target(b=2, c=1, h=16, w=16, frac=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, c, h, w, generator=g) < frac).float()


def test_uniform_every_pixel_once():
    t = _target()
    counts = UniformPixelSampler()(t)
    assert counts.shape == t.shape
    assert torch.equal(counts, torch.ones_like(t))
    assert torch.equal(UniformPixelSampler().expected(t), torch.ones_like(t))


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.75])
def test_rebalanced_totals_and_split(rate):
    t = _target()
    n = t.numel()
    counts = RebalancedPixelSampler(rate)(t, generator=torch.Generator().manual_seed(1))
    assert counts.shape == t.shape
    assert counts.sum().item() == n
    # the positive share of each draw is exactly round(rate * N)
    assert counts[t > 0].sum().item() == int(rate * n + 0.5)
    # with replacement: some pixels drawn more than once, every count a non-negative integer
    assert counts.max().item() > 1
    assert torch.equal(counts, counts.round()) and counts.min().item() >= 0


def test_rebalanced_uniform_within_class_over_many_draws():
    t = _target(h=8, w=8, frac=0.2)
    n, num_pos = t.numel(), int(t.sum())
    sampler = RebalancedPixelSampler(0.5)
    g = torch.Generator().manual_seed(2)
    draws = torch.stack([sampler(t, generator=g) for _ in range(400)])
    mean = draws.mean(0)
    n1 = int(0.5 * n + 0.5)
    for mask, expected in ((t > 0, n1 / num_pos), (t == 0, (n - n1) / (n - num_pos))):
        # each pixel's count is ~Binomial(draws, 1/class size): allow 5 standard errors of the 400-draw mean
        tol = 5 * (expected / draws.shape[0]) ** 0.5
        assert (mean[mask] - expected).abs().max().item() < tol
    # fraction of positive draws over all draws equals the rate
    assert draws[:, t > 0].sum().item() / draws.sum().item() == pytest.approx(n1 / n)
    # expected() gives the per-class mean counts exactly
    expected = sampler.expected(t)
    assert torch.allclose(expected[t > 0], torch.tensor(n1 / num_pos))
    assert expected.sum().item() == pytest.approx(n)


def test_inverse_frequency_rate():
    t = _target(frac=0.05)
    num_neg = int((t == 0).sum())
    sampler = RebalancedPixelSampler("inverse_frequency")
    counts = sampler(t, generator=torch.Generator().manual_seed(0))
    assert counts[t > 0].sum().item() == num_neg
    assert counts.sum().item() == t.numel()


def test_no_positive_and_no_background():
    sampler = RebalancedPixelSampler(0.5)
    empty = torch.zeros(2, 1, 8, 8)
    counts = sampler(empty, generator=torch.Generator().manual_seed(0))
    assert counts.sum().item() == empty.numel()
    assert torch.allclose(sampler.expected(empty), torch.ones_like(empty))
    full = torch.ones(2, 1, 8, 8)
    counts = sampler(full, generator=torch.Generator().manual_seed(0))
    assert counts.sum().item() == full.numel()
    assert torch.allclose(sampler.expected(full), torch.ones_like(full))


def test_channels_sampled_independently():
    t = torch.zeros(2, 2, 8, 8)
    t[:, 0, :2] = 1
    counts = RebalancedPixelSampler(0.25)(t, generator=torch.Generator().manual_seed(0))
    per_channel = t.shape[0] * 64
    assert counts[:, 0].sum().item() == per_channel
    assert counts[:, 0][t[:, 0] > 0].sum().item() == int(0.25 * per_channel + 0.5)
    # channel 1 has no positive pixel: all its draws are background
    assert counts[:, 1].sum().item() == per_channel


def test_generator_reproducibility():
    t = _target()
    sampler = RebalancedPixelSampler(0.5)
    a = sampler(t, generator=torch.Generator().manual_seed(7))
    b = sampler(t, generator=torch.Generator().manual_seed(7))
    c = sampler(t, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # a generator given at construction is used when the call gives none
    d = RebalancedPixelSampler(0.5, generator=torch.Generator().manual_seed(7))(t)
    assert torch.equal(a, d)


def test_dtype_follows_target():
    t = _target().double()
    assert RebalancedPixelSampler(0.5)(t).dtype == torch.float64
    assert RebalancedPixelSampler(0.5).expected(t).dtype == torch.float64


@pytest.mark.parametrize("rate", [-0.1, 1.5, "median"])
def test_bad_rate(rate):
    with pytest.raises(ValueError, match="sample_rate"):
        RebalancedPixelSampler(rate)


def test_bad_target_shape():
    with pytest.raises(ValueError, match="target"):
        RebalancedPixelSampler(0.5)(torch.zeros(8, 8))
