"""Tests for the alpha schedules."""

import math

import pytest

from monai_exudate.losses import ConstantAlpha, CosineDecay, LinearDecay, ParabolicDecay

E = 40


def test_parabolic():
    s = ParabolicDecay(max_epochs=E)
    assert s(1) == 1.0
    assert s(E // 2) == pytest.approx(1 - ((E / 2 - 1) / E) ** 2)
    assert s(E) == pytest.approx(1 - ((E - 1) / E) ** 2)


def test_linear():
    s = LinearDecay(max_epochs=E)
    assert s(1) == 1.0
    assert s(E // 2) == pytest.approx(1 - (E / 2 - 1) / E)
    assert s(E) == pytest.approx(1 / E)


def test_cosine():
    s = CosineDecay(max_epochs=E)
    assert s(1) == 1.0
    assert s(E // 2) == pytest.approx(0.5 * (1 + math.cos(math.pi * (E / 2 - 1) / E)))
    assert s(E) == pytest.approx(0.5 * (1 + math.cos(math.pi * (E - 1) / E)))


def test_constant():
    s = ConstantAlpha(0.3, max_epochs=E)
    assert s(1) == s(E // 2) == s(E) == 0.3
    with pytest.raises(ValueError, match="value"):
        ConstantAlpha(1.2)


@pytest.mark.parametrize("cls", [ParabolicDecay, LinearDecay, CosineDecay])
def test_clamped_and_monotone(cls):
    s = cls(max_epochs=10)
    values = [s(e) for e in range(1, 30)]
    assert all(0.0 <= v <= 1.0 for v in values)
    assert all(b <= a for a, b in zip(values, values[1:], strict=False))
    assert LinearDecay(10)(25) == 0.0


@pytest.mark.parametrize("cls", [ParabolicDecay, LinearDecay, CosineDecay])
def test_bad_epoch(cls):
    s = cls(max_epochs=10)
    with pytest.raises(ValueError, match="epoch"):
        s(0)
    with pytest.raises(ValueError, match="epoch"):
        s(1.5)
    with pytest.raises(ValueError, match="epoch"):
        ConstantAlpha(0.5)(0)


def test_bad_max_epochs():
    with pytest.raises(ValueError, match="max_epochs"):
        ParabolicDecay(0)
