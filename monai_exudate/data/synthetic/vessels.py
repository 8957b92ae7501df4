"""Retinal vessel trees of a synthetic fundus photograph: branching paths from the optic disc, rendered."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi
from scipy.signal import lfilter

from monai_exudate.data.synthetic.geometry import _F32, _Geometry


def _vessel_paths(rng: np.random.Generator, g: _Geometry) -> list[tuple[np.ndarray, ...]]:
    """Centre lines (x, y, width, contrast, reflex, step) of a branching vessel tree rooted in the optic disc.

    As on real photographs (and the IDRiD sample), the trunks leave from the nasal side of the cup and branch only
    off the disc, and the small macular vessels enter at the disc's temporal rim, so the temporal half of the disc is
    a bright, vessel-free area that is not a lesion: without it the demo model took real discs for exudates.
    """
    r, s = g.r, g.s
    step = max(0.8, 2.5 * s)
    w_min = max(0.7, 1.1 * s)
    od_r = max(g.od_ax, g.od_ay)
    trunk_x = g.odx + g.side * 0.2 * g.od_ax  # nasal of the cup, which sits temporal of the disc's centre
    temporal_rim_x = g.odx - g.side * 1.05 * g.od_ax
    # (x, y, heading, width, contrast, depth, target heading or None, relaxation per step, length in pixels)
    stack = []
    for contrast, w0, dth in ((1.0, 11.0 * s, 0.12), (0.72, 8.0 * s, -0.12)):
        for vert in (-1.0, 1.0):
            # Temporal arcades leave the disc vertically and bend round the macula towards the raphe.
            head = math.atan2(vert, -g.side * rng.uniform(0.0, 0.3)) + dth * vert
            target = math.atan2(-vert * 0.15, -g.side)
            stack.append((trunk_x, g.ody, head, w0, contrast, 0, target, step / (rng.uniform(0.45, 0.6) * r), 2.4 * r))
            head = math.atan2(vert, g.side * rng.uniform(0.3, 0.9))
            target = math.atan2(vert * rng.uniform(0.2, 0.7), g.side)
            w = w0 * rng.uniform(0.65, 0.85)
            stack.append((trunk_x, g.ody, head, w, contrast, 0, target, step / (0.4 * r), 1.6 * r))
        macular_y = g.ody + rng.normal(0.0, 0.3) * g.od_ay
        stack.append(
            (temporal_rim_x, macular_y, math.atan2(rng.normal(0, 0.15), -g.side), w0 * 0.4, contrast, 1, None, 0.0, r)
        )
        stack.append((trunk_x, g.ody, math.atan2(rng.normal(0, 0.3), g.side), w0 * 0.5, contrast, 1, None, 0.0, r))
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
        first = rng.uniform(0.05, 0.12) * r if depth else 0.0
        if math.hypot(x0 - g.odx, y0 - g.ody) < od_r:  # no branch starts on the disc (every trunk starts on it)
            first = max(first, 1.3 * od_r)
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
