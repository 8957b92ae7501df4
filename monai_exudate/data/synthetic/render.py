"""One synthetic fundus photograph with exact lesion masks, and lesion statistics of a set of masks."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace

import numpy as np
from scipy import ndimage as ndi

from monai_exudate.data.synthetic.geometry import (
    _EX,
    _F32,
    _FREE,
    _HE,
    _MA,
    _OD_ZONE,
    _OUTSIDE,
    _SE,
    _check_size,
    _Geometry,
    _geometry,
    _Layers,
    _rng,
    _smooth_noise,
)
from monai_exudate.data.synthetic.lesions import _blend, _drusen, _exudates, _paint, _red_lesions, _soft_exudates
from monai_exudate.data.synthetic.lookalikes import border_glare, disc_halo, light_reflexes, notch_mask
from monai_exudate.data.synthetic.vessels import _render_vessels

__all__ = ["GENERATOR_VERSION", "generate_fundus", "imbalance_statistics"]

# the bundle version whose generator last changed the seeded photographs: a default set made by an older generator is
# regenerated, so no model trains on photographs the code no longer paints (changes: docs/results, synthetic generator)
GENERATOR_VERSION = "0.9.0"


def _render(
    rng: np.random.Generator, g: _Geometry, ex_target: float, se_probability: float
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Image and masks of the field-of-view box described by ``g`` (coordinates local to that box)."""
    height, width = g.height, g.width
    yy = np.arange(height, dtype=_F32)[:, None]
    xx = np.arange(width, dtype=_F32)[None, :]
    dist_c = np.sqrt((xx - _F32(g.cx)) ** 2 + (yy - _F32(g.cy)) ** 2)
    rho = dist_c / _F32(g.r)
    notch = notch_mask(rng, g, yy, xx)
    fov = (rho <= 1.0) & ~notch

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

    # Optic disc (exact mask), its pale cup and a pale peripapillary rim (a confuser, in no mask). Painted as on the
    # IDRiD sample, where the disc is the brightest structure (mean RGB 1.57/2.26/4.0 x the retina's, the exudates
    # 1.12/1.35/1.03 x) and yellow-orange (blue 1.2-2.7 x): a disc dimmer or whiter than the painted exudates teaches a
    # model that a real disc is one large exudate. The exudates keep their brighter colour because dimming them to the
    # real 1.35 x made models mark more of the real discs' rims. Size and place: ``geometry._geometry``; vessels leave
    # from the nasal side of the cup, the temporal half clear: ``vessels._vessel_paths``.
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
    # a soft edge over a fifth of the radius, as on a photograph, not a cut-out
    disc = rng.uniform(0.85, 1.0) * np.clip(0.85 + 3.4 * (1.0 - e), 0.0, 1.0)
    ec = np.hypot(dx + _F32(g.side * 0.15 * g.od_ax), dy) / (rng.uniform(0.3, 0.45) * g.od_ax)
    cup = rng.uniform(0.45, 0.75) * np.exp(-0.5 * ec**2)
    temporal = np.cos(np.arctan2(dy, dx) - (math.pi if g.side > 0 else 0.0))
    rim = rng.uniform(0.35, 0.6) * np.exp(-0.5 * ((e - 1.1) / 0.06) ** 2) * (0.35 + 0.65 * np.clip(temporal, 0, 1))
    window = albedo[y0:y1, x0:x1]
    _paint(window, disc, (350, 318, 120))
    _paint(window, cup, (340, 318, 150))
    _paint(window, rim, (250, 228, 150))
    halo = disc_halo(rng, g, albedo, yy, xx)

    reflex = _render_vessels(rng, g, albedo)
    _blend(albedo, reflex, (255, 200, 175))
    sheen = light_reflexes(rng, g, albedo, yy, xx)

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
    illum *= rng.uniform(0.85, 1.05) * np.clip((g.r - dist_c) / 1.2 + 0.5, 0.0, 1.0) * ~notch
    img = albedo * illum[..., None]
    glare = border_glare(rng, g, rho, yy, xx) * (illum > 0)
    _blend(img, glare, (255, 210, 150))
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
        "od_halo": (halo > 0.1) & ~od & fov,
        "sheen": (sheen > 0.05) & fov,
        "glare": (glare > 0.05) & fov,
    }
    for key in ("od_halo", "sheen", "glare"):  # painted over a lesion, a pixel stays the lesion's
        masks[key] &= ~(masks["EX"] | masks["HE"] | masks["SE"] | masks["MA"])
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
        return_confusers: also return masks of the bright look-alikes that are not lesions: ``drusen``, ``reflex``
            (vessel light reflex), ``od_rim`` (pale rim round the optic disc), ``od_halo`` (the disc's bright glow),
            ``sheen`` (nerve-fibre-layer and foveal reflexes) and ``glare`` (stray light along the field's edge);
            the field of view may carry a notch cut into its edge (see ``lookalikes``).

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
    confusers = ("drusen", "reflex", "od_rim", "od_halo", "sheen", "glare")
    keys = ("EX", "HE", "SE", "MA", "OD") + (confusers if return_confusers else ())
    masks = {}
    for key in keys:
        masks[key] = np.zeros((height, width), bool)
        masks[key][by0:by1, bx0:bx1] = crop_masks[key]
    return image, masks


def imbalance_statistics(masks: Iterable[np.ndarray]) -> dict[str, float]:
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
