"""Lesions of a synthetic fundus photograph: exudates, red lesions, soft exudates and drusen look-alikes."""

from __future__ import annotations

import math

import numpy as np

from monai_exudate.data.synthetic.geometry import (
    _DRUSEN,
    _EX,
    _F32,
    _FREE,
    _HE,
    _MA,
    _SE,
    _blob_shape,
    _disc_shape,
    _Geometry,
    _Layers,
    _log_uniform,
    _place,
    _polar,
)


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
