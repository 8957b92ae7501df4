"""Logits to calibrated lesion probabilities, with the calibration the model package ships (sigmoid without one)."""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Hashable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_exudate.inference.model_package import read_model_package
from monai_exudate.metrics.calibration import apply_calibration
from monai_exudate.utils.hashing import file_sha256

__all__ = ["CALIBRATION_KEY", "CalibratedSigmoidd", "check_calibration", "package_calibration"]

logger = logging.getLogger(__name__)

# the model package's entry holding the calibration (written by ``python -m monai_exudate calibrate``)
CALIBRATION_KEY = "calibration"


def package_calibration(model_file: str | os.PathLike | None) -> dict[str, Any] | None:
    """The calibration shipped in the model package beside ``model_file``; None when there is no package or the
    package has none (a model that was never calibrated: its maps are the sigmoid of its logits).

    A calibration entry that is not valid raises ``ValueError`` naming the package.
    """
    package = read_model_package(model_file)
    if package is None or package.get(CALIBRATION_KEY) is None:
        return None
    calibration = check_calibration(package[CALIBRATION_KEY], source=f"the model package beside {model_file}")
    fitted = (calibration.get("fitted_on") or {}).get("weights_sha256")
    if fitted and Path(model_file).name == package.get("weights", "model.pt") and Path(model_file).is_file():
        if file_sha256(model_file) != fitted:
            logger.warning(
                "the calibration in the model package beside %s was fitted on other weights than %s: it is not "
                "applied (maps are the sigmoid of the logits); calibrate this model again",
                model_file,
                Path(model_file).name,
            )
            return None
    return calibration


def check_calibration(calibration: Mapping[str, Any], source: str = "calibration") -> dict[str, Any]:
    """``calibration`` checked: ``{"method": ..., "lesions": {lesion: {"logits": [...], "probabilities": [...]}}}``
    with strictly increasing logits and non-decreasing probabilities in [0, 1]; raises ``ValueError`` naming
    ``source`` and the lesion otherwise."""
    lesions = calibration.get("lesions") if isinstance(calibration, Mapping) else None
    if not isinstance(lesions, Mapping) or not lesions:
        raise ValueError(f"{source}: calibration must hold 'lesions': {{lesion: {{'logits', 'probabilities'}}}}")
    for lesion, knots in lesions.items():
        try:
            x = [float(v) for v in knots["logits"]]
            y = [float(v) for v in knots["probabilities"]]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{source}: calibration of {lesion} needs numeric 'logits' and 'probabilities'") from err
        if not x or len(x) != len(y):
            raise ValueError(f"{source}: calibration of {lesion} has {len(x)} logits and {len(y)} probabilities")
        if not all(math.isfinite(v) for v in x + y):
            raise ValueError(f"{source}: calibration of {lesion} has non-finite knots")
        if any(b <= a for a, b in zip(x, x[1:])) or any(b < a for a, b in zip(y, y[1:])):
            raise ValueError(f"{source}: calibration of {lesion} is not monotone (logits must increase)")
        if not all(0.0 <= v <= 1.0 for v in y):
            raise ValueError(f"{source}: calibration of {lesion} has probabilities outside [0, 1]")
    return dict(calibration)


class CalibratedSigmoidd(MapTransform):
    """Logits ``[C, *spatial]`` to lesion probabilities: each lesion through its calibration, else the sigmoid.

    The bundles' last post-processing step in evaluation and inference, before the maps are quantised to 8 bits. A
    model trained with Dice losses pushes most lesion pixels, and many background ones, to p > 0.99, where the 8-bit
    maps keep no ranking: on the 27 IDRiD testing photographs the CPU profile's average precision was 0.810 on its
    float maps and 0.697 on the written PNGs. The monotone calibration fitted on the validation part
    (:func:`~monai_exudate.metrics.calibration.fit_isotonic`) spreads those pixels over the levels by how often they
    are lesions, so the stored maps keep the ranking and p reads as a lesion frequency.

    Args:
        keys: keys of the channel-first logits (one item, after ``decollate_batch``).
        lesion_names: the lesion of each channel.
        calibration: :func:`package_calibration`'s value; None, or a lesion it does not hold, means the sigmoid.
        allow_missing_keys: skip keys that are absent.
    """

    def __init__(
        self,
        keys: KeysCollection,
        lesion_names: Sequence[str],
        calibration: Mapping[str, Any] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.lesion_names = list(lesion_names)
        self.calibration = None if calibration is None else check_calibration(calibration)
        knots = (self.calibration or {}).get("lesions", {})
        self.knots = [
            (knots[name]["logits"], knots[name]["probabilities"]) if name in knots else None
            for name in self.lesion_names
        ]

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            logits = d[key]
            if not isinstance(logits, torch.Tensor) or logits.shape[0] != len(self.lesion_names):
                raise ValueError(
                    f"{key!r} must hold one logit channel per lesion {self.lesion_names}, got "
                    f"{tuple(getattr(logits, 'shape', ()))}"
                )
            # a copy of the logits (a MetaTensor keeps its metadata for Invertd) filled channel by channel
            out = logits.float().clone()
            with torch.no_grad():
                for c, k in enumerate(self.knots):
                    x = torch.as_tensor(logits[c]).float()
                    out[c] = torch.sigmoid(x) if k is None else apply_calibration(x, *k)
            d[key] = out
        return d
