"""Indexers that turn a fundus dataset folder (IDRiD, DDR or generic folders) into a MONAI datalist."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_exudate.data.layouts import (
    DDR_LESIONS,
    DDR_ROOT,
    DDR_SPLIT_DIRS,
    IDRID_IMAGE_DIR,
    IDRID_LESION_DIRS,
    IDRID_MASK_DIR,
    IDRID_SPLIT_DIRS,
    LESIONS,
)
from monai_exudate.utils.atomic import atomic_write_bytes

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp")
SECTIONS = ("training", "validation", "testing")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def _masks_by_stem(folder: Path, lesion: str) -> dict[str, Path]:
    """Map image stems to mask files in ``folder``; a mask matches ``<stem>`` or ``<stem>_<lesion>``."""
    found: dict[str, Path] = {}
    if not folder.is_dir():
        return found
    for p in _images_in(folder):
        stem = p.stem
        if stem.upper().endswith(f"_{lesion.upper()}"):
            stem = stem[: -len(lesion) - 1]
        found[stem] = p
    return found


def _entry(root: Path, image: Path, masks: Mapping[str, Path | None]) -> dict[str, Any]:
    item: dict[str, Any] = {"id": image.stem, "image": image.relative_to(root).as_posix()}
    for lesion, path in masks.items():
        item[lesion] = None if path is None else path.relative_to(root).as_posix()
    return item


def index_idrid(
    dataset_dir: str | os.PathLike,
    lesions: Sequence[str] = ("MA", "HE", "EX", "SE", "OD"),
    validation_ids: Sequence[str] = (),
) -> dict:
    """Index the official IDRiD segmentation layout (train 01-54 in ``training``, test 55-81 in ``testing``).

    A lesion mask absent from the release (e.g. SE for most images) is recorded as ``None``, never invented. A copy
    that holds only the training split (no testing folder) indexes with an empty ``testing`` section.
    ``validation_ids`` moves those training images (by id, e.g. ``IDRiD_45``) to ``validation``, the held-out part
    used for recipe, checkpoint, threshold and calibration choices; an id that is not a training image is refused.
    """
    root = Path(dataset_dir)
    _require_dir(root / IDRID_IMAGE_DIR, "IDRiD image folder")
    datalist: dict[str, Any] = {section: [] for section in SECTIONS}
    for section, split_dir in IDRID_SPLIT_DIRS.items():
        if section == "testing" and not (root / IDRID_IMAGE_DIR / split_dir).is_dir():
            continue
        image_dir = _require_dir(root / IDRID_IMAGE_DIR / split_dir, f"IDRiD {section} image folder")
        masks = {
            lesion: _masks_by_stem(root / IDRID_MASK_DIR / split_dir / IDRID_LESION_DIRS[lesion], lesion)
            for lesion in lesions
        }
        for image in _images_in(image_dir):
            datalist[section].append(_entry(root, image, {les: masks[les].get(image.stem) for les in lesions}))
    wanted = set(validation_ids)
    unknown = sorted(wanted - {item["id"] for item in datalist["training"]})
    if unknown:
        raise ValueError(f"validation ids not among the IDRiD training images under {root}: {', '.join(unknown)}")
    datalist["validation"] = [item for item in datalist["training"] if item["id"] in wanted]
    datalist["training"] = [item for item in datalist["training"] if item["id"] not in wanted]
    return datalist


def index_ddr(dataset_dir: str | os.PathLike, lesions: Sequence[str] = DDR_LESIONS) -> dict:
    """Index the DDR lesion segmentation layout (``train``/``valid``/``test`` with ``image`` and ``label/<lesion>``)."""
    root = Path(dataset_dir)
    base = root / DDR_ROOT if (root / DDR_ROOT).is_dir() else root
    _require_dir(base / DDR_SPLIT_DIRS["training"], "DDR training folder")
    datalist: dict[str, Any] = {section: [] for section in SECTIONS}
    for section, split_dir in DDR_SPLIT_DIRS.items():
        split = base / split_dir
        if not split.is_dir():
            continue
        image_dir = _require_dir(split / "image", f"DDR {section} image folder")
        masks = {lesion: _masks_by_stem(split / "label" / lesion, lesion) for lesion in lesions}
        for image in _images_in(image_dir):
            datalist[section].append(_entry(root, image, {les: masks[les].get(image.stem) for les in lesions}))
    return datalist


def index_folders(
    dataset_dir: str | os.PathLike,
    image_dir: str = "images",
    mask_dirs: Mapping[str, str] | None = None,
    validation_fraction: float = 0.2,
    seed: int = 0,
) -> dict:
    """Index a generic layout: one image folder plus one mask folder per lesion, matched by file stem.

    ``mask_dirs`` maps lesion names to folders relative to ``dataset_dir``; by default every folder named after a
    lesion (EX, HE, SE, MA) directly under ``dataset_dir`` or under ``dataset_dir/masks`` is used. A deterministic
    ``validation_fraction`` of the images goes to ``validation``, the rest to ``training``.
    """
    root = Path(dataset_dir)
    images = _images_in(_require_dir(root / image_dir, "image folder"))
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {root / image_dir}")
    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    if mask_dirs is None:
        mask_dirs = {}
        for lesion in LESIONS:
            for candidate in (root / lesion, root / "masks" / lesion):
                if candidate.is_dir():
                    mask_dirs[lesion] = candidate.relative_to(root).as_posix()
                    break
        if not mask_dirs:
            raise FileNotFoundError(f"no lesion mask folders ({', '.join(LESIONS)}) under {root} or {root / 'masks'}")
    masks = {}
    for lesion, folder in mask_dirs.items():
        masks[lesion] = _masks_by_stem(_require_dir(root / folder, f"{lesion} mask folder"), lesion)
    entries = [_entry(root, image, {les: masks[les].get(image.stem) for les in masks}) for image in images]
    order = list(range(len(entries)))
    random.Random(seed).shuffle(order)
    num_val = int(round(validation_fraction * len(entries)))
    val_ids = set(order[:num_val])
    return {
        "training": [e for i, e in enumerate(entries) if i not in val_ids],
        "validation": [e for i, e in enumerate(entries) if i in val_ids],
        "testing": [],
    }


def build_datalist(layout: str, dataset_dir: str | os.PathLike, **kwargs: Any) -> dict:
    """Index ``dataset_dir`` with the indexer of ``layout`` (``idrid``, ``ddr`` or ``folders``)."""
    indexers = {"idrid": index_idrid, "ddr": index_ddr, "folders": index_folders}
    if layout not in indexers:
        raise ValueError(f"unknown dataset layout {layout!r}; expected one of {sorted(indexers)}")
    return indexers[layout](dataset_dir, **kwargs)


def write_datalist(datalist: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write a datalist as JSON atomically (temporary file, then rename)."""
    return atomic_write_bytes(path, (json.dumps(datalist, indent=2) + "\n").encode())


