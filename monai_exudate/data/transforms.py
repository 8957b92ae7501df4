"""Dictionary transforms for fundus photographs: loading, field-of-view crop, square padding, augmentation."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import (
    CropForegroundd,
    Flip,
    InvertibleTransform,
    LoadImage,
    MapTransform,
    RandomizableTransform,
    Rotate90,
    SpatialCrop,
    SpatialPad,
)
from monai.transforms.utils import generate_spatial_bounding_box
from monai.utils import TraceKeys

from monai_exudate.data.layouts import IDRID_MASKS
from monai_exudate.data.readers import FundusImageReader, LesionMaskReader

# ImageNet statistics on the 0-255 scale, the normalisation the ImageNet-initialised backbones expect.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


class LoadFundusd(MapTransform):
    """Load a fundus image (RGB) and its lesion masks (binary), stacked into one multi-channel label.

    A lesion whose mask is missing from the datalist (``None``) gets an all-zero channel and a ``False`` entry in
    ``present_key``, so evaluation can apply the dataset's rule for missing annotations.
    """

    def __init__(
        self,
        image_key: str = "image",
        lesions: Sequence[str] = ("EX",),
        label_key: str | None = "label",
        present_key: str = "label_present",
        image_reader: Any = None,
        mask_reader: Any = None,
    ) -> None:
        super().__init__(keys=[image_key], allow_missing_keys=False)
        self.image_key = image_key
        self.lesions = tuple(lesions)
        self.label_key = label_key
        self.present_key = present_key
        self.load_image = LoadImage(
            reader=image_reader or FundusImageReader(), image_only=True, ensure_channel_first=True, dtype=np.uint8
        )
        self.load_mask = LoadImage(
            reader=mask_reader or LesionMaskReader(), image_only=True, ensure_channel_first=True, dtype=np.uint8
        )

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image_path = d[self.image_key]
        image = self.load_image(image_path)
        d[self.image_key] = image
        if self.label_key is None or not self.lesions:
            return self._drop_mask_paths(d)
        channels, present = [], []
        for lesion in self.lesions:
            path = d.get(lesion)
            if path is None:
                channels.append(torch.zeros((1, *image.shape[1:]), dtype=torch.uint8))
                present.append(False)
                continue
            mask = self.load_mask(path)
            if tuple(mask.shape[1:]) != tuple(image.shape[1:]):
                raise ValueError(
                    f"mask {path} has size {tuple(mask.shape[1:])} but its image {image_path} "
                    f"has size {tuple(image.shape[1:])}"
                )
            channels.append(mask.as_tensor())
            present.append(True)
        d[self.label_key] = MetaTensor(torch.cat(channels, 0), meta=dict(image.meta))
        d[self.present_key] = torch.tensor(present, dtype=torch.bool)
        return self._drop_mask_paths(d)

    def _drop_mask_paths(self, d: dict[Hashable, Any]) -> dict[Hashable, Any]:
        # the masks now live in the label; their path entries differ between images (a missing mask is None) and
        # would break batching
        mask_keys = {*self.lesions, *IDRID_MASKS}
        return {k: v for k, v in d.items() if v is not None and k not in mask_keys}


class NoFieldOfViewError(ValueError):
    """A photograph without a field of view: a black (or nearly black) frame."""


class FieldOfViewSelector:
    """Select the circular field of view of a fundus photograph by intensity, robust to glare in the black border.

    A frame where nothing is selected (black, or nearly so) raises ``NoFieldOfViewError``: it holds no retina.

    A pixel is inside when its brightest channel exceeds ``relative_threshold`` times the image's bright level (99th
    percentile), and at least ``threshold``: a relative level ignores the faint halo some cameras leave around the
    disc. Rows and columns with fewer than ``min_fraction`` of their pixels inside are dropped, which ignores isolated
    noise and reflections in the border while keeping the true edge of the disc to within a few pixels.
    """

    def __init__(self, threshold: float = 10.0, relative_threshold: float = 0.15, min_fraction: float = 0.02) -> None:
        self.threshold = threshold
        self.relative_threshold = relative_threshold
        self.min_fraction = min_fraction

    def __call__(self, img: torch.Tensor | np.ndarray) -> torch.Tensor:
        t = img.as_tensor() if isinstance(img, MetaTensor) else torch.as_tensor(img)
        brightest = t[:1].clone()
        for channel in t[1:]:  # elementwise maxima, faster than amax over the channel dimension
            torch.maximum(brightest[0], channel, out=brightest[0])
        # a strided subsample keeps the quantile cheap on 12-megapixel photographs
        sample = brightest[0, ::4, ::4].reshape(-1)[:16_000_000]
        level = _quantile(sample, 0.99) if sample.numel() else 0.0
        cut = max(self.threshold, self.relative_threshold * level)
        # compare in the image's own dtype (x > cut is x > floor(cut) for integers): no float copy of the plane
        inside = brightest > (int(np.floor(cut)) if not brightest.is_floating_point() else cut)
        counts_0 = inside.sum(dim=2, keepdim=True, dtype=torch.int32)
        counts_1 = inside.sum(dim=1, keepdim=True, dtype=torch.int32)
        keep_0 = counts_0 >= self.min_fraction * inside.shape[2]
        keep_1 = counts_1 >= self.min_fraction * inside.shape[1]
        selected = inside & keep_0 & keep_1
        if not bool(keep_0.any() and keep_1.any() and selected.any()):
            raise NoFieldOfViewError(f"no field of view found: the frame is black (too few pixels above {cut:g})")
        return selected


def _quantile(values: torch.Tensor, q: float) -> float:
    """``torch.quantile(values, q)`` (linear interpolation); by counting, without a sort, for 8-bit images."""
    if values.dtype != torch.uint8:
        return float(torch.quantile(values.float(), q))
    position = q * (values.numel() - 1)
    below, above = int(np.floor(position)), int(np.ceil(position))
    cumulative = torch.bincount(values, minlength=256).cumsum(0)
    # the k-th smallest value (0-based) is the first level whose cumulative count exceeds k
    low = int(torch.searchsorted(cumulative, below, right=True))
    high = int(torch.searchsorted(cumulative, above, right=True))
    return low + (position - below) * (high - low)


class FieldOfViewCropd(CropForegroundd):
    """Crop every key to the bounding box of the field of view found in ``source_key`` (invertible).

    With ``fov_pixels_key`` set, the pixel count of the field of view is stored under that key, so the lesion
    quantification of inference reuses this pass over the photograph instead of making a second one.
    """

    def __init__(
        self,
        keys: KeysCollection,
        source_key: str = "image",
        threshold: float = 10.0,
        relative_threshold: float = 0.15,
        min_fraction: float = 0.02,
        margin: int = 0,
        fov_pixels_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        self.selector = FieldOfViewSelector(threshold, relative_threshold, min_fraction)
        super().__init__(
            keys,
            source_key=source_key,
            select_fn=self.selector,
            margin=margin,
            allow_smaller=True,
            start_coord_key=None,
            end_coord_key=None,
            allow_missing_keys=allow_missing_keys,
        )
        self.fov_pixels_key = fov_pixels_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor], lazy: bool | None = None) -> dict[Hashable, Any]:
        d = dict(data)
        source = d[self.source_key]
        try:
            inside = self.selector(source)
        except NoFieldOfViewError as err:
            name = source.meta.get("filename_or_obj", "image") if isinstance(source, MetaTensor) else "image"
            raise NoFieldOfViewError(f"{name}: {err}") from None
        start, end = generate_spatial_bounding_box(inside, margin=self.cropper.margin, allow_smaller=True)
        box_start, box_end = np.asarray(start), np.asarray(end)
        lazy_ = self.lazy if lazy is None else lazy
        for key, mode in self.key_iterator(d, self.mode):
            d[key] = self.cropper.crop_pad(img=d[key], box_start=box_start, box_end=box_end, mode=mode, lazy=lazy_)
        if self.fov_pixels_key is not None:
            d[self.fov_pixels_key] = int(inside.sum(dtype=torch.int64))
        return d


class PadToSquared(MapTransform, InvertibleTransform):
    """Zero-pad the short side symmetrically to make the image square (invertible).

    With ``below`` set, only images whose short side is smaller than ``below`` are padded (DDR's preprocessing).
    """

    def __init__(self, keys: KeysCollection, below: int | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.below = below

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            spatial = tuple(d[key].shape[1:])
            side = max(spatial)
            pad_needed = min(spatial) < side and (self.below is None or min(spatial) < self.below)
            # Pad with a no-op size when not needed, so inversion always finds one entry per call.
            target = (side,) * len(spatial) if pad_needed else spatial
            d[key] = SpatialPad(spatial_size=target, method="symmetric")(d[key])
        return d

    def inverse(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            # the entry was recorded by the SpatialPad built for that call, hence no instance check
            padded = self.pop_transform(img, check=False)[TraceKeys.EXTRA_INFO]["padded"]
            roi_start = [before for before, _ in padded[1:]]
            roi_end = [size - after for size, (_, after) in zip(img.shape[1:], padded[1:])]
            cropper = SpatialCrop(roi_start=roi_start, roi_end=roi_end)
            with cropper.trace_transform(False):
                d[key] = cropper(img)
        return d


# the authors' six offline copies of a training image (`scripts/prepare_dataset.py` `augment()`): the original,
# rotations by 90/180/270 degrees, horizontal and vertical flips, as (quarter turns, flipped spatial axis or None);
# MONAI's PIL reader puts width first, so spatial axis 0 flipped is the horizontal flip
AUTHORS_VARIANTS = ((0, None), (1, None), (2, None), (3, None), (0, 0), (0, 1))
AUGMENTATION_VARIANTS = ("dihedral", "authors")


class RandFlipRotate90d(RandomizableTransform, MapTransform):
    """Random rotation by a multiple of 90 degrees and/or flip, the same for all keys.

    ``variants="dihedral"``: the eight symmetries of the square, equally likely. ``variants="authors"``: one of the
    authors' six offline copies (original, 90, 180, 270, horizontal flip, vertical flip; ``AUTHORS_VARIANTS``),
    equally likely, so that six passes over the set show each copy once on average. A 90/270 degree rotation turns a
    non-square image from landscape to portrait, which a batch of two such images cannot hold: for non-square
    images they are drawn only with ``rotate_non_square`` (one image per batch, as the authors' one image per GPU),
    otherwise only the shape-preserving variants are.

    Args:
        keys: keys of the images to transform together.
        prob: probability of transforming at all.
        variants: "dihedral" or "authors".
        rotate_non_square: also draw 90/270 degree rotations for non-square images.
        allow_missing_keys: do not raise for a missing key.
    """

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 1.0,
        variants: str = "dihedral",
        rotate_non_square: bool = False,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        if variants not in AUGMENTATION_VARIANTS:
            raise ValueError(f"variants must be one of {AUGMENTATION_VARIANTS}, got {variants!r}.")
        self.variants = variants
        self.rotate_non_square = bool(rotate_non_square)
        self._quarter_turns = 0
        self._flip_axis: int | None = None

    def randomize(self, square: bool) -> None:
        super().randomize(None)
        any_turn = square or self.rotate_non_square
        if self.variants == "authors":
            allowed = [v for v in AUTHORS_VARIANTS if any_turn or v[0] % 2 == 0]
            self._quarter_turns, self._flip_axis = allowed[int(self.R.randint(0, len(allowed)))]
            return
        self._quarter_turns = int(self.R.randint(0, 4)) if any_turn else 2 * int(self.R.randint(0, 2))
        self._flip_axis = 0 if self.R.randint(0, 2) else None

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        first = self.first_key(d)
        if first == []:
            return d
        spatial = tuple(d[first].shape[1:])
        self.randomize(square=len(set(spatial)) == 1)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            img = d[key]
            if self._quarter_turns:
                img = Rotate90(k=self._quarter_turns, spatial_axes=(0, 1))(img)
            if self._flip_axis is not None:
                img = Flip(spatial_axis=self._flip_axis)(img)
            d[key] = img
        return d
