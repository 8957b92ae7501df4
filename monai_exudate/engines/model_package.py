"""Ignite handler that writes the model package beside the weights: what the model is, its settings, its origin."""

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

from monai_exudate.bundle.paths import PACKAGE_FILE
from monai_exudate.utils.atomic import atomic_write_json
from monai_exudate.utils.booleans import as_bool

__all__ = [
    "PACKAGE_FILE",
    "PACKAGE_FORMAT",
    "ModelPackageWriter",
    "datalist_sha256",
    "git_commit",
    "package_versions",
]

PACKAGE_FORMAT = 1
_PACKAGES = ("monai_exudate", "monai", "torch", "pytorch-ignite", "mlflow", "numpy")
# the record's identity: a package whose identity is unchanged keeps its validation figures when training restarts
_IDENTITY = ("name", "bundle", "version", "settings", "recipe", "provenance")


class ModelPackageWriter:
    """Write ``model_package.json`` when training starts and after every validation.

    The package is what inference needs besides the weights, and where the model came from:

    - ``settings``: the network definition and input geometry (the bundle's ``model_settings``). The
      bundles' ``evaluate.json`` and ``inference.json`` take these from the package
      (:func:`monai_exudate.inference.package_settings`) and refuse a run setting that contradicts one;
    - ``recipe``: the training settings (loss, schedule, optimiser), for the record;
    - ``validation``: the epoch and metrics of the checkpoint it describes (the best, ``model.pt``),
      ``last_validation`` the latest validation's; ``threshold_file`` names the operating threshold;
    - ``provenance``: the dataset folder, whether it is the synthetic demo set, a SHA-256 of the datalist sections
      used, their image counts and image ids, the seed, the code's git commit (when the package is a git checkout)
      and package versions.

    The package holds no time, so a resumed run rewrites it byte for byte (the run's times are in MLflow); a restart
    whose settings, recipe and provenance are unchanged keeps the validation figures already there.

    Args:
        path: the JSON file to write (the bundles write ``models/model_package.json``).
        bundle: the bundle's name.
        version: the bundle's version (None when the run has no metadata file).
        dataset_dir: the dataset folder the datalist was built from.
        synthetic: whether the dataset is the generated synthetic set.
        datalist: the checked datalist, sections of data dicts.
        sections: the sections training used (training and validation).
        seed: the run's seed.
        settings: the network and preprocessing settings inference must reproduce (JSON-able values).
        recipe: the training settings, recorded only.
        evaluator: the validation engine whose metrics are recorded after each of its runs (None: none recorded).
        weights: the weights' file name in the package's folder.
        threshold_file: the operating threshold's file name in the package's folder (None: the bundle has none).
        resume: whether the run continues the folder's training (the bundles' ``resume``). Then a package already
            there whose ``settings`` differ from this run's, beside weights (``*.pt``), stops the run before anything
            is written: those weights are another network's, which this run would load or replace, and rewriting the
            package would leave it describing a network it does not hold (a CPU-profile U-Net trained into a folder
            holding the default PSPNet, say).
        name: what users call the model (shown in inference's overlay legend and ``summary.csv``); None: unnamed,
            the dataset folder names it.
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
        recipe: Mapping[str, Any] | None = None,
        evaluator: Engine | None = None,
        weights: str = "model.pt",
        threshold_file: str | None = None,
        resume: bool | str = False,
        name: str | None = None,
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
        self.recipe = dict(recipe or {})
        self.evaluator = evaluator
        self.weights = str(weights)
        self.threshold_file = threshold_file
        self.resume = as_bool(resume, "resume")
        self.name = None if name in (None, "") else str(name)
        self.validation: dict[str, Any] | None = None
        self.last_validation: dict[str, Any] | None = None
        # the code that trains: looked up once (two git calls), not at every validation's rewrite
        self._code: dict[str, Any] | None = None
        self._trainer: Engine | None = None

    def attach(self, engine: Engine) -> None:
        self._trainer = engine
        engine.add_event_handler(Events.STARTED, self)
        if self.evaluator is not None:
            self.evaluator.add_event_handler(Events.COMPLETED, self.record_validation)

    def __call__(self, engine: Engine | None = None) -> None:
        record = self.record()
        previous = _read(self.path)
        if self.resume and previous is not None:
            self._refuse_another_network(previous)
        if previous is not None and all(previous.get(k) == record[k] for k in _IDENTITY):
            record["validation"] = self.validation = previous.get("validation")
            record["last_validation"] = self.last_validation = previous.get("last_validation")
        atomic_write_json(record, self.path)

    def _refuse_another_network(self, previous: Mapping[str, Any]) -> None:
        """Raise ValueError, naming the folder and the settings that differ, when weights beside ``previous`` are
        another network's."""
        before, now = previous.get("settings"), _jsonable(self.settings)
        folder = self.path.parent
        if not isinstance(before, dict) or before == now or not any(folder.glob("*.pt")):
            return
        differing = [f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(before) | set(now))
                     if before.get(k) != now.get(k)]  # fmt: skip
        raise ValueError(
            f"{folder} holds the weights of a model trained with other settings ({'; '.join(differing)}): this run "
            "would resume from or replace them. Train into another folder (--bundle_root or --ckpt_dir), move that "
            "one away, or pass --resume false to start over there."
        )

    def record_validation(self, evaluator: Engine) -> None:
        """Store the validation run's metrics (numbers only) with the training epoch, and rewrite the package.

        ``validation`` keeps the figures of the checkpoint the package describes: the best by the evaluator's key
        metric, which the best-model saver writes as ``model.pt`` (a MONAI evaluator's ``best_metric_epoch``; an
        engine without one counts every validation as the best); ``last_validation`` the latest validation's.
        """
        epoch = int(self._trainer.state.epoch) if self._trainer is not None else None
        metrics = {k: float(v) for k, v in evaluator.state.metrics.items() if isinstance(v, (int, float))}
        self.last_validation = {"epoch": epoch, "metrics": metrics}
        best_epoch = getattr(evaluator.state, "best_metric_epoch", None)
        if best_epoch is None or int(best_epoch) < 0 or int(best_epoch) == epoch:
            self.validation = self.last_validation
        atomic_write_json(self.record(), self.path)

    def _code_versions(self) -> dict[str, Any]:
        if self._code is None:
            self._code = {"git_commit": git_commit(), "packages": package_versions()}
        return self._code

    def record(self) -> dict[str, Any]:
        """The package as written."""
        return {
            "format": PACKAGE_FORMAT,
            "name": self.name,
            "bundle": self.bundle,
            "version": self.version,
            "weights": self.weights,
            "settings": _jsonable(self.settings),
            "recipe": _jsonable(self.recipe),
            "threshold_file": self.threshold_file,
            "validation": self.validation,
            "last_validation": self.last_validation,
            "provenance": {
                "synthetic": self.synthetic,
                "dataset_dir": self.dataset_dir,
                "datalist_sha256": datalist_sha256(self.datalist),
                "images": {section: len(items) for section, items in self.datalist.items()},
                "image_ids": {section: _image_ids(items) for section, items in self.datalist.items()},
                "seed": self.seed,
                **self._code_versions(),
            },
        }


def _image_ids(items: Sequence[Mapping[str, Any]]) -> list[str]:
    """Each item's ``id``, or its image file's stem when the datalist gives no id."""
    return [str(item.get("id") or Path(str(item.get("image", ""))).stem) for item in items]


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


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
