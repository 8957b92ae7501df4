"""Turn an inference input (a folder, a datalist JSON or a single image file) into a list of MONAI data dicts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from monai_exudate.data.indexers import IMAGE_SUFFIXES, SECTIONS, load_datalist


def list_inference_inputs(source: str | os.PathLike, section: str = "testing", recursive: bool = True) -> list[dict]:
    """List the images to segment.

    ``source`` may be a folder (every image in it, recursively by default, sorted), a datalist JSON (its ``section``
    with paths relative to the JSON's folder) or one image file.
    """
    path = Path(source)
    if path.is_dir():
        pattern = "**/*" if recursive else "*"
        files = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {path}")
        return [{"image": str(p)} for p in files]
    if path.is_file() and path.suffix.lower() == ".json":
        if section not in SECTIONS:
            raise ValueError(f"unknown datalist section {section!r}; expected one of {SECTIONS}")
        items: list[dict[str, Any]] = load_datalist(path, section, path.parent, lesions=())
        return [{"image": item["image"]} for item in items]
    if path.is_file():
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise ValueError(f"{path}: unsupported file type {path.suffix!r}; expected one of {IMAGE_SUFFIXES}")
        return [{"image": str(path)}]
    raise FileNotFoundError(f"inference input not found: {path}")
