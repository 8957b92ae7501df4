"""bench/score_outputs.py: scores read back from written PNG maps against the masks."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from monai_exudate.data.indexers import index_idrid
from monai_exudate.data.readers import binarise_mask
from monai_exudate.data.synthetic import write_synthetic_dataset

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("score_outputs", REPO / "bench" / "score_outputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_perfect_maps_score_one_and_a_blank_map_scores_nothing(tmp_path):
    root = write_synthetic_dataset(tmp_path / "data", layout="idrid", num=4, size=(96, 64), seed=1)
    datalist = index_idrid(root)
    (tmp_path / "dl.json").write_text(json.dumps(datalist))
    out = tmp_path / "out"
    out.mkdir()
    for item in datalist["testing"]:
        stem = Path(item["image"]).stem
        for lesion in ("EX", "HE"):
            mask = binarise_mask(Image.open(root / item[lesion])) > 0 if item.get(lesion) else None
            level = mask.astype(np.uint8) * 255 if lesion == "EX" else np.zeros((64, 96), np.uint8)
            Image.fromarray(level).save(out / f"{stem}_{lesion}_prob.png")
    (out / "manifest.json").write_text(json.dumps({"settings": {"lesions": ["EX", "HE"], "threshold": [0.5, 0.3]}}))
    scores_file = tmp_path / "scores.json"
    args = ["--outputs", str(out), "--datalist", str(tmp_path / "dl.json"), "--dataset_dir", str(root),
            "--json", str(scores_file)]  # fmt: skip
    assert _bench().main(args) == 0
    scores = json.loads(scores_file.read_text())["lesions"]
    assert scores["EX"]["ap"] == pytest.approx(1.0) and scores["EX"]["iou"] == pytest.approx(1.0)
    assert scores["HE"]["iou"] == 0.0 and scores["HE"]["threshold"] == 0.3  # each lesion at its own threshold
