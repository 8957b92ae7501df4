"""Per-lesion probability maps of one photograph at its own size, in memory: the bundles' inference chain, no files."""

from __future__ import annotations

import base64
import binascii
import io
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser
from PIL import Image
from torch import nn

from monai_exudate.inference.inversion import invert_prediction, rows_first
from monai_exudate.inference.postprocessing import check_logit_batch, to_probabilities

__all__ = ["FundusPredictor", "decode_photo"]

# what a bundle's inference config must define for a predictor to be built from it
CONFIG_IDS = ("network", "preprocessing", "postprocessing", "inferer", "lesions")


class FundusPredictor:
    """Photograph in, per-lesion probabilities ``(C, H, W)`` float32 on the photograph's own grid out.

    The same steps as :class:`~monai_exudate.inference.FundusInferenceRunner` (preprocessing, inferer, the bundle's
    post-processing, inversion through :func:`~monai_exudate.inference.inversion.invert_prediction`) without output
    files, for callers that want the maps in memory: the MLflow model, notebooks, services.

    Args:
        network: returns logits.
        preprocessing: the bundle's inference preprocessing (a ``Compose`` starting with ``LoadFundusd``).
        postprocessing: the bundle's post-processing (branch fusion, sigmoid).
        inferer: a MONAI inferer (``SimpleInferer`` or ``SlidingWindowInferer``).
        lesion_names: the output channels' lesions.
        device: where the network runs.
        image_key: the data key of the photograph.
    """

    def __init__(
        self,
        network: nn.Module,
        preprocessing: Callable,
        postprocessing: Callable,
        inferer: Callable,
        lesion_names: Sequence[str],
        device: str | torch.device = "cpu",
        image_key: str = "image",
    ) -> None:
        self.device = torch.device(device)
        self.network = network.to(self.device).eval()
        self.preprocessing = preprocessing
        self.postprocessing = postprocessing
        self.inferer = inferer
        self.lesion_names = list(lesion_names)
        self.image_key = image_key

    @classmethod
    def from_bundle(
        cls, config_file: str | os.PathLike, overrides: dict[str, Any] | None = None, meta_file: str | None = None
    ) -> FundusPredictor:
        """Build from a bundle's ``inference.json`` (``overrides``: e.g. ``ckpt_path``, ``bundle_root``, ``device``)."""
        parser = ConfigParser()
        parser.read_config(str(config_file))
        if meta_file is not None:
            parser.read_meta(str(meta_file))
        parser.update(dict(overrides or {}))
        missing = [i for i in CONFIG_IDS if i not in parser]
        if missing:
            raise ValueError(f"{config_file}: not an inference config, it defines none of {missing}")
        parts = {i: parser.get_parsed_content(i) for i in CONFIG_IDS}
        device = parser.get_parsed_content("device") if "device" in parser else "cpu"
        return cls(
            parts["network"],
            parts["preprocessing"],
            parts["postprocessing"],
            parts["inferer"],
            parts["lesions"],
            device=device,
        )

    def predict(self, photo: str | os.PathLike | bytes | np.ndarray) -> np.ndarray:
        """Probabilities ``(len(lesion_names), H, W)`` of ``photo``: a file path, the bytes of an image file (JPEG,
        PNG, TIFF...) or their base64 text, or an ``(H, W, 3)`` uint8 RGB array (see :func:`decode_photo`)."""
        if isinstance(photo, (str, os.PathLike)) and _is_file(photo):
            return self._predict_file(str(photo))
        with tempfile.TemporaryDirectory(prefix="fundus_photo_") as folder:
            return self._predict_file(_write_photo(photo, Path(folder)))

    def _predict_file(self, path: str) -> np.ndarray:
        image = self.preprocessing({self.image_key: path})[self.image_key]
        with torch.no_grad():
            logits = self.inferer(image.as_tensor()[None].to(self.device), self.network)
            logits = check_logit_batch(logits, image[None])
            prob = to_probabilities(self.postprocessing, logits[0], self.lesion_names)
            prob = invert_prediction(self.preprocessing, prob, image, self.image_key)
        return rows_first(prob.float().clamp(0.0, 1.0)).contiguous().cpu().numpy()


def decode_photo(value: Any) -> bytes | np.ndarray | str:
    """A photograph as the MLflow model receives it: a path stays a path, base64 text becomes the file's bytes, an
    array or nested lists become an ``(H, W, 3)`` uint8 array; anything else raises ``ValueError``."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, (list, tuple, np.ndarray)) and len(value) == 1 and np.ndim(value) == 1:
        value = value[0]  # MLflow's schema enforcement may wrap a column's string value in a one-item array
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        if _is_file(value):
            return value
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as err:
            raise ValueError(f"not a readable file path nor base64-encoded image bytes: {value[:80]!r}") from err
    array = np.asarray(value)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"a photograph array must be (H, W, 3) RGB, got shape {array.shape}")
    return array


def _is_file(value: str | os.PathLike) -> bool:
    try:
        return Path(value).is_file()
    except (OSError, ValueError):  # base64 text longer than a file name can be
        return False


def _write_photo(photo: bytes | np.ndarray | str, folder: Path) -> str:
    """Write an in-memory photograph to ``folder`` as a file the bundle's reader takes; return its path."""
    photo = decode_photo(photo)
    if isinstance(photo, str):
        return photo
    if isinstance(photo, bytes):
        try:
            with Image.open(io.BytesIO(photo)) as image:
                kind = (image.format or "PNG").lower()
        except Exception as err:
            raise ValueError(f"the photograph's bytes are not an image file PIL can read ({err})") from err
        path = folder / f"photo.{ {'jpeg': 'jpg', 'tiff': 'tif'}.get(kind, kind) }"
        path.write_bytes(photo)
        return str(path)
    if photo.dtype != np.uint8:
        if not np.issubdtype(photo.dtype, np.integer) or (photo.size and (photo.min() < 0 or photo.max() > 255)):
            raise ValueError(f"a photograph array must hold 8-bit RGB values (0-255 integers), got {photo.dtype}")
        photo = photo.astype(np.uint8)
    path = folder / "photo.png"
    Image.fromarray(photo, mode="RGB").save(path)
    return str(path)
