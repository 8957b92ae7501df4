"""Where a bundle lives on disk: the one rule every bundle config uses for its ``bundle_root``, and the name of the
model package a trained model's folder holds."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["PACKAGE_FILE", "find_bundle_root"]

# beside a trained model's weights (models/model.pt): what the model is and how to run it; training writes it,
# evaluation, inference and a release read it
PACKAGE_FILE = "model_package.json"

# the repository's bundles, beside the package in a source checkout or an editable install
_REPOSITORY_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


def find_bundle_root(bundle: str, start: str | os.PathLike | None = None) -> str:
    """The absolute folder of ``bundle`` (its ``configs/metadata.json`` beside it), looked up in this order.

    1. ``start`` (default: the working directory) itself, when it is the bundle (run from inside the bundle, as the
       model zoo does);
    2. ``start/bundles/<bundle>`` (run from the repository root, as the README does);
    3. the repository's ``bundles/<bundle>`` beside the installed package.

    A folder counts when its ``configs/metadata.json`` exists; pass ``--bundle_root`` to use any other folder.

    Raises:
        FileNotFoundError: none of the three holds the bundle; the message lists where it looked.
    """
    start = Path.cwd() if start is None else Path(start)
    candidates = [start, start / "bundles" / bundle, _REPOSITORY_BUNDLES / bundle]
    for folder in candidates:
        if _is_bundle(folder, bundle):
            return str(folder.resolve())
    looked = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(
        f"bundle {bundle!r} not found (looked for configs/metadata.json in {looked}); "
        "run from the repository root or the bundle folder, or pass --bundle_root"
    )


def _is_bundle(folder: Path, bundle: str) -> bool:
    """``folder`` holds this bundle's configs: named after it, or (a renamed copy) configs that name it."""
    configs = folder / "configs"
    if not (configs / "metadata.json").is_file():
        return False
    if folder.name == bundle:
        return True
    marker = f"find_bundle_root('{bundle}')"
    return any(marker in path.read_text(errors="replace") for path in configs.glob("*.json"))
