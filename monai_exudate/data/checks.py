"""Dataset checks: the datalist's shape and every file it names, every problem reported at once, each located."""

from __future__ import annotations

import json
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


def read_datalist(datalist: str | os.PathLike | Mapping[str, Any]) -> tuple[Any, str]:
    """The content of a datalist given as its content or a JSON file, and a name for it in messages."""
    if not isinstance(datalist, (str, os.PathLike)):
        return datalist, "datalist"
    path = Path(datalist)
    if not path.is_file():
        raise FileNotFoundError(f"datalist not found: {path}")
    try:
        return json.loads(path.read_text()), str(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"datalist {path} is not valid JSON: {err}") from err


def _json_type(value: Any) -> str:
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{value!r}"


def _record_problems(record: Any, where: str, lesions: Sequence[str] | None, source: str) -> list[DataProblem]:
    if not isinstance(record, Mapping):
        return [DataProblem(source, f'{where} is {_json_type(record)}, not a record like {{"image": "a.jpg"}}')]
    image = record.get("image")
    if not isinstance(image, str) or not image:
        what = "has no 'image'" if "image" not in record else f"has 'image' {_json_type(image)}, not a path"
        return [DataProblem(source, f"{where} {what}")]
    where = f"{where} ({image})"
    keys = [k for k in record if k not in ("image", "id")] if lesions is None else list(lesions)
    problems = []
    missing = [k for k in keys if k not in record]
    if missing:
        problems.append(DataProblem(source, f"{where} has no key for lesion(s) {missing}"))
    for key in keys:
        value = record.get(key)
        if key in record and value is not None and (not isinstance(value, str) or not value):
            problems.append(DataProblem(source, f"{where} has {key!r} {_json_type(value)}, not a path or null"))
    return problems


def datalist_shape_problems(
    content: Any,
    source: str = "datalist",
    sections: Sequence[str] | None = None,
    lesions: Sequence[str] | None = None,
) -> tuple[list[DataProblem], dict[str, list[dict[str, Any]]]]:
    """Check that ``content`` has MONAI's datalist shape; return the problems and the well-formed records by section.

    The shape: a JSON object whose sections (``training``, ``validation``, ``testing``) are lists of records,
    each an object with an ``image`` path and, per lesion, a mask path or ``null``. With ``sections`` given each
    of them must be there and hold at least one record; otherwise every list in the object is a section and at
    least one of the known sections must be there.
    """
    if not isinstance(content, Mapping):
        what = f"a datalist is an object of sections ({', '.join(SECTIONS)}), this is {_json_type(content)}"
        return [DataProblem(source, what)], {}
    problems: list[DataProblem] = []
    if sections is None:
        names = [k for k, v in content.items() if isinstance(v, list) or k in SECTIONS]
        if not any(k in SECTIONS for k in content):
            problems.append(
                DataProblem(source, f"has none of the sections {', '.join(SECTIONS)} (it has {sorted(content)})")
            )
    else:
        names = list(dict.fromkeys(sections))
    good: dict[str, list[dict[str, Any]]] = {}
    for name in names:
        if name not in content:
            problems.append(DataProblem(source, f"has no section {name!r} (it has {sorted(content)})"))
            continue
        records = content[name]
        if not isinstance(records, list):
            problems.append(DataProblem(source, f"section {name!r} is {_json_type(records)}, not a list of records"))
            continue
        if sections is not None and not records:
            problems.append(DataProblem(source, f"section {name!r} is empty"))
        good[name] = []
        for i, record in enumerate(records):
            found = _record_problems(record, f"section {name!r} entry {i}", lesions, source)
            problems.extend(found)
            if not found:
                good[name].append(dict(record))
    return problems, good


def check_datalist(
    datalist: str | os.PathLike | Mapping[str, Any],
    dataset_dir: str | os.PathLike,
    lesions: Sequence[str] | None = None,
    sections: Sequence[str] | None = None,
) -> list[DataProblem]:
    """Check a datalist's shape and open every file of its sections; return every problem (empty when all is well).

    ``sections`` defaults to every section of the datalist; ``lesions`` to every lesion key of each record.
    """
    content, source = read_datalist(datalist)
    problems, good = datalist_shape_problems(content, source, sections, lesions)
    items = [item for name in good for item in load_datalist(good, name, dataset_dir, lesions)]
    return problems + _check_items(items, lesions)


def _check_items(items: Sequence[Mapping[str, Any]], lesions: Sequence[str] | None) -> list[DataProblem]:
    # image decoding releases the GIL, so threads check several files at once
    def run(item: Mapping[str, Any]) -> list[DataProblem]:
        keys = lesions if lesions is not None else [k for k in item if k not in ("image", "id")]
        return check_entry(item, keys)

    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return [p for found in pool.map(run, items) for p in found]


def checked_sections(
    datalist: str | os.PathLike | Mapping[str, Any],
    sections: Sequence[str],
    dataset_dir: str | os.PathLike,
    lesions: Sequence[str] = (),
) -> dict[str, list[dict[str, Any]]]:
    """Load the ``sections`` a run uses after checking all of them; raise one ``DataCheckError`` listing every
    problem of every section (shape, empty section, unreadable or mismatched file)."""
    content, source = read_datalist(datalist)
    sections = list(dict.fromkeys(sections))
    problems, good = datalist_shape_problems(content, source, sections, lesions)
    loaded = {name: load_datalist(good, name, dataset_dir, lesions) for name in good}
    problems += _check_items([item for items in loaded.values() for item in items], lesions)
    if problems:
        names = ", ".join(repr(s) for s in sections)
        raise DataCheckError(problems, source=f"{source} (section(s) {names} under {dataset_dir})")
    return loaded


def checked_datalist(
    datalist: str | os.PathLike | Mapping[str, Any],
    section: str,
    dataset_dir: str | os.PathLike,
    lesions: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Load one section of a datalist after checking it; raise ``DataCheckError`` listing every problem."""
    return checked_sections(datalist, [section], dataset_dir, lesions)[section]
