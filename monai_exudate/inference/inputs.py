"""Turn an inference input (a folder, a datalist JSON or a single image file) into a list of MONAI data dicts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from monai_exudate.data.indexers import IMAGE_SUFFIXES, SECTIONS, load_datalist


def list_inference_inputs(source: str | os.PathLike, section: str = "testing", recursive: bool = True) -> list[dict]:
    """List the images to segment.

    ``source`` may be a folder (every entry in it, recursively by default, sorted; see ``folder_entries``), a
    datalist JSON (its ``section`` with paths relative to the JSON's folder) or one image file. A folder's entries
    that are no image (other file types, dangling links, link loops, folders named like images) are listed too, so
    the run reports each of them with its reason and every entry is accounted for.
    """
    path = Path(source)
    if path.is_dir():
        entries = folder_entries(path, recursive)
        if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in entries):
            raise FileNotFoundError(
                f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {path} ({len(entries)} other entries)"
            )
        return [{"image": str(p)} for p in entries]
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


def folder_entries(folder: str | os.PathLike, recursive: bool = True) -> list[Path]:
    """Every entry of ``folder`` an inference run must account for, sorted.

    That is every file, symbolic link (followed by nothing here: links to folders are not searched, a link loop
    cannot recur) and other non-folder entry, plus each folder named like an image (``x.jpg/``); with
    ``recursive`` the folders are searched (those named like images too), without it they are entries themselves.
    """
    entries: list[Path] = []
    pending = [Path(folder)]
    while pending:
        with os.scandir(pending.pop()) as scan:
            for entry in scan:
                path = Path(entry.path)
                if not entry.is_dir(follow_symlinks=False):
                    entries.append(path)
                    continue
                if recursive:
                    pending.append(path)
                if not recursive or path.suffix.lower() in IMAGE_SUFFIXES:
                    entries.append(path)
    return sorted(entries)
