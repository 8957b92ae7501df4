"""Ignite handler that writes, beside the weights, what the model is and where it came from (``provenance.json``)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events

from monai_exudate.bundle.settings import as_bool
from monai_exudate.data.atomic import atomic_write_json

__all__ = ["PROVENANCE_FILE", "ModelProvenanceWriter", "datalist_sha256", "git_commit", "package_versions"]

PROVENANCE_FILE = "provenance.json"
_PACKAGES = ("monai_exudate", "monai", "torch", "pytorch-ignite", "mlflow", "numpy")


class ModelProvenanceWriter:
    """At the start of training (and of every resumed run), write the model's provenance record to ``path``.

    The record: bundle name and version, whether the data is the synthetic demo set, the dataset folder, a
    SHA-256 of the datalist sections used and their image counts, the seed, the settings that define the network and
    its input geometry, the code's git commit (when the package is a git checkout) and package versions. Inference
    reads it beside the checkpoint (:func:`monai_exudate.inference.model_origin`): a model trained only on the
    synthetic set is announced as a demo model, and every output folder's manifest names the model's origin. The
    record holds no time, so a resumed run rewrites it byte for byte (the run's times are in MLflow).

    Args:
        path: the JSON file to write (the bundle writes ``models/provenance.json``).
        bundle: the bundle's name.
        version: the bundle's version (None when the run has no metadata file).
        dataset_dir: the dataset folder the datalist was built from.
        synthetic: whether the dataset is the generated synthetic set.
        datalist: the checked datalist, sections of data dicts.
        sections: the sections training used (training and validation).
        seed: the run's seed.
        settings: the settings that define the network and its preprocessing (JSON-able values).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        bundle: str,
        version: str | None,
        dataset_dir: str | os.PathLike,
        synthetic: bool | str,
        datalist: Mapping[str, Sequence[Mapping[str, Any]]],
        sections: Sequence[str],
        seed: int,
        settings: Mapping[str, Any],
    ) -> None:
        missing = [s for s in sections if s not in datalist]
        if missing:
            raise ValueError(f"datalist sections {missing} not found (it has {sorted(datalist)})")
        self.path = Path(path)
        self.bundle = str(bundle)
        self.version = None if version is None else str(version)
        self.dataset_dir = str(dataset_dir)
        self.synthetic = as_bool(synthetic, "synthetic")
        self.datalist = {s: list(datalist[s]) for s in dict.fromkeys(sections)}
        self.seed = int(seed)
        self.settings = dict(settings)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine | None = None) -> None:
        atomic_write_json(self.record(), self.path)

    def record(self) -> dict[str, Any]:
        """The provenance record as written."""
        return {
            "bundle": self.bundle,
            "version": self.version,
            "synthetic": self.synthetic,
            "dataset_dir": self.dataset_dir,
            "datalist_sha256": datalist_sha256(self.datalist),
            "images": {section: len(items) for section, items in self.datalist.items()},
            "seed": self.seed,
            "settings": json.loads(json.dumps(self.settings, default=str)),
            "git_commit": git_commit(),
            "packages": package_versions(),
        }


def datalist_sha256(datalist: Mapping[str, Sequence[Mapping[str, Any]]]) -> str:
    """SHA-256 of the datalist's canonical JSON (sorted keys): equal datalists give equal hashes."""
    text = json.dumps(datalist, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def git_commit(folder: str | os.PathLike | None = None) -> str | None:
    """The commit of the git checkout holding ``folder`` (default: the package), ``+dirty`` when it has changes;
    None outside a checkout or without git."""
    folder = Path(folder) if folder is not None else Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if status else head


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a model's behaviour depends on."""
    versions: dict[str, str | None] = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