def load_datalist(
    datalist: str | os.PathLike | Mapping[str, Any],
    section: str,
    dataset_dir: str | os.PathLike,
    lesions: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Read one section of a datalist and make its paths absolute under ``dataset_dir``.

    ``lesions`` must be keys of every entry (a value of ``None`` marks a missing mask); an entry lacking one raises.
    ``None`` takes every key of an entry except ``image`` and ``id`` as a lesion mask.
    """
    source = str(datalist) if not isinstance(datalist, Mapping) else "<datalist>"
    if not isinstance(datalist, Mapping):
        path = Path(datalist)
        if not path.is_file():
            raise FileNotFoundError(f"datalist not found: {path}")
        try:
            datalist = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"datalist {path} is not valid JSON: {err}") from err
    if section not in datalist:
        raise ValueError(f"datalist {source} has no section {section!r}; it has {sorted(datalist)}")
    root = Path(dataset_dir)
    items = []
    for i, entry in enumerate(datalist[section]):
        if "image" not in entry:
            raise ValueError(f"datalist {source}: entry {i} of {section!r} has no 'image'")
        keys = [k for k in entry if k not in ("image", "id")] if lesions is None else list(lesions)
        missing = [les for les in keys if les not in entry]
        if missing:
            raise ValueError(f"datalist {source}: entry {entry['image']} has no key for lesion(s) {missing}")
        item = dict(entry)
        for key in ("image", *keys):
            if item[key] is not None:
                item[key] = str(root / item[key])
        items.append(item)
    return items
