"""Dataset checks: open every file of a datalist and report every problem at once, each naming its file."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from monai_exudate.data.indexers import SECTIONS, load_datalist
from monai_exudate.data.readers import MAX_AMBIGUOUS_FRACTION, ambiguous_fraction

# Fundus photographs of every public set are far larger; smaller files are thumbnails or wrong inputs.
MIN_IMAGE_SIDE = 32


@dataclass(frozen=True)
class DataProblem:
    """One problem found in a dataset: the file concerned and what is wrong with it."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class DataCheckError(ValueError):
    """Raised when a datalist has problems; the message lists every one of them."""

    def __init__(self, problems: Sequence[DataProblem], source: str = "datalist") -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{source} has {len(self.problems)} problem(s):\n{lines}")


def open_image(path: str | os.PathLike) -> Image.Image:
    """Open and fully decode an image file, raising ``ValueError`` naming the file when it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        image = Image.open(path)
        image.load()  # decodes everything: truncated files fail here, not at the header
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{path}: unreadable or truncated image ({err})") from err
    return image


def check_entry(entry: Mapping[str, Any], lesions: Sequence[str]) -> list[DataProblem]:
    """Check one datalist entry with absolute paths: image readable, masks readable, same size, binary."""
    problems: list[DataProblem] = []
    size = None
    try:
        image = open_image(entry["image"])
        size = image.size
        if min(size) < MIN_IMAGE_SIDE:
            problems.append(DataProblem(str(entry["image"]), f"image is only {size[0]}x{size[1]} pixels"))
    except (FileNotFoundError, ValueError) as err:
        problems.append(DataProblem(str(entry["image"]), str(err).split(": ", 1)[-1]))
    for lesion in lesions:
        path = entry.get(lesion)
        if path is None:
            continue
        try:
            mask = open_image(path)
        except (FileNotFoundError, ValueError) as err:
            problems.append(DataProblem(str(path), f"{lesion} mask: " + str(err).split(": ", 1)[-1]))
            continue
        if size is not None and mask.size != size:
            problems.append(
                DataProblem(
                    str(path),
                    f"{lesion} mask is {mask.size[0]}x{mask.size[1]} but its image is {size[0]}x{size[1]}",
                )
            )
        fraction = ambiguous_fraction(mask)
        if fraction > MAX_AMBIGUOUS_FRACTION:
            problems.append(
                DataProblem(str(path), f"{lesion} mask is not binary ({fraction:.1%} of pixels are mid-grey)")
            )
    return problems


def check_datalist(
    datalist: str | os.PathLike | Mapping[str, Any],
    dataset_dir: str | os.PathLike,
    lesions: Sequence[str] | None = None,
    sections: Sequence[str] = SECTIONS,
) -> list[DataProblem]:
    """Open every file of ``sections`` of a datalist and return every problem found (empty when all is well).

    ``lesions`` defaults to every lesion key present in the entries.
    """
    items: list[dict[str, Any]] = []
    for section in sections:
        try:
            items.extend(load_datalist(datalist, section, dataset_dir, lesions))
        except ValueError as err:
            if "has no section" in str(err):
                continue
            raise
    return _check_items(items, lesions)


def _check_items(items: Sequence[Mapping[str, Any]], lesions: Sequence[str] | None) -> list[DataProblem]:
    # image decoding releases the GIL, so threads check several files at once
    def run(item: Mapping[str, Any]) -> list[DataProblem]:
        keys = lesions if lesions is not None else [k for k in item if k not in ("image", "id")]
        return check_entry(item, keys)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return [p for found in pool.map(run, items) for p in found]


def checked_datalist(
    datalist: str | os.PathLike | Mapping[str, Any],
    section: str,
    dataset_dir: str | os.PathLike,
    lesions: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Load one section of a datalist after checking it; raise ``DataCheckError`` listing every problem."""
    items = load_datalist(datalist, section, dataset_dir, lesions)
    problems = _check_items(items, lesions)
    if problems:
        raise DataCheckError(problems, source=f"datalist section {section!r}")
    if not items:
        raise ValueError(f"datalist section {section!r} is empty (dataset folder {dataset_dir})")
    return items
