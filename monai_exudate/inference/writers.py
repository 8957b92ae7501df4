"""Inference output files: names, atomic writes, 8-bit PNG maps, colour overlays, NIfTI probabilities, CSV tables."""

from __future__ import annotations

import csv
import gzip
import io
import os
import struct
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from PIL import Image

from monai_exudate.inference.legend import draw_legend

# Temporary files are named ``.<final name>.<random>.partial`` in the destination folder.
OUTPUT_FORMATS = ("prob", "mask", "overlay")
# how to read the probability and mask PNGs back, as the manifest states it
PNG_ENCODING = {
    "prob": "8-bit grey level q = round(p * 255); the probability is q / 255",
    "mask": "255 where q / 255 > threshold (the metrics' rule), else 0",
}
OVERLAY_FORMATS = {"png": ".png", "jpeg": ".jpg"}

# Fixed overlay colours of the lesions the bundles know; other names take the fallback colours in order.
LESION_COLOURS: dict[str, tuple[int, int, int]] = {
    "EX": (255, 230, 0),  # yellow, as hard exudates look
    "HE": (220, 0, 0),  # red
    "SE": (0, 230, 230),  # cyan: soft exudates are pale, white would vanish on the bright disc
    "MA": (0, 210, 0),  # green
    "OD": (0, 110, 255),  # blue
}
FALLBACK_COLOURS = ((255, 0, 255), (255, 130, 0), (140, 60, 255), (255, 255, 255))


def lesion_colours(lesion_names: Sequence[str]) -> list[tuple[int, int, int]]:
    """Overlay colour of each lesion: the fixed colour of a known lesion, else the next fallback colour."""
    colours, spare = [], 0
    for name in lesion_names:
        if name.upper() in LESION_COLOURS:
            colours.append(LESION_COLOURS[name.upper()])
        else:
            colours.append(FALLBACK_COLOURS[spare % len(FALLBACK_COLOURS)])
            spare += 1
    return colours


class OutputLayout:
    """File names of one image's outputs in ``output_dir``, from the image stem and the lesion names."""

    def __init__(
        self,
        output_dir: str | os.PathLike,
        lesion_names: Sequence[str],
        formats: Sequence[str] = OUTPUT_FORMATS,
        nifti: bool = False,
        overlay_format: str = "png",
    ) -> None:
        unknown = sorted(set(formats) - set(OUTPUT_FORMATS))
        if unknown:
            raise ValueError(f"formats: unknown output format(s) {unknown}; expected a subset of {OUTPUT_FORMATS}")
        if overlay_format not in OVERLAY_FORMATS:
            raise ValueError(f"overlay_format must be one of {sorted(OVERLAY_FORMATS)}, got {overlay_format!r}")
        self.output_dir = Path(output_dir)
        self.lesion_names = list(lesion_names)
        self.formats = tuple(formats)
        self.nifti = nifti
        self.overlay_suffix = OVERLAY_FORMATS[overlay_format]

    def prob(self, stem: str, lesion: str) -> Path:
        return self.output_dir / f"{stem}_{lesion}_prob.png"

    def mask(self, stem: str, lesion: str) -> Path:
        return self.output_dir / f"{stem}_{lesion}_mask.png"

    def overlay(self, stem: str) -> Path:
        return self.output_dir / f"{stem}_overlay{self.overlay_suffix}"

    def nifti_prob(self, stem: str) -> Path:
        return self.output_dir / f"{stem}_prob.nii.gz"

    def expected(self, stem: str) -> list[Path]:
        """Every file the requested formats produce for ``stem``."""
        paths = []
        for lesion in self.lesion_names:
            if "prob" in self.formats:
                paths.append(self.prob(stem, lesion))
            if "mask" in self.formats:
                paths.append(self.mask(stem, lesion))
        if "overlay" in self.formats:
            paths.append(self.overlay(stem))
        if self.nifti:
            paths.append(self.nifti_prob(stem))
        return paths

    def complete(self, stem: str) -> bool:
        """Whether every expected output of ``stem`` exists and looks whole (see ``output_size``), PNGs of one size."""
        sizes = set()
        for path in self.expected(stem):
            size = output_size(path)
            if size is False:
                return False
            if size is not None:
                sizes.add(size)
        return len(sizes) <= 1


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def output_size(path: str | os.PathLike) -> tuple[int, int] | None | bool:
    """Check an output file cheaply, without decoding it: ``False`` when it is missing, empty or damaged.

    A PNG must start with the signature and an image header and end with the end chunk (its (width, height) is
    returned); a JPEG must start and end with its markers; a gzipped NIfTI must start with the gzip magic (``None``
    is returned for both). Outputs are written atomically, so a damaged file is one changed after the run.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(24)
            f.seek(0, os.SEEK_END)
            if f.tell() < 24:
                return False
            f.seek(-12, os.SEEK_END)
            tail = f.read(12)
    except OSError:  # missing, a folder, unreadable
        return False
    name = path.name.lower()
    if name.endswith(".png"):
        if not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR" or tail != _PNG_END:
            return False
        return struct.unpack(">II", head[16:24])
    if name.endswith((".jpg", ".jpeg")):
        return None if head.startswith(b"\xff\xd8") and tail.endswith(b"\xff\xd9") else False
    if name.endswith(".gz"):
        return None if head.startswith(b"\x1f\x8b") else False
    return None


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def encode_png(array: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG bytes of an (H, W) grey or (H, W, 3) RGB uint8 array.

    Every row uses the PNG "Up" filter (difference with the row above), which numpy computes in one pass, and zlib
    releases the GIL, so writer threads compress in parallel. Why not PIL: ``bench/host_work.py`` on the IDRiD sample
    (4288x2848, one thread, both at zlib level 1) measures 0.44x PIL's time for a painted overlay (0.95x its bytes)
    and 0.47x for an 8-bit probability map (1.03x its bytes).
    """
    array = np.asarray(array)
    if array.dtype != np.uint8 or not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3)):
        raise ValueError(f"encode_png needs an (H, W) or (H, W, 3) uint8 array, got {array.dtype} {array.shape}")
    height, width = array.shape[:2]
    rows = np.ascontiguousarray(array).reshape(height, -1)
    raw = np.empty((height, rows.shape[1] + 1), np.uint8)
    raw[:, 0] = 2  # filter type "Up"
    raw[:, 1:] = rows
    raw[1:, 1:] -= rows[:-1]  # uint8 arithmetic wraps modulo 256, as the filter is defined
    colour_type = 0 if array.ndim == 2 else 2
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", zlib.compress(raw, compress_level)),
            _png_chunk(b"IEND", b""),
        )
    )


