"""The embedded default dataset: a synthetic fundus set generated on first use into the bundle's data folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

from monai_exudate.data.synthetic import write_synthetic_dataset

_MARKER = "synthetic_dataset.json"


def ensure_synthetic_dataset(
    dataset_dir: str | os.PathLike,
    layout: str = "idrid",
    num: int = 24,
    size: tuple[int, int] = (512, 340),
    seed: int = 0,
) -> str:
    """Generate the synthetic dataset into ``dataset_dir`` unless an identical one is already there; return the path.

    A marker file records the generation settings and is written last, so an interrupted generation is redone and a
    change of settings regenerates the set.
    """
    root = Path(dataset_dir)
    settings = {"layout": layout, "num": int(num), "size": [int(s) for s in size], "seed": int(seed)}
    marker = root / _MARKER
    if marker.is_file():
        try:
            if json.loads(marker.read_text()) == settings:
                return str(root)
        except json.JSONDecodeError:
            pass
    write_synthetic_dataset(root, layout=layout, num=int(num), size=(int(size[0]), int(size[1])), seed=int(seed))
    tmp = marker.with_name(f".{marker.name}.tmp")
    tmp.write_text(json.dumps(settings))
    os.replace(tmp, marker)
    return str(root)
