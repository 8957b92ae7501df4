"""The embedded default dataset: a synthetic fundus set generated on first use into the bundle's data folder."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from monai_exudate.data.synthetic.render import GENERATOR_VERSION
from monai_exudate.data.synthetic.writer import write_synthetic_dataset
from monai_exudate.utils.atomic import atomic_write_bytes
from monai_exudate.utils.booleans import as_bool

MARKER = "synthetic_dataset.json"


def ensure_synthetic_dataset(
    dataset_dir: str | os.PathLike,
    layout: str = "idrid",
    num: int = 24,
    size: tuple[int, int] = (512, 340),
    seed: int = 0,
) -> str:
    """Generate the synthetic dataset into ``dataset_dir`` unless an identical one is already there; return the path.

    A marker file records the generation settings and the generator's version (``render.GENERATOR_VERSION``) and is
    written last, so an interrupted generation is redone and a change of settings or of generator regenerates the
    set. A folder that holds other files and no marker (a real dataset, say) is never written into: that raises
    ``FileExistsError``. Processes that start together (the ranks of a ``torchrun``) take turns through a lock file
    beside the folder, so one generates and the others find its marker.
    """
    root = Path(dataset_dir)
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or when the process dies
        return _ensure_synthetic_dataset(root, layout, num, size, seed)


def _ensure_synthetic_dataset(root: Path, layout: str, num: int, size: tuple[int, int], seed: int) -> str:
    settings = {
        "layout": layout, "num": int(num), "size": [int(s) for s in size], "seed": int(seed),
        "generator": GENERATOR_VERSION,
    }  # fmt: skip
    marker = root / MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == settings:
                return str(root)
        except json.JSONDecodeError:
            pass
    elif root.is_dir() and any(root.iterdir()):
        raise FileExistsError(
            f"{root} is not empty and holds no synthetic dataset made here ({MARKER} missing); refusing to generate "
            "the synthetic set into it. To train on the data in it, set synthetic to false; otherwise choose an "
            "empty or new dataset_dir."
        )
    write_synthetic_dataset(root, layout=layout, num=int(num), size=(int(size[0]), int(size[1])), seed=int(seed))
    atomic_write_bytes(marker, json.dumps(settings).encode())
    return str(root)


def resolve_dataset_dir(
    dataset_dir: str | os.PathLike,
    synthetic: Any,
    layout: str = "idrid",
    num: int = 24,
    size: tuple[int, int] = (512, 340),
    seed: int = 0,
) -> str:
    """The folder a bundle trains on: the generated synthetic set when ``synthetic`` is true, else ``dataset_dir``."""
    if as_bool(synthetic, "synthetic"):
        return ensure_synthetic_dataset(dataset_dir, layout, num, size, seed)
    if not Path(dataset_dir).is_dir():
        raise FileNotFoundError(f"dataset_dir not found: {dataset_dir}")
    return str(dataset_dir)
