"""Inference dataset that turns an unreadable or implausible input into an error record instead of raising.

An input is rejected, with the reason, when it is no regular file (missing, a dangling symbolic link, a link loop, a
folder), its suffix is not a supported image type, its header declares more than ``max_image_pixels`` pixels
(checked before decoding: default ``MAX_IMAGE_PIXELS``), the file cannot be identified or decoded to its end
(corrupt or truncated), its short side is under ``MIN_SIDE`` pixels (thumbnails, icons: every public fundus set is
far larger) or its long side exceeds ``MAX_ASPECT_RATIO`` times its short side (fundus cameras give 1:1 to 16:9
frames; strips and banners are not photographs of the retina).
"""

from __future__ import annotations

import errno
import os
import stat
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from monai.data import list_data_collate
from monai.transforms import Compose
from PIL import Image, UnidentifiedImageError

from monai_exudate.data.indexers import IMAGE_SUFFIXES
from monai_exudate.data.transforms import FieldOfViewSelector
from monai_exudate.inference.quantify import field_of_view_pixels

MIN_SIDE = 64
MAX_ASPECT_RATIO = 3.0
# 50 megapixels: above the 12-megapixel IDRiD frames (4288 x 2848) and the 24-36 megapixel full-frame sensors on
# fundus cameras; a 50-megapixel photograph needs about 1.5 GB of host memory through the preprocessing.
MAX_IMAGE_PIXELS = 50_000_000


def entry_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` is no regular file (missing, dangling link, link loop, folder, device), or ``None``."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symbolic link loop"
        if path.is_symlink():
            return f"dangling symbolic link (to {os.readlink(path)})"
        return "file not found"
    if stat.S_ISDIR(info.st_mode):
        return "a folder, not an image file"
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    return None


def check_image_file(path: str | os.PathLike, max_image_pixels: int = MAX_IMAGE_PIXELS) -> str | None:
    """Why ``path`` cannot be segmented, or ``None`` when it is a plausible fundus photograph.

    The size is read from the header and checked before anything is decoded; then the whole file is decoded (JPEG
    at 1/8 scale, which still reads every byte of the compressed stream), so a truncated file is caught here rather
    than deep inside the preprocessing.
    """
    path = Path(path)
    problem = entry_problem(path)
    if problem is not None:
        return problem
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return f"unsupported file type {path.suffix or '(none)'!r}; expected one of {', '.join(IMAGE_SUFFIXES)}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below, by our own limit
            image = Image.open(path)
        with image:
            width, height = image.size
            if width * height > max_image_pixels:
                return (
                    f"image declares {width}x{height} = {width * height} pixels, more than max_image_pixels "
                    f"({max_image_pixels}); not decoded"
                )
            if min(width, height) < MIN_SIDE:
                return f"image is {width}x{height} pixels, too small for a fundus photograph (minimum side {MIN_SIDE})"
            if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
                return (
                    f"image is {width}x{height} pixels, aspect ratio above {MAX_ASPECT_RATIO:g}:1 is not a fundus "
                    "photograph"
                )
            if image.format == "JPEG":
                image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
            image.load()
    except UnidentifiedImageError:
        return "not an image file (unrecognised content)"
    except Image.DecompressionBombError as err:  # above Pillow's own limit, which it checks on opening
        return f"image declares more pixels than Pillow opens ({err}); not decoded"
    except (OSError, SyntaxError, ValueError) as err:
        return f"unreadable or truncated image ({err})"
    return None


def innermost_cause(err: BaseException) -> BaseException:
    """The innermost cause of ``err``: MONAI's Compose wraps a failing transform's error, the innermost says why."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


class InferenceDataset(torch.utils.data.Dataset):
    """Items ``{image_key: path}`` -> preprocessed samples, or error records for inputs that cannot be used.

    ``preprocessing`` must start with the transform that loads the image; its output is kept (uint8, channel first)
    as ``"original"`` for the overlay when ``keep_original`` is set, and the pixel count of its field of view is
    returned as ``"fov_pixels"``: the value the preprocessing stored under ``fov_pixels_key`` (``FieldOfViewCropd``
    does, so the photograph is not scanned twice), else found by ``fov_selector``. Every sample has ``"path"``; an
    error record has ``"error"`` and nothing else. Inputs are checked by ``check_image_file`` with
    ``max_image_pixels``.
    """

    def __init__(
        self,
        items: Sequence[Mapping[str, Any]],
        preprocessing: Compose,
        image_key: str = "image",
        keep_original: bool = True,
        fov_selector: FieldOfViewSelector | None = None,
        fov_pixels_key: str = "fov_pixels",
        max_image_pixels: int = MAX_IMAGE_PIXELS,
    ) -> None:
        if not isinstance(preprocessing, Compose):
            raise ValueError(f"preprocessing must be a monai.transforms.Compose, got {type(preprocessing).__name__}")
        self.items = list(items)
        self.preprocessing = preprocessing
        self.image_key = image_key
        self.keep_original = keep_original
        self.fov_selector = fov_selector or FieldOfViewSelector()
        self.fov_pixels_key = fov_pixels_key
        if max_image_pixels < 1:
            raise ValueError(f"max_image_pixels must be >= 1, got {max_image_pixels}")
        self.max_image_pixels = int(max_image_pixels)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = str(self.items[index][self.image_key])
        reason = check_image_file(path, self.max_image_pixels)
        if reason is not None:
            return {"path": path, "error": reason}
        try:
            loaded = self.preprocessing({self.image_key: path}, end=1)
            original = loaded[self.image_key]
            if not isinstance(original, torch.Tensor) or original.ndim != 3:
                raise ValueError("the first preprocessing transform must load the image as a (C, W, H) tensor")
            sample = self.preprocessing(loaded, start=1)
            fov_pixels = sample.get(self.fov_pixels_key)
            if fov_pixels is None:
                fov_pixels = field_of_view_pixels(original, self.fov_selector)
        except Exception as err:  # any failure of one image must not stop the run
            cause = innermost_cause(err)
            return {"path": path, "error": f"preprocessing failed ({type(cause).__name__}: {cause})"}
        out = {"path": path, self.image_key: sample[self.image_key], "fov_pixels": int(fov_pixels)}
        if self.keep_original:
            # a plain tensor travels between DataLoader processes through shared memory
            out["original"] = torch.as_tensor(original).to(torch.uint8).clone()
        return out


def collate_inference(samples: Sequence[Mapping[str, Any]], image_key: str = "image") -> dict[str, Any]:
    """Split a list of samples into error records and batches of equal-shaped images.

    Returns ``{"errors": [(path, reason)], "batches": [{image_key: batched MetaTensor, "info": [per-sample dicts
    with path, fov_pixels and original]}]}``; images of different shapes go to separate batches.
    """
    errors = [(s["path"], s["error"]) for s in samples if "error" in s]
    groups: dict[tuple[int, ...], list[Mapping[str, Any]]] = {}
    for s in samples:
        if "error" not in s:
            groups.setdefault(tuple(s[image_key].shape), []).append(s)
    batches = []
    for group in groups.values():
        images = list_data_collate([{image_key: s[image_key]} for s in group])[image_key]
        info = [{k: v for k, v in s.items() if k != image_key} for s in group]
        batches.append({image_key: images, "info": info})
    return {"errors": errors, "batches": batches}
