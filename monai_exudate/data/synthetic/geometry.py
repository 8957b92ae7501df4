"""Geometry of a synthetic fundus photograph: field of view, landmarks, occupancy layers, shape primitives."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

# Field-of-view radius in pixels at the 1440x960 reference size; every length scales with the actual radius.
_REF_RADIUS = 456.0


_MIN_SIDE = 16


# Owner codes of the occupancy map: one lesion type per pixel keeps the masks disjoint and exact.
_FREE, _EX, _HE, _SE, _MA, _DRUSEN, _OD_ZONE, _OUTSIDE = range(8)


_F32 = np.float32


@dataclass
class _Geometry:
    """Image size, field of view and anatomical landmarks of one synthetic photograph."""

    height: int
    width: int
    cx: float
    cy: float
    r: float
    s: float
    side: float
    odx: float
    ody: float
    od_ax: float
    od_ay: float
    od_tilt: float
    fx: float
    fy: float

    def inside(self, x: float, y: float, limit: float) -> bool:
        """Whether (x, y) lies within ``limit`` field-of-view radii of the centre."""
        return math.hypot(x - self.cx, y - self.cy) < limit * self.r


class _Layers:
    """Coverage (defines the mask) and opacity (defines the colour) of each lesion type, plus pixel ownership."""

    def __init__(self, height: int, width: int, owner: np.ndarray) -> None:
        self.shape = (height, width)
        self.owner = owner
        self.cov = {k: np.zeros(self.shape, _F32) for k in (_EX, _HE, _SE, _MA)}
        self.op = {k: np.zeros(self.shape, _F32) for k in (_EX, _HE, _SE, _MA)}

    def stamp(self, kind: int, shape: np.ndarray, cy: float, cx: float, ramp: float, peak: float, core: float) -> int:
        """Paint a binary ``shape`` centred at (cy, cx) with a soft edge; return new mask pixels, -1 if refused.

        Coverage is 0.5 + signed distance / ramp, so ``coverage > 0.5`` reproduces ``shape`` exactly while the
        visible edge fades over ``ramp`` pixels.
        """
        rows, cols = np.flatnonzero(shape.any(1)), np.flatnonzero(shape.any(0))
        pad = int(math.ceil(ramp)) + 1
        m = np.pad(shape[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], pad)
        inner = ndi.distance_transform_edt(m)
        outer = ndi.distance_transform_edt(~m)
        sd = np.where(m, inner - 0.5, 0.5 - outer)
        c = np.clip(0.5 + sd / ramp, 0.0, 1.0).astype(_F32)
        h, w = m.shape
        top = int(round(cy)) - shape.shape[0] // 2 + rows[0] - pad
        left = int(round(cx)) - shape.shape[1] // 2 + cols[0] - pad
        if top < 0 or left < 0 or top + h > self.shape[0] or left + w > self.shape[1]:
            return -1
        win = (slice(top, top + h), slice(left, left + w))
        foot = c > 0
        own = self.owner[win]
        if np.any(foot & (own != _FREE) & (own != kind)):
            return -1
        cov = self.cov[kind][win]
        before = np.count_nonzero(cov > 0.5)
        np.maximum(cov, c, out=cov)
        shade = (1.0 - core) + core * np.clip(inner / (ramp + 2.0), 0.0, 1.0)
        np.maximum(self.op[kind][win], (peak * c * shade).astype(_F32), out=self.op[kind][win])
        own[foot] = kind
        return int(np.count_nonzero(cov > 0.5) - before)


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or a numpy Generator, got {seed!r}")
    return np.random.default_rng(int(seed))


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size must be (width, height), got {size!r}") from None
    if width < _MIN_SIDE or height < _MIN_SIDE or (width, height) != tuple(size):
        raise ValueError(f"size must be two integers >= {_MIN_SIDE} (width, height), got {size!r}")
    return width, height


def _upsample(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a small 2-D array to (height, width)."""
    h, w = a.shape
    ys = np.linspace(0.0, h - 1.0, height, dtype=_F32)
    xs = np.linspace(0.0, w - 1.0, width, dtype=_F32)
    y0 = np.minimum(ys.astype(np.intp), h - 2)
    x0 = np.minimum(xs.astype(np.intp), w - 2)
    fy = (ys - y0)[:, None]
    fx = xs - x0
    rows = a[y0] * (1.0 - fy) + a[y0 + 1] * fy
    return rows[:, x0] * (1.0 - fx) + rows[:, x0 + 1] * fx


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Unit-variance noise with features about ``cell`` pixels wide."""
    cell = max(cell, 1.0)
    small = rng.standard_normal((int(height / cell) + 3, int(width / cell) + 3)).astype(_F32)
    small = ndi.gaussian_filter(small, 0.8)
    small /= small.std() + 1e-6
    return _upsample(small, height, width)


def _blob_shape(
    rng: np.random.Generator,
    area: int,
    elong: float = 1.0,
    angle: float = 0.0,
    n_blobs: int = 1,
    rough: float = 0.0,
    spread: float = 0.55,
    grain: float = 0.3,
) -> np.ndarray:
    """Binary lesion shape of exactly ``area`` pixels (up to ties): thresholded sum of Gaussian blobs.

    ``spread`` scales the blob offsets and ``grain`` the size of the multiplicative roughness, both relative to the
    equivalent radius; wide spread with fine grain breaks the shape into a cluster of fragments.
    """
    area = max(int(area), 1)
    radius = math.sqrt(area / math.pi)
    half = int(math.ceil((2.0 + 1.5 * spread) * radius * math.sqrt(elong))) + 2
    y, x = np.ogrid[-half : half + 1, -half : half + 1]
    y, x = y.astype(_F32), x.astype(_F32)
    ca, sa = math.cos(angle), math.sin(angle)
    u, v = x * ca + y * sa, -x * sa + y * ca
    sq = math.sqrt(elong)
    field = np.zeros(u.shape, _F32)
    for k in range(n_blobs):
        du, dv = rng.uniform(-0.5, 0.5, 2)
        if k:
            du += rng.normal(0.0, spread * radius * sq)
            dv += rng.normal(0.0, spread * radius / sq)
        su, sv = radius * rng.uniform(0.45, 0.75, 2) * (sq, 1.0 / sq) * (0.55 / max(spread, 0.55)) + 0.3
        amp = 1.0 if k == 0 else rng.uniform(0.5, 1.0)
        field += amp * np.exp(-0.5 * (((u - du) / su) ** 2 + ((v - dv) / sv) ** 2))
    if rough > 0 and radius > 2:
        noise = ndi.gaussian_filter(rng.standard_normal(field.shape).astype(_F32), max(1.0, grain * radius))
        field *= 1.0 + rough * noise / (noise.std() + 1e-6)
    flat = field.ravel()
    n = min(area, flat.size - 1)
    thr = np.partition(flat, flat.size - n)[flat.size - n]
    return field >= thr


def _disc_shape(rng: np.random.Generator, radius: float) -> np.ndarray:
    """Binary disc of sub-pixel radius and centre, never empty."""
    half = int(math.ceil(radius)) + 1
    y, x = np.ogrid[-half : half + 1, -half : half + 1]
    oy, ox = rng.uniform(-0.3, 0.3, 2)
    m = (y - oy) ** 2 + (x - ox) ** 2 <= radius**2
    m[half, half] = True
    return m


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def _polar(rng: np.random.Generator, x: float, y: float, rmin: float, rmax: float) -> tuple[float, float]:
    a = rng.uniform(0.0, 2.0 * math.pi)
    d = rng.uniform(rmin, rmax)
    return x + d * math.cos(a), y + d * math.sin(a)


def _place(
    layers: _Layers,
    rng: np.random.Generator,
    g: _Geometry,
    kind: int,
    shape: np.ndarray,
    where,
    ramp: float,
    peak: float,
    core: float,
    tries: int = 10,
) -> int:
    """Stamp ``shape`` at the first acceptable position drawn from ``where()``; return new mask pixels."""
    for _ in range(tries):
        x, y = where()
        if not g.inside(x, y, 0.93):
            continue
        added = layers.stamp(kind, shape, y, x, ramp, peak, core)
        if added >= 0:
            return added
    return 0


def _geometry(rng: np.random.Generator, width: int, height: int) -> _Geometry:
    r = 0.475 * min(height, width) * rng.uniform(0.985, 1.01)
    cx = width / 2.0 + rng.uniform(-0.015, 0.015) * height
    cy = height / 2.0 + rng.uniform(-0.015, 0.015) * height
    side = 1.0 if rng.random() < 0.5 else -1.0  # optic disc on the right (right eye) or on the left
    # Disc size and place as on the IDRiD sample's macula-centred photographs (discs located on the five where the
    # brightest blob is the disc: centre 0.61-0.71 field radii from the centre, 0-0.32 above it; radius 0.09-0.14).
    odx = cx + side * rng.uniform(0.6, 0.72) * r
    ody = cy - rng.uniform(-0.02, 0.3) * r
    od_r = rng.uniform(0.09, 0.14) * r
    # the fovea about 2.5 disc diameters temporal to the disc, near the centre of a macula-centred photograph
    fx = odx - side * rng.uniform(0.62, 0.78) * r
    fy = cy + rng.uniform(-0.04, 0.06) * r
    return _Geometry(
        height=height,
        width=width,
        cx=cx,
        cy=cy,
        r=r,
        s=r / _REF_RADIUS,
        side=side,
        odx=odx,
        ody=ody,
        od_ax=od_r * rng.uniform(0.9, 0.97),
        od_ay=od_r * rng.uniform(1.0, 1.08),
        od_tilt=rng.normal(0.0, 0.15),
        fx=fx,
        fy=fy,
    )
