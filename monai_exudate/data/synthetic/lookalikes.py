"""Bright structures of real fundus photographs that are not lesions, painted so a model learns to leave them alone.

A model trained on a set without them marks them as exudates on real photographs: on the IDRiD sample, the default
model's largest false-positive component was the optic disc. Each painter returns the opacity it used (0 where it
painted nothing), so tests and ``generate_fundus(return_confusers=True)`` can name the pixels.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi

from monai_exudate.data.synthetic.geometry import _F32, _Geometry, _smooth_noise
from monai_exudate.data.synthetic.lesions import _blend

__all__ = ["border_glare", "disc_halo", "light_reflexes", "notch_mask"]


def disc_halo(rng: np.random.Generator, g: _Geometry, albedo: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A bright, yellow-white optic disc glow that fades over one to two disc radii, as a flash lights a real disc
    (IDRiD's discs are the brightest, most exudate-coloured structure of the photograph)."""
    radius = 0.5 * (g.od_ax + g.od_ay) * rng.uniform(1.6, 2.4)
    dist = np.hypot(xx - _F32(g.odx), yy - _F32(g.ody)) / _F32(radius)
    halo = rng.uniform(0.25, 0.55) * np.exp(-0.5 * (dist / 0.55) ** 2).astype(_F32)
    halo *= 1.0 + 0.15 * _smooth_noise(rng, g.height, g.width, max(2.0, 0.3 * radius))
    halo = np.clip(halo, 0.0, 1.0)
    colour = (rng.uniform(250, 265), rng.uniform(205, 230), rng.uniform(110, 160))
    _blend(albedo, halo, colour)
    return halo


def light_reflexes(
    rng: np.random.Generator, g: _Geometry, albedo: np.ndarray, yy: np.ndarray, xx: np.ndarray
) -> np.ndarray:
    """Sheen of the nerve-fibre layer along the vessel arcades (soft whitish streaks above and below the disc) and,
    in some photographs, the small bright foveal reflex."""
    opacity = np.zeros((g.height, g.width), _F32)
    for _ in range(int(rng.integers(2, 7))):
        vert = 1.0 if rng.random() < 0.5 else -1.0
        angle = math.atan2(vert, -g.side * rng.uniform(0.2, 1.2))
        along = rng.uniform(0.2, 0.6) * g.r
        cx, cy = g.odx + along * math.cos(angle), g.ody + along * math.sin(angle)
        length, width = rng.uniform(0.08, 0.22) * g.r, rng.uniform(0.015, 0.04) * g.r
        tilt = angle + rng.normal(0.0, 0.4)
        u = (xx - _F32(cx)) * math.cos(tilt) + (yy - _F32(cy)) * math.sin(tilt)
        v = -(xx - _F32(cx)) * math.sin(tilt) + (yy - _F32(cy)) * math.cos(tilt)
        streak = np.exp(-0.5 * ((u / length) ** 2 + (v / width) ** 2))
        np.maximum(opacity, rng.uniform(0.12, 0.3) * streak, out=opacity)
    if rng.random() < 0.5:
        dot = np.exp(-0.5 * (np.hypot(xx - _F32(g.fx), yy - _F32(g.fy)) / max(0.8, 0.012 * g.r)) ** 2)
        np.maximum(opacity, rng.uniform(0.3, 0.6) * dot, out=opacity)
    opacity[opacity < 0.02] = 0.0
    _blend(albedo, opacity, (245, 240, 225))
    return opacity


def border_glare(rng: np.random.Generator, g: _Geometry, rho: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Opacity of a bright crescent along part of the field-of-view edge (stray light of the camera), or zeros."""
    if rng.random() >= 0.4:
        return np.zeros((g.height, g.width), _F32)
    angle = rng.uniform(0, 2 * math.pi)
    spread = rng.uniform(0.3, 0.9)
    phase = np.arctan2(yy - _F32(g.cy), xx - _F32(g.cx)) - _F32(angle)
    arc = np.exp(-0.5 * (np.angle(np.exp(1j * phase)) / spread) ** 2)
    edge = np.exp(-0.5 * ((1.0 - rho) / rng.uniform(0.02, 0.05)) ** 2) * (rho <= 1.0)
    return (rng.uniform(0.25, 0.5) * arc * edge).astype(_F32)


def notch_mask(rng: np.random.Generator, g: _Geometry, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """Pixels of the field of view's notch: a small rectangular step cut into its edge, as IDRiD's camera leaves
    one (upper right of every IDRiD photograph); at a random place in half of the photographs."""
    notch = np.zeros((g.height, g.width), bool)
    if rng.random() >= 0.5:
        return notch
    angle = rng.uniform(-0.45 * math.pi, -0.05 * math.pi) if rng.random() < 0.7 else rng.uniform(0, 2 * math.pi)
    depth, half = rng.uniform(0.02, 0.045) * g.r, rng.uniform(0.03, 0.07) * g.r
    u = (xx - _F32(g.cx)) * math.cos(angle) + (yy - _F32(g.cy)) * math.sin(angle)
    v = -(xx - _F32(g.cx)) * math.sin(angle) + (yy - _F32(g.cy)) * math.cos(angle)
    notch |= (u > g.r - depth) & (np.abs(v) < half)
    return ndi.binary_opening(notch, iterations=1) if notch.sum() > 16 else notch
