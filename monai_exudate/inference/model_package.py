"""Read the model package beside a model file: its settings for inference, and where the model came from."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser

from monai_exudate.bundle.overrides import RunSettings, SettingsError, current_run_settings
from monai_exudate.bundle.paths import PACKAGE_FILE, find_bundle_root
from monai_exudate.utils.booleans import as_bool

__all__ = [
    "DEMO_MODEL_WARNING",
    "announce_if_demo_model",
    "SETTINGS_ID",
    "model_origin",
    "package_settings",
    "read_model_package",
]

logger = logging.getLogger(__name__)

DEMO_MODEL_WARNING = (
    "this model was trained only on the synthetic demo set: it shows that the pipeline runs, and its maps of real "
    "photographs are not meaningful (it marks optic discs and reflexes as lesions); train on your own photographs"
)


def announce_if_demo_model(provenance: Mapping[str, Any]) -> None:
    """Log ``DEMO_MODEL_WARNING`` when ``provenance["model"]`` (``model_origin``) says the model is synthetic-only."""
    origin = provenance.get("model")
    if isinstance(origin, Mapping) and origin.get("synthetic"):
        logger.warning("%s", DEMO_MODEL_WARNING)


# the id, in each bundle's train.json, of the settings a model package holds
SETTINGS_ID = "model_settings"


def read_model_package(model_file: str | os.PathLike | None) -> dict[str, Any] | None:
    """The model package (``model_package.json``) in the folder of ``model_file``; None when there is none.

    A package that cannot be read, or is not a JSON object with ``settings``, raises ``ValueError`` naming the file.
    """
    if model_file is None:
        return None
    path = Path(model_file).with_name(PACKAGE_FILE)
    if not path.is_file():
        return None
    try:
        package = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: the model package cannot be read ({err})") from err
    if not isinstance(package, dict) or not isinstance(package.get("settings"), dict):
        raise ValueError(f"{path}: not a model package (a JSON object with 'settings' is expected)")
    return package


def model_origin(model_file: str | os.PathLike | None) -> dict[str, Any]:
    """The origin of the model in ``model_file``, from the model package beside it (``models/`` after training).

    Returns ``{"known": False}`` when there is no package (an exported model copied elsewhere, or weights from another
    source), else ``known``, ``name`` (None when unnamed), ``synthetic``, ``trained_on`` ("the synthetic demo set"
    or the dataset folder),
    ``datalist_sha256``, ``images``, ``bundle``, ``version``, ``seed``, ``git_commit`` and ``validation``.
    """
    package = read_model_package(model_file)
    if package is None:
        if model_file is not None:
            logger.info("no %s beside %s: the model's origin is unknown", PACKAGE_FILE, model_file)
        return {"known": False}
    provenance = package.get("provenance") or {}
    synthetic = bool(provenance.get("synthetic"))
    return {
        "known": True,
        "name": package.get("name"),
        "synthetic": synthetic,
        "trained_on": "the synthetic demo set" if synthetic else provenance.get("dataset_dir"),
        "datalist_sha256": provenance.get("datalist_sha256"),
        "images": provenance.get("images"),
        "bundle": package.get("bundle"),
        "version": package.get("version"),
        "seed": provenance.get("seed"),
        "git_commit": provenance.get("git_commit"),
        "validation": package.get("validation"),
    }


def package_settings(
    model_file: str | os.PathLike | None, bundle: str, unpackaged: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The network and geometry settings to run the model in ``model_file`` with, from its package.

    ``evaluate.json`` and ``inference.json`` take the whole model description from here (``model_description``),
    and the bundle's recipe (:mod:`monai_exudate.recipes`) builds the network, preprocessing, inferer and branch
    fusion from it, so ``--ckpt_path model.pt`` is all a run needs. A value the run gives itself for one of them
    (``--model_settings#<name>`` on the command line, or in ``unpackaged``) must equal the package's: a
    contradiction raises ``SettingsError`` naming both values, before the network is built.

    Without a package (weights from elsewhere, or from before bundle version 0.6.0) the settings are the run's own:
    ``unpackaged`` (the bundles' ``unpackaged_settings``), the values the run gives, else the last value the run's
    config files set, else the defaults in ``train.json`` of the bundle named ``bundle``
    (:func:`~monai_exudate.bundle.find_bundle_root`); a warning says so, since nothing then checks that they match
    the weights.
    """
    run = current_run_settings()
    given, configured = _run_values(run)
    given.update(unpackaged or {})
    package = read_model_package(model_file)
    if package is None:
        defaults = _train_defaults(Path(find_bundle_root(bundle)) / "configs" / "train.json")
        settings = {name: given.get(name, configured.get(name, value)) for name, value in defaults.items()}
        logger.warning(
            "no %s beside %s: the network and geometry come from the run's settings, unchecked against the "
            "weights (a model trained with other settings fails to load or gives wrong maps)",
            PACKAGE_FILE,
            model_file,
        )
        return settings
    settings = _upgraded(dict(package["settings"]), bundle)
    source = Path(model_file).with_name(PACKAGE_FILE)
    conflicts = [
        f"{name!r}: the model package says {settings[name]!r}, the run gives {value!r}"
        for name, value in given.items()
        if name in settings and not _same(settings[name], value, name)
    ]
    if conflicts:
        lines = "\n".join(f"  - {c}" for c in conflicts)
        raise SettingsError(
            f"{len(conflicts)} setting(s) contradict the model package {source}; nothing was run. Leave them out "
            f"(the package gives them) or use the model trained with them:\n{lines}"
        )
    overridden = {n: v for n, v in configured.items() if n in settings and not _same(settings[n], v, n)}
    if overridden:
        logger.info("settings from %s replace the config files' values: %s", source, overridden)
    return settings


