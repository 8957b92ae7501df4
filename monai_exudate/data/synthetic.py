"""Seeded procedural colour fundus photographs with exact lesion masks: the embedded default dataset."""

from __future__ import annotations

import io
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from scipy.signal import lfilter

from monai_exudate.data.atomic import atomic_write_bytes
from monai_exudate.data.layouts import (
    DDR_LESIONS,
    IDRID_MASKS,
    IDRID_TEST_IDS,
    IDRID_TRAIN_IDS,
    ddr_image_path,
    ddr_mask_path,
    idrid_image_path,
    idrid_mask_path,
)

__all__ = ["generate_fundus", "write_synthetic_dataset", "lesion_statistics"]

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
    odx = cx + side * rng.uniform(0.58, 0.7) * r
    ody = cy + rng.normal(0.0, 0.05) * r
    od_r = rng.uniform(0.15, 0.18) * r
    fx = odx - side * rng.uniform(0.82, 0.92) * r
    fy = ody + rng.uniform(0.0, 0.08) * r
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


def _vessel_paths(rng: np.random.Generator, g: _Geometry) -> list[tuple[np.ndarray, ...]]:
    """Centre lines (x, y, width, contrast, reflex, step) of a branching vessel tree rooted in the optic disc."""
    r, s = g.r, g.s
    step = max(0.8, 2.5 * s)
    w_min = max(0.7, 1.1 * s)
    # (x, y, heading, width, contrast, depth, target heading or None, relaxation per step, length in pixels)
    stack = []
    for contrast, w0, dth in ((1.0, 11.0 * s, 0.12), (0.72, 8.0 * s, -0.12)):
        for vert in (-1.0, 1.0):
            # Temporal arcades leave the disc vertically and bend round the macula towards the raphe.
            head = math.atan2(vert, -g.side * rng.uniform(0.0, 0.3)) + dth * vert
            target = math.atan2(-vert * 0.15, -g.side)
            stack.append((g.odx, g.ody, head, w0, contrast, 0, target, step / (rng.uniform(0.45, 0.6) * r), 2.4 * r))
            head = math.atan2(vert, g.side * rng.uniform(0.3, 0.9))
            target = math.atan2(vert * rng.uniform(0.2, 0.7), g.side)
            w = w0 * rng.uniform(0.65, 0.85)
            stack.append((g.odx, g.ody, head, w, contrast, 0, target, step / (0.4 * r), 1.6 * r))
        stack.append((g.odx, g.ody, math.atan2(rng.normal(0, 0.15), -g.side), w0 * 0.4, contrast, 1, None, 0.0, r))
        stack.append((g.odx, g.ody, math.atan2(rng.normal(0, 0.3), g.side), w0 * 0.5, contrast, 1, None, 0.0, r))
    paths = []
    while stack:
        x0, y0, head, w0, contrast, depth, target, relax, length = stack.pop()
        n = max(int(length / step), 2)
        wiggle = rng.normal(0.0, 0.03 if target is not None else 0.06, n)
        if target is not None:
            # Heading relaxes towards the target: an AR(1) deviation driven by the wiggle.
            dev0 = (head - target + math.pi) % (2 * math.pi) - math.pi
            dev = lfilter([1.0], [1.0, -(1.0 - relax)], wiggle) + dev0 * (1.0 - relax) ** np.arange(1, n + 1)
            theta = target + dev
        else:
            theta = head + rng.normal(0.0, 0.006) * np.arange(1, n + 1) + np.cumsum(wiggle)
        xs = x0 + np.concatenate([[0.0], np.cumsum(step * np.cos(theta))])
        ys = y0 + np.concatenate([[0.0], np.cumsum(step * np.sin(theta))])
        theta = np.concatenate([[head], theta])
        arc = np.arange(n + 1) * step
        widths = w0 * np.exp(-arc / (2.5 * r))
        # Branch points, then the parent thins after each one.
        first = max(g.od_ax, 0.04 * r) if depth == 0 else rng.uniform(0.05, 0.12) * r
        gaps = rng.uniform(0.1, 0.25, 40) * r * (1.0 + 0.8 * depth)
        points = (first + np.cumsum(gaps) - gaps[0]) / step
        points = points[points < n - 2].astype(np.intp)
        children = []
        for p in points:
            wc = widths[p] * rng.uniform(0.4, 0.72)
            widths[p:] *= rng.uniform(0.88, 0.97)
            if depth < 3 and wc >= 1.5 * w_min:
                turn = (1.0 if rng.random() < 0.5 else -1.0) * rng.uniform(0.45, 1.05)
                clen = rng.uniform(0.25, 0.75) * r * min(1.0, (wc / (8.0 * s)) ** 0.5)
                # Start at the parent's wall so the child's centre line does not dent the parent.
                bx = xs[p] + 0.5 * widths[p] * math.cos(theta[p] + turn)
                by = ys[p] + 0.5 * widths[p] * math.sin(theta[p] + turn)
                children.append((p, (bx, by, theta[p] + turn, wc, contrast, depth + 1, None, 0.0, clen)))
        # Stop at the field-of-view edge, in the foveal avascular zone, or when too thin to see.
        out = np.hypot(xs - g.cx, ys - g.cy) > 0.99 * r
        out |= np.hypot(xs - g.fx, ys - g.fy) < 0.09 * r
        out |= widths < w_min
        out[0] = False
        end = int(np.argmax(out)) if out.any() else n + 1
        if end < 2:
            continue
        stack.extend(spec for p, spec in children if p < end - 1)
        knots = rng.uniform(0.0, 1.0, end // 12 + 2) ** 3
        reflex = np.interp(np.arange(end) / 12.0, np.arange(knots.size), knots) * (1.0 if contrast < 1 else 0.6)
        paths.append((xs[:end], ys[:end], widths[:end], np.full(end, contrast), reflex, step))
    return paths


def _render_vessels(rng: np.random.Generator, g: _Geometry, albedo: np.ndarray) -> np.ndarray:
    """Darken ``albedo`` along the vessel tree; return the opacity of the central light reflex."""
    xs, ys, ws, cs, rf = [], [], [], [], []
    for x, y, w, c, refl, step in _vessel_paths(rng, g):
        # Densify so the rasterised centre line has no gaps.
        k = int(math.ceil(step / 0.6))
        t = np.arange((x.size - 1) * k + 1) / k
        idx = np.arange(x.size)
        for dst, src in ((xs, x), (ys, y), (ws, w), (cs, c), (rf, refl)):
            dst.append(np.interp(t, idx, src))
    shape = (g.height, g.width)
    strength = np.zeros(shape, _F32)
    reflex = np.zeros(shape, _F32)
    if not xs:  # tiny images: every vessel is thinner than a pixel
        return reflex
    xs, ys, ws, cs, rf = (np.concatenate(a) for a in (xs, ys, ws, cs, rf))
    ix, iy = np.rint(xs).astype(np.intp), np.rint(ys).astype(np.intp)
    ok = (ix >= 0) & (ix < g.width) & (iy >= 0) & (iy < g.height)
    order = np.argsort(ws[ok], kind="stable")  # wider vessels written last win shared pixels
    ix, iy, ws, cs, rf = (a[ok][order] for a in (ix, iy, ws, cs, rf))
    # Thick and thin vessels are rendered apart: a thin branch's centre line inside a thick vessel would
    # otherwise become the nearest one there and dent the thick vessel at every junction.
    split = max(4.0 * g.s, 1.5)
    for sel in (ws >= split, ws < split):
        if not sel.any():
            continue
        w_img, c_img, r_img = np.zeros(shape, _F32), np.zeros(shape, _F32), np.zeros(shape, _F32)
        w_img[iy[sel], ix[sel]], c_img[iy[sel], ix[sel]], r_img[iy[sel], ix[sel]] = ws[sel], cs[sel], rf[sel]
        dist, (ny, nx) = ndi.distance_transform_edt(w_img == 0, return_indices=True)
        dist = dist.astype(_F32)
        wn = w_img[ny, nx]
        profile = np.exp(-0.5 * (dist / (0.45 * wn)) ** 2)
        np.maximum(strength, profile * c_img[ny, nx] * np.clip(wn / (7.0 * g.s), 0.25, 1.0), out=strength)
        core = np.exp(-0.5 * (dist / (0.09 * wn + 0.35)) ** 2)
        np.maximum(reflex, 0.6 * r_img[ny, nx] * core * (wn >= max(4.5 * g.s, 2.0)), out=reflex)
    for ch, k in enumerate((0.38, 0.58, 0.5)):
        albedo[..., ch] *= 1.0 - k * strength
    return reflex


def _blend(img: np.ndarray, opacity: np.ndarray, colour) -> None:
    """In place: img = img * (1 - opacity) + colour * opacity, touching only the painted pixels."""
    idx = np.flatnonzero(opacity > 1e-3)
    if idx.size == 0:
        return
    flat = img.reshape(-1, 3)
    a = opacity.ravel()[idx, None]
    flat[idx] = flat[idx] * (1.0 - a) + np.asarray(colour, _F32) * a


def _exudates(layers: _Layers, rng: np.random.Generator, g: _Geometry, target: float) -> None:
    """Plaques and a circinate ring near the macula plus scattered dots, up to ``target`` mask pixels."""
    s2 = g.s * g.s
    dot_budget = target * rng.uniform(0.06, 0.14)
    ring_budget = target * rng.uniform(0.25, 0.45) if rng.random() < 0.7 else 0.0
    plaque_budget = target - dot_budget - ring_budget
    ramp = max(1.0, 1.6 * g.s)
    placed = 0

    def put(shape, where):
        return _place(layers, rng, g, _EX, shape, where, ramp, rng.uniform(0.6, 0.95), 0.25)

    centres = []
    shares = rng.dirichlet(np.full(rng.integers(1, 5), 1.5)) * plaque_budget
    for share in shares:
        cx, cy = _polar(rng, g.fx, g.fy, 0.06 * g.r, 0.45 * g.r)
        main = max(1, int(share * rng.uniform(0.45, 0.8)))
        elong, angle, n_blobs = rng.uniform(1.0, 2.0), rng.uniform(0, math.pi), int(rng.integers(6, 16))
        shape = _blob_shape(rng, main, elong, angle, n_blobs, 0.7, spread=rng.uniform(0.7, 1.1), grain=0.12)
        got = put(shape, lambda cx=cx, cy=cy: _polar(rng, cx, cy, 0.0, 0.02 * g.r))
        placed += got
        reach = math.sqrt(max(main, 1) / math.pi)
        centres.append((cx, cy, reach))
        rest = share - got
        while rest > 0.5:
            area = max(1, int(min(rest, _log_uniform(rng, 8, 250) * s2)))
            shape = _blob_shape(rng, area, rng.uniform(1.0, 2.5), rng.uniform(0, math.pi), int(rng.integers(1, 4)), 0.3)
            placed += put(shape, lambda cx=cx, cy=cy, d=reach: _polar(rng, cx, cy, 1.2 * d, 2.8 * d + 6 * g.s))
            rest -= area
    if ring_budget > 0:
        rx, ry = _polar(rng, g.fx, g.fy, 0.0, 0.25 * g.r)
        rad = rng.uniform(0.12, 0.25) * g.r
        start, span = rng.uniform(0, 2 * math.pi), rng.uniform(math.pi, 2 * math.pi)
        n = int(rng.integers(8, 25))
        for a, area in zip(start + np.sort(rng.uniform(0, span, n)), rng.dirichlet(np.full(n, 2.0)) * ring_budget):
            rr = rad * rng.uniform(0.92, 1.08)
            px, py = rx + rr * math.cos(a), ry + rr * math.sin(a)
            shape = _blob_shape(rng, max(1, int(area)), rng.uniform(1.5, 3.0), a + math.pi / 2, int(rng.integers(1, 4)))
            placed += put(shape, lambda px=px, py=py: _polar(rng, px, py, 0.0, 3.0 * g.s))
    spent = 0.0
    while spent < dot_budget:
        area = max(1, int(round(_log_uniform(rng, 3, 20) * s2)))
        spent += area
        if centres and rng.random() < 0.5:
            cx, cy, d = centres[int(rng.integers(len(centres)))]
            where = lambda cx=cx, cy=cy, d=d: _polar(rng, cx, cy, 1.5 * d, 4.0 * d + 10 * g.s)  # noqa: E731
        else:
            where = lambda: _polar(rng, g.fx, g.fy, 0.0, 0.75 * g.r)  # noqa: E731
        placed += put(_blob_shape(rng, area, rng.uniform(1.0, 1.6), rng.uniform(0, math.pi)), where)
    # Overlaps and refused positions lose area: top up with satellites until the budget is met.
    for _ in range(200):
        if placed >= 0.97 * target:
            break
        missing = target - placed
        area = max(1, int(min(missing, max(_log_uniform(rng, 8, 300) * s2, 0.05 * missing))))
        shape = _blob_shape(rng, area, rng.uniform(1.0, 2.0), rng.uniform(0, math.pi), int(rng.integers(1, 4)), 0.3)
        if centres:
            cx, cy, d = centres[int(rng.integers(len(centres)))]
            where = lambda cx=cx, cy=cy, d=d: _polar(rng, cx, cy, 1.0 * d, 3.5 * d + 10 * g.s)  # noqa: E731
        else:
            where = lambda: _polar(rng, g.fx, g.fy, 0.0, 0.6 * g.r)  # noqa: E731
        placed += put(shape, where)


def _red_lesions(layers: _Layers, rng: np.random.Generator, g: _Geometry) -> None:
    """Haemorrhages (blots and flames along the nerve fibres) and microaneurysms."""
    s2 = g.s * g.s
    for _ in range(int(rng.integers(2, 15))):
        area = max(2, int(_log_uniform(rng, 30, 1500) * s2))
        x, y = _polar(rng, g.cx, g.cy, 0.0, 0.85 * g.r)
        if rng.random() < 0.4:
            angle = math.atan2(y - g.ody, x - g.odx)
            shape = _blob_shape(rng, area, rng.uniform(2.5, 4.5), angle, int(rng.integers(2, 4)), 0.35)
        else:
            shape = _blob_shape(rng, area, rng.uniform(1.0, 1.6), rng.uniform(0, math.pi), int(rng.integers(2, 6)), 0.3)
        where = lambda x=x, y=y: _polar(rng, x, y, 0.0, 0.05 * g.r)  # noqa: E731
        _place(layers, rng, g, _HE, shape, where, max(1.0, 2.5 * g.s), rng.uniform(0.5, 0.8), 0.3)
    for _ in range(int(rng.integers(4, 36))):
        shape = _disc_shape(rng, max(0.55, rng.uniform(1.0, 3.0) * g.s))
        where = lambda: _polar(rng, g.fx, g.fy, 0.0, 0.65 * g.r)  # noqa: E731
        _place(layers, rng, g, _MA, shape, where, 1.0, rng.uniform(0.6, 0.9), 0.2)


def _soft_exudates(layers: _Layers, rng: np.random.Generator, g: _Geometry) -> None:
    """Cotton-wool spots: pale fluffy patches along the vascular arcades."""
    s2 = g.s * g.s
    for _ in range(int(rng.integers(1, 4))):
        area = max(3, int(_log_uniform(rng, 500, 3500) * s2))
        shape = _blob_shape(rng, area, rng.uniform(1.0, 2.0), rng.uniform(0, math.pi), int(rng.integers(4, 9)), 0.5)
        vert = 1.0 if rng.random() < 0.5 else -1.0

        def where(vert=vert):
            a = math.atan2(vert, -g.side * rng.uniform(0.0, 1.2))
            d = rng.uniform(0.3, 0.65) * g.r
            return g.odx + d * math.cos(a), g.ody + d * math.sin(a)

        _place(layers, rng, g, _SE, shape, where, 1.0 + 4.0 * g.s, rng.uniform(0.35, 0.55), 0.5)


def _drusen(rng: np.random.Generator, g: _Geometry, owner: np.ndarray) -> np.ndarray:
    """Pale whitish drusen-like dots (in no mask), kept off every lesion."""
    op = np.zeros(owner.shape, _F32)
    for _ in range(int(rng.integers(4, 40))):
        x, y = _polar(rng, g.cx, g.cy, 0.0, 0.85 * g.r)
        sigma = max(0.7, rng.uniform(2.0, 5.0) * g.s * 0.6)
        half = int(math.ceil(2.0 * sigma)) + 1
        top, left = int(round(y)) - half, int(round(x)) - half
        if top < 0 or left < 0 or top + 2 * half + 1 > g.height or left + 2 * half + 1 > g.width:
            continue
        win = (slice(top, top + 2 * half + 1), slice(left, left + 2 * half + 1))
        yy, xx = np.ogrid[-half : half + 1, -half : half + 1]
        # Flat-topped profile: a pale core with a soft rim.
        spot = (rng.uniform(0.45, 0.7) * np.exp(-0.5 * ((yy**2 + xx**2) / sigma**2) ** 2)).astype(_F32)
        foot = spot > 0.02
        if np.any(foot & (owner[win] != _FREE) & (owner[win] != _DRUSEN)):
            continue
        np.maximum(op[win], spot, out=op[win])
        owner[win][foot] = _DRUSEN
    return op


def _paint(img: np.ndarray, opacity: np.ndarray, colour) -> None:
    """In place on a (window of an) image: img = img * (1 - opacity) + colour * opacity."""
    a = opacity[..., None]
    img *= 1.0 - a
    img += np.asarray(colour, _F32) * a


def _render(
    rng: np.random.Generator, g: _Geometry, ex_target: float, se_probability: float
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Image and masks of the field-of-view box described by ``g`` (coordinates local to that box)."""
    height, width = g.height, g.width
    yy = np.arange(height, dtype=_F32)[:, None]
    xx = np.arange(width, dtype=_F32)[None, :]
    dist_c = np.sqrt((xx - _F32(g.cx)) ** 2 + (yy - _F32(g.cy)) ** 2)
    rho = dist_c / _F32(g.r)
    fov = rho <= 1.0

    # Reflectance: orange-red base with low- and mid-frequency texture, a darker macula.
    base = np.array([rng.uniform(205, 240), 0.0, 0.0], _F32)
    base[1] = base[0] * rng.uniform(0.45, 0.58)
    base[2] = base[0] * rng.uniform(0.1, 0.22)
    low = _smooth_noise(rng, height, width, g.r / 4.0)
    mid = _smooth_noise(rng, height, width, max(2.0, 7.0 * g.s))
    albedo = np.empty((height, width, 3), _F32)
    for ch, (kl, km) in enumerate(((0.05, 0.012), (0.09, 0.018), (0.1, 0.018))):
        albedo[..., ch] = base[ch] * (1.0 + kl * low + km * mid)
    half = int(0.75 * g.r) + 1
    my0, my1 = max(0, int(g.fy) - half), min(height, int(g.fy) + half)
    mx0, mx1 = max(0, int(g.fx) - half), min(width, int(g.fx) + half)
    d2 = (xx[:, mx0:mx1] - _F32(g.fx)) ** 2 + (yy[my0:my1] - _F32(g.fy)) ** 2
    mac = np.exp(-d2 / _F32(2 * (0.2 * g.r) ** 2))
    fovea = np.exp(-d2 / _F32(2 * (0.04 * g.r) ** 2))
    for ch, k in enumerate((0.12, 0.22, 0.2)):
        albedo[my0:my1, mx0:mx1, ch] *= 1.0 - k * mac - 0.08 * fovea

    # Optic disc (exact mask), its pale cup and a pale peripapillary rim (a confuser, in no mask).
    half = int(2.0 * max(g.od_ax, g.od_ay)) + 2
    y0, y1 = max(0, int(g.ody) - half), min(height, int(g.ody) + half)
    x0, x1 = max(0, int(g.odx) - half), min(width, int(g.odx) + half)
    dy, dx = yy[y0:y1] - _F32(g.ody), xx[:, x0:x1] - _F32(g.odx)
    ct, st = math.cos(g.od_tilt), math.sin(g.od_tilt)
    e = np.sqrt(((dx * ct + dy * st) / g.od_ax) ** 2 + ((-dx * st + dy * ct) / g.od_ay) ** 2)
    od = np.zeros((height, width), bool)
    od[y0:y1, x0:x1] = e <= 1.0
    owner = np.where(fov, _FREE, _OUTSIDE).astype(np.int8)
    owner[y0:y1, x0:x1][e < 1.45] = _OD_ZONE
    disc = rng.uniform(0.55, 0.75) * np.clip(0.5 + (1.0 - e) * g.od_ax / (1.0 + 4.0 * g.s), 0.0, 1.0)
    ec = np.hypot(dx + _F32(g.side * 0.15 * g.od_ax), dy) / (rng.uniform(0.3, 0.45) * g.od_ax)
    cup = rng.uniform(0.45, 0.75) * np.exp(-0.5 * ec**2)
    temporal = np.cos(np.arctan2(dy, dx) - (math.pi if g.side > 0 else 0.0))
    rim = rng.uniform(0.35, 0.6) * np.exp(-0.5 * ((e - 1.1) / 0.06) ** 2) * (0.35 + 0.65 * np.clip(temporal, 0, 1))
    window = albedo[y0:y1, x0:x1]
    _paint(window, disc, (265, 205, 130))
    _paint(window, cup, (275, 245, 205))
    _paint(window, rim, (250, 228, 200))

    reflex = _render_vessels(rng, g, albedo)
    _blend(albedo, reflex, (255, 200, 175))

    # Lesions on the occupancy map, EX first so its pixel budget is met before others take room.
    layers = _Layers(height, width, owner)
    _exudates(layers, rng, g, ex_target)
    if rng.random() < se_probability:
        _soft_exudates(layers, rng, g)
    _red_lesions(layers, rng, g)
    drusen = _drusen(rng, g, owner)
    ex_col = (rng.uniform(245, 262), rng.uniform(200, 232), rng.uniform(70, 125))
    _blend(albedo, drusen, (238, 232, 228))
    _blend(albedo, layers.op[_HE], (145, 30, 16))
    _blend(albedo, layers.op[_MA], (140, 28, 16))
    _blend(albedo, layers.op[_SE], (240, 228, 212))
    _blend(albedo, layers.op[_EX], ex_col)

    # Camera: vignetting, uneven illumination, soft field-of-view edge, sensor noise.
    tilt = rng.uniform(0, 2 * math.pi)
    illum = 1.0 - rng.uniform(0.3, 0.5) * rho ** rng.uniform(2.0, 3.5)
    illum += rng.uniform(0.0, 0.1) * ((xx - _F32(g.cx)) * math.cos(tilt) + (yy - _F32(g.cy)) * math.sin(tilt)) / g.r
    illum += 0.04 * _smooth_noise(rng, height, width, g.r / 3.0)
    illum *= rng.uniform(0.85, 1.05) * np.clip((g.r - dist_c) / 1.2 + 0.5, 0.0, 1.0)
    img = albedo * illum[..., None]
    img += rng.standard_normal(img.shape, dtype=_F32) * (1.0 + 0.012 * img) * (illum > 0)[..., None]
    image = np.clip(img + 0.5, 0, 255).astype(np.uint8)

    masks = {
        "EX": layers.cov[_EX] > 0.5,
        "HE": layers.cov[_HE] > 0.5,
        "SE": layers.cov[_SE] > 0.5,
        "MA": layers.cov[_MA] > 0.5,
        "OD": od & fov,
        "drusen": drusen > 0.2,
        "reflex": (reflex > 0.1) & (owner == _FREE) & fov,
        "od_rim": np.zeros((height, width), bool),
    }
    masks["od_rim"][y0:y1, x0:x1] = rim > 0.1
    masks["od_rim"] &= ~od & fov
    return image, masks


def generate_fundus(
    size: tuple[int, int] = (1440, 960),
    seed: int | np.random.Generator = 0,
    background_to_exudate: float = 200.0,
    se_probability: float = 0.4,
    return_confusers: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render one synthetic colour fundus photograph and its exact lesion masks.

    Args:
        size: (width, height) in pixels, each at least 16.
        seed: non-negative int or a ``numpy.random.Generator``; the same int gives identical arrays.
        background_to_exudate: target ratio of non-EX to EX pixels over the whole image (per-image jitter around it).
        se_probability: chance that the image has soft exudates (otherwise its SE mask is all False).
        return_confusers: also return masks of the bright look-alikes that are not lesions:
            ``drusen``, ``reflex`` (vessel light reflex) and ``od_rim`` (pale rim round the optic disc).

    Returns:
        RGB uint8 image (H, W, 3) and boolean masks (H, W) for "EX", "HE", "SE", "MA", "OD".
    """
    width, height = _check_size(size)
    if not math.isfinite(background_to_exudate) or background_to_exudate <= 0:
        raise ValueError(f"background_to_exudate must be a positive number, got {background_to_exudate!r}")
    if not 0.0 <= se_probability <= 1.0:
        raise ValueError(f"se_probability must be in [0, 1], got {se_probability!r}")
    rng = _rng(seed)
    full = _geometry(rng, width, height)
    ex_target = height * width / (1.0 + background_to_exudate) * float(np.clip(rng.lognormal(0.0, 0.3), 0.6, 1.7))
    # Work only inside the bounding box of the field of view: everything outside is black and lesion-free.
    bx0, bx1 = max(0, int(full.cx - full.r) - 2), min(width, int(math.ceil(full.cx + full.r)) + 3)
    by0, by1 = max(0, int(full.cy - full.r) - 2), min(height, int(math.ceil(full.cy + full.r)) + 3)
    local = replace(
        full,
        width=bx1 - bx0,
        height=by1 - by0,
        cx=full.cx - bx0,
        cy=full.cy - by0,
        odx=full.odx - bx0,
        ody=full.ody - by0,
        fx=full.fx - bx0,
        fy=full.fy - by0,
    )
    crop, crop_masks = _render(rng, local, ex_target, se_probability)
    image = np.zeros((height, width, 3), np.uint8)
    image[by0:by1, bx0:bx1] = crop
    keys = ("EX", "HE", "SE", "MA", "OD") + (("drusen", "reflex", "od_rim") if return_confusers else ())
    masks = {}
    for key in keys:
        masks[key] = np.zeros((height, width), bool)
        masks[key][by0:by1, bx0:bx1] = crop_masks[key]
    return image, masks


def lesion_statistics(masks: Iterable[np.ndarray]) -> dict[str, float]:
    """Imbalance and size spread of a collection of binary lesion masks.

    Returns ``background_to_lesion`` (non-lesion / lesion pixels over all masks), ``size_spread`` (mean area of
    the largest 10% of 8-connected components / mean area of the smallest 10%) and ``num_components``.
    """
    total = lesion = 0
    areas = []
    for i, m in enumerate(masks):
        m = np.asarray(m)
        if m.ndim != 2:
            raise ValueError(f"masks[{i}] must be 2-D, got shape {m.shape}")
        m = m.astype(bool)
        total += m.size
        lesion += int(np.count_nonzero(m))
        labels, n = ndi.label(m, structure=np.ones((3, 3), bool))
        if n:
            areas.append(np.bincount(labels.ravel())[1:])
    if total == 0:
        raise ValueError("masks is empty")
    sizes = np.sort(np.concatenate(areas)) if areas else np.zeros(0, np.int64)
    k = max(1, int(round(0.1 * sizes.size)))
    spread = float(sizes[-k:].mean() / sizes[:k].mean()) if sizes.size else float("nan")
    return {
        "background_to_lesion": (total - lesion) / lesion if lesion else float("inf"),
        "size_spread": spread,
        "num_components": float(sizes.size),
    }


def _encode(image: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, **kwargs)
    return buf.getvalue()


def _palette_mask(mask: np.ndarray) -> Image.Image:
    """1-bit-valued palette image (index 0 black, 1 red) as in the IDRiD release."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    im = Image.frombytes("P", (m.shape[1], m.shape[0]), m.tobytes())
    im.putpalette([0, 0, 0, 255, 0, 0])
    return im


def _splits(layout: str, num: int) -> list[tuple[str, str | int]]:
    """(split, IDRiD number or DDR stem) for each image, in generation order."""
    if layout == "idrid":
        n_train = -(-2 * num // 3)
        if not 1 <= num <= len(IDRID_TRAIN_IDS) + len(IDRID_TEST_IDS) or n_train > len(IDRID_TRAIN_IDS):
            raise ValueError(f"num must be in 1..81 for the idrid layout (at most 54 training images), got {num}")
        train = [("training", IDRID_TRAIN_IDS[i]) for i in range(n_train)]
        return train + [("testing", IDRID_TEST_IDS[i]) for i in range(num - n_train)]
    if layout == "ddr":
        if num < 1:
            raise ValueError(f"num must be >= 1, got {num}")
        n_val = max(1, round(0.2 * num)) if num >= 3 else 0
        n_test = max(1, round(0.2 * num)) if num >= 3 else num - 1
        counts = (("training", num - n_val - n_test), ("validation", n_val), ("testing", n_test))
        names = [split for split, n in counts for _ in range(n)]
        return [(split, f"synth_{i + 1:04d}") for i, split in enumerate(names)]
    raise ValueError(f"unknown layout {layout!r}; expected 'idrid' or 'ddr'")


def write_synthetic_dataset(
    out_dir: str | Path,
    layout: str = "idrid",
    num: int = 12,
    size: tuple[int, int] = (1440, 960),
    seed: int = 0,
    background_to_exudate: float = 200.0,
    jpeg_quality: int = 90,
) -> Path:
    """Write ``num`` synthetic photographs with masks in the IDRiD or DDR folder layout under ``out_dir``.

    IDRiD: JPEG images, palette TIF masks with values 0/1 (MA, HE, EX, OD always; SE only where present),
    first ceil(2/3 num) images in training numbered from 1, the rest in testing numbered from 55.
    DDR: JPEG images, 8-bit 0/255 TIF masks for EX, HE, MA, SE, stems ``synth_0001``..., split about 60/20/20.
    Image ``i`` is generated from the seed sequence (seed, i), so equal arguments give byte-identical files.
    """
    if not isinstance(num, (int, np.integer)) or isinstance(num, bool):
        raise ValueError(f"num must be an int, got {num!r}")
    if not isinstance(jpeg_quality, (int, np.integer)) or not 1 <= jpeg_quality <= 100:
        raise ValueError(f"jpeg_quality must be an int in 1..100, got {jpeg_quality!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    size = _check_size(size)
    items = _splits(layout, int(num))
    root = Path(out_dir)
    for i, (split, key) in enumerate(items):
        rng = np.random.default_rng([int(seed), i])
        image, masks = generate_fundus(size, rng, background_to_exudate)
        jpeg = _encode(Image.fromarray(image), format="JPEG", quality=int(jpeg_quality))
        if layout == "idrid":
            atomic_write_bytes(root / idrid_image_path(split, key), jpeg)
            for lesion in IDRID_MASKS:
                if lesion == "SE" and not masks["SE"].any():
                    continue  # as in IDRiD: no file means no soft exudate in this image
                data = _encode(_palette_mask(masks[lesion]), format="TIFF", compression="tiff_lzw")
                atomic_write_bytes(root / idrid_mask_path(split, key, lesion), data)
        else:
            atomic_write_bytes(root / ddr_image_path(split, key), jpeg)
            for lesion in DDR_LESIONS:
                im = Image.fromarray(masks[lesion].astype(np.uint8) * np.uint8(255))
                data = _encode(im, format="TIFF", compression="tiff_lzw")
                atomic_write_bytes(root / ddr_mask_path(split, key, lesion), data)
    return root