def encode_jpeg(array: np.ndarray, quality: int = 95) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 array: about five times faster to write than PNG at 12 megapixels.

    Colour is kept at full resolution (4:4:4): the default 4:2:0 subsampling would smear the colour of lesions a
    few pixels wide into their neighbours.
    """
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def paint_overlay(
    photo: np.ndarray, masks: np.ndarray, colours: Sequence[Sequence[int]], alpha: float = 0.5
) -> np.ndarray:
    """Blend each lesion's colour over the photo (H, W, 3) where its mask (C, H, W) is set, in channel order.

    A blended pixel is ``rint((1 - alpha) * pixel + alpha * colour)`` per channel. Why not
    ``monai.visualize.blend_images``: it blends every pixel of the photograph in floating point through one colour
    map, so lesions cannot each keep their own legend colour, and ``bench/host_work.py`` measures it at 8.5x this
    function's time on the IDRiD sample (4288x2848, one lesion mask, one thread).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = np.array(photo, dtype=np.uint8, order="C")  # C order: the flat view below must share its memory
    flat = out.reshape(-1, 3)
    levels = np.arange(256, dtype=np.float64) * (1.0 - alpha)
    for mask, colour in zip(masks, colours):
        index = np.flatnonzero(mask)  # lesions are sparse: touch only their pixels
        if index.size == 0:
            continue
        for channel, value in enumerate(colour):
            # a 256-entry table per channel replaces float arithmetic on every lesion pixel
            table = np.rint(levels + alpha * float(value)).astype(np.uint8)
            flat[index, channel] = table[flat[index, channel]]
    return out


def compose_overlay(
    photo: np.ndarray,
    masks: np.ndarray,
    colours: Sequence[Sequence[int]],
    alpha: float = 0.5,
    legend: Mapping[str, Any] | None = None,
    side_by_side: bool = False,
) -> np.ndarray:
    """The overlay picture (H, W, 3), or (H, 2W, 3) side by side: lesion colours over the photograph, the legend.

    ``legend`` holds :func:`~monai_exudate.inference.legend.draw_legend`'s ``lesion_names``, ``threshold`` and
    ``model`` (None: no legend). With ``side_by_side`` the untouched photograph stands on the left of the painted
    one, at the same scale, so a reader sees what the colours cover.
    """
    picture = paint_overlay(photo, masks, colours, alpha)
    if legend is not None:
        picture = draw_legend(picture, colours=colours, **legend)
    if side_by_side:
        picture = np.concatenate([np.asarray(photo, dtype=np.uint8), picture], axis=1)
    return picture


def encode_nifti(prob: np.ndarray, lesion_names: Sequence[str], compress_level: int = 1) -> bytes:
    """Gzipped NIfTI bytes of probabilities (C, H, W), stored as float32 (width, height, channel) like MONAI's
    (x, y) order, with the lesion names in the header description."""
    data = np.ascontiguousarray(np.transpose(prob, (2, 1, 0)), dtype=np.float32)
    image = nib.Nifti1Image(data, np.eye(4))
    image.header["descrip"] = ("channels " + ",".join(lesion_names))[:79].encode()
    return gzip.compress(image.to_bytes(), compresslevel=compress_level)


def read_csv(path: str | os.PathLike, fieldnames: Sequence[str], optional: Sequence[str] = ()) -> list[dict[str, str]]:
    """Rows of a CSV table written by ``write_csv_atomic``; ``ValueError`` naming the file if its columns differ.

    Columns in ``optional`` may be missing (tables written before they existed): their cells read as "".
    """
    path = Path(path)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        found = list(reader.fieldnames or [])
        if found != list(fieldnames) and found != [c for c in fieldnames if c not in optional]:
            raise ValueError(f"{path}: expected columns {list(fieldnames)}, found {reader.fieldnames}")
        return [{name: row.get(name, "") for name in fieldnames} for row in reader]
