"""Describe a trained model for download: the bundle's ``large_files.yml``, which MONAI's ``download_large_files``
reads, with each file's address and SHA-256."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from monai_exudate.bundle.paths import PACKAGE_FILE
from monai_exudate.utils.hashing import file_sha256

__all__ = ["LARGE_FILES", "RELEASE_FILES", "release_files", "write_large_files"]

LARGE_FILES = "large_files.yml"
# what inference needs from a model folder: the weights and their package are required, the operating threshold
# (exudate_dsm) and an exported TorchScript model are taken when training or ckpt_export wrote them
RELEASE_FILES = ("model.pt", PACKAGE_FILE, "threshold.json", "model.ts")
_REQUIRED = ("model.pt", PACKAGE_FILE)


def _origin_lines(package: dict[str, Any]) -> list[str]:
    """Comment lines that say what the model is, from its package."""
    provenance = package.get("provenance") or {}
    trained_on = "the synthetic demo set" if provenance.get("synthetic") else provenance.get("dataset_dir")
    lines = [
        f"model of bundle {package.get('bundle')} {package.get('version')}, trained on {trained_on}",
        f"images per section: {provenance.get('images')}; datalist SHA-256 {provenance.get('datalist_sha256')}",
        f"seed {provenance.get('seed')}; code commit {provenance.get('git_commit')}",
    ]
    validation = package.get("validation") or {}
    metrics = validation.get("metrics", validation)
    key_metrics = ", ".join(f"{k} {v:.4f}" for k, v in sorted(metrics.items()) if k.startswith("val_"))
    if key_metrics:
        lines.append(f"validation (epoch {validation.get('epoch', '?')}): {key_metrics}")
    return lines


def write_large_files(
    bundle_root: str | os.PathLike,
    base_url: str,
    models_dir: str = "models",
    allow_synthetic: bool = False,
) -> Path:
    """Write ``<bundle_root>/large_files.yml`` for the trained model in ``<bundle_root>/<models_dir>``.

    Each file of :data:`RELEASE_FILES` that is there gets an entry: its path in the bundle, its address
    ``<base_url>/<file name>`` (where the publisher uploads the file) and its SHA-256, so that
    ``python -m monai.bundle download_large_files --bundle_path <bundle_root>`` fetches the model into a fresh clone
    and refuses a file whose content differs. The header comments say what the model is, from its package.

    Raises:
        FileNotFoundError: ``model.pt`` or its ``model_package.json`` is missing (a model without its package
            cannot say what it is, nor run without repeating its training settings).
        ValueError: the model was trained on the synthetic demo set and ``allow_synthetic`` is False, or
            ``base_url`` is not an address (``scheme://...``).
    """
    if Path(models_dir).is_absolute() or ".." in Path(models_dir).parts:
        raise ValueError(f"models_dir must be a folder inside the bundle (relative, no '..'), got {models_dir!r}")
    models_dir = Path(models_dir).as_posix()  # "models/" and "models" give the same entries
    root = Path(bundle_root)
    folder = root / models_dir
    missing = [name for name in _REQUIRED if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: {missing} not found; train the model first (python -m monai.bundle run)")
    if "://" not in base_url:
        raise ValueError(f"base_url must be an address such as https://host/folder, got {base_url!r}")
    package = json.loads((folder / PACKAGE_FILE).read_text())
    if (package.get("provenance") or {}).get("synthetic") and not allow_synthetic:
        raise ValueError(
            f"{folder / PACKAGE_FILE}: this model was trained on the synthetic demo set; a published model should "
            "come from photographs (--allow-synthetic publishes it anyway)"
        )
    entries = [
        {
            "path": f"{models_dir}/{file.name}",
            "url": f"{base_url.rstrip('/')}/{file.name}",
            "hash_val": file_sha256(file),
            "hash_type": "sha256",
        }
        for file in release_files(root, models_dir)
    ]
    header = "".join(f"# {line}\n" for line in _origin_lines(package))
    path = root / LARGE_FILES
    path.write_text(header + yaml.safe_dump({"large_files": entries}, sort_keys=False))
    return path


def release_files(bundle_root: str | os.PathLike, models_dir: str = "models") -> Sequence[Path]:
    """The files of :data:`RELEASE_FILES` present in ``<bundle_root>/<models_dir>``: what to upload."""
    folder = Path(bundle_root) / models_dir
    return [folder / name for name in RELEASE_FILES if (folder / name).is_file()]