def _upgraded(settings: dict[str, Any], bundle: str) -> dict[str, Any]:
    """The settings of a package written by an older bundle version, under today's names and meanings."""
    if bundle != "exudate_dsm":
        return settings
    if "branches" in settings and "dual" not in settings:  # 0.6.0 named the switch "branches": "dual" | "single"
        settings["dual"] = settings.pop("branches") == "dual"
    # before 0.7.0 a dual PSPNet had one auxiliary head per branch (a DeepLabv3 none): weights saved so need that
    settings.setdefault("shared_aux_head", False)
    settings.setdefault("pooling_norm", "batch")  # GroupNorm in the pooled branches came with 0.8.0
    return settings


def _run_values(run: RunSettings | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model settings the run gives itself (``--model_settings#<name>`` on the command line) and the last literal
    value its config files set for each (their ``model_settings`` section or ``model_settings#<name>`` entries, and
    the command line: the fallback without a package). A config file never contradicts a package: the package of
    the model being run describes it, whatever the training configs listed beside ``evaluate.json`` say."""
    if run is None:
        return {}, {}
    configured: dict[str, Any] = {}
    for config_file in run.config_files:
        config = ConfigParser.load_config_file(config_file)
        if not isinstance(config, Mapping):
            continue
        section = config.get(SETTINGS_ID)
        if isinstance(section, Mapping):
            configured.update({name: value for name, value in section.items() if _is_plain(value)})
        configured.update(_section_values(config))
    given = _section_values(run.overrides)
    configured.update(given)
    return given, configured


def _section_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The literal values of ``model_settings#<name>`` entries, by name."""
    prefix = SETTINGS_ID + "#"
    return {
        str(key)[len(prefix) :]: value
        for key, value in values.items()
        if str(key).startswith(prefix) and "#" not in str(key)[len(prefix) :] and _is_plain(value)
    }


def _is_plain(value: Any) -> bool:
    """A literal setting, not an expression, reference or macro to be resolved."""
    if isinstance(value, str):
        return not value.startswith(("$", "@", "%"))
    if isinstance(value, (list, tuple)):
        return all(_is_plain(v) for v in value)
    if isinstance(value, Mapping):
        return "_target_" not in value and all(_is_plain(v) for v in value.values())
    return True


def _same(packaged: Any, given: Any, name: str) -> bool:
    """Equal as settings: a yes/no setting compares as a boolean ('false' == False), sequences by their items."""
    if isinstance(packaged, bool) or isinstance(given, bool):
        try:
            return as_bool(given, name) == as_bool(packaged, name)
        except ValueError:
            return False
    if isinstance(packaged, (list, tuple)) and isinstance(given, (list, tuple)):
        return len(packaged) == len(given) and all(_same(p, g, name) for p, g in zip(packaged, given))
    if isinstance(packaged, (int, float)) and isinstance(given, (int, float)) and not isinstance(given, bool):
        return float(packaged) == float(given)
    return packaged == given


def _train_defaults(train_file: Path) -> dict[str, Any]:
    """The values, in the bundle's ``train.json``, of the settings a model package holds (its ``model_settings``;
    an entry that refers to a top-level setting, such as ``"lesions": "@lesions"``, takes that setting's value)."""
    try:
        config = ConfigParser.load_config_file(train_file)
    except (OSError, ValueError) as err:
        raise ValueError(f"{train_file}: cannot read the bundle's training settings ({err})") from err
    section = config.get(SETTINGS_ID)
    if not isinstance(section, Mapping):
        raise ValueError(f"{train_file}: no {SETTINGS_ID!r} section holding the settings a model package holds")
    return {
        name: config.get(value[1:]) if isinstance(value, str) and value.startswith("@") else value
        for name, value in section.items()
    }
