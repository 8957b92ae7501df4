"""The models the bundles ship: what their packages record, that training never touches them, and that the
README's inference command segments a real photograph with them from a fresh clone."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import shutil
from pathlib import Path

import pytest
from monai.bundle import run

from monai_exudate.inference import DEMO_MODEL_WARNING

REPO = Path(__file__).resolve().parents[2]
BUNDLES = ("exudate_dsm", "fundus_lesion_hrdecoder")
SHIPPED = {"exudate_dsm": ("model.pt", "model_package.json", "threshold.json"),
           "fundus_lesion_hrdecoder": ("model.pt", "model_package.json", "threshold.json")}  # fmt: skip
MODEL_ZOO_FILE_LIMIT = 25 * 1024 * 1024
QUICK = {
    "exudate_dsm": {
        "synthetic_num": 4, "synthetic_size": [128, 96], "mlflow_log_model": False,
        "model_settings#spatial_size": [64, 48], "model_settings#net_width": 4,
        "training_recipe#max_epochs": 1, "val_interval": 1,
    },
    "fundus_lesion_hrdecoder": {
        "synthetic_num": 4, "synthetic_size": [128, 96], "mlflow_log_model": False, "num_threads": 1,
        "model_settings#resize_size": [64, 48], "model_settings#crop_size": [48, 48], "model_settings#hr_scale": 24,
        "model_settings#net_width": 4, "model_settings#stage1_channels": 8, "model_settings#stem_channels": 8,
        "model_settings#head_channels": 8,
        "training_recipe#max_epochs": 1, "val_interval": 1, "training_recipe#warmup_iters": 1,
    },
}  # fmt: skip


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


@pytest.mark.parametrize("bundle", BUNDLES)
def test_shipped_package_records_a_real_model(bundle):
    models = REPO / "bundles" / bundle / "models"
    for name in SHIPPED[bundle]:
        assert (models / name).is_file(), f"{models / name} is not shipped"
        assert (models / name).stat().st_size <= MODEL_ZOO_FILE_LIMIT
    package = json.loads((models / "model_package.json").read_text())
    provenance = package["provenance"]
    assert package["name"] and package["bundle"] == bundle and provenance["synthetic"] is False
    assert len(provenance["datalist_sha256"]) == 64 and isinstance(provenance["seed"], int)
    assert provenance["git_commit"] and not provenance["git_commit"].endswith("+dirty")
    ids = provenance["image_ids"]
    assert ids["training"] and ids["validation"]
    # chosen on a held-out part of the training split, never on the test photographs (IDRiD_55-81)
    assert all(int(i.split("_")[1]) <= 54 for i in ids["training"] + ids["validation"])
    assert not set(ids["training"]) & set(ids["validation"])
    # the figures are the shipped weights' (the best validation by the key metric), the last validation's beside them
    key = {"exudate_dsm": "val_aupr", "fundus_lesion_hrdecoder": "val_maupr"}[bundle]
    best, last = package["validation"], package["last_validation"]
    assert best["epoch"] <= last["epoch"] and best["metrics"][key] >= last["metrics"][key]
    calibration = package["calibration"]
    assert set(calibration["lesions"]) == set(package["settings"]["lesions"])
    assert calibration["fitted_on"]["image_ids"] == ids["validation"]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_quick_start_training_never_touches_the_shipped_model(bundle, tmp_path):
    """The README's demo training, with its default model folder, leaves the shipped files byte-identical."""
    configs = REPO / "bundles" / bundle / "configs"
    models = REPO / "bundles" / bundle / "models"
    before = _hashes(models)
    run("training", config_file=str(configs / "train.json"), meta_file=str(configs / "metadata.json"),
        dataset_dir=str(tmp_path / "data"), output_dir=str(tmp_path / "out"), **QUICK[bundle])  # fmt: skip
    assert (tmp_path / "out" / "models" / "model.pt").is_file()  # the demo model lands beside its outputs
    assert _hashes(models) == before


@pytest.mark.parametrize("bundle", BUNDLES)
def test_readme_inference_segments_a_real_photograph_with_the_shipped_model(bundle, idrid_sample, tmp_path, caplog):
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy(idrid_sample / "A. Segmentation" / "1. Original Images" / "b. Testing Set" / "IDRiD_55.jpg", photos)
    configs = REPO / "bundles" / bundle / "configs"
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        run(config_file=str(configs / "inference.json"), meta_file=str(configs / "metadata.json"),
            dataset_dir=str(photos), output_dir=str(out), progress=False, num_workers=0)  # fmt: skip
    assert DEMO_MODEL_WARNING not in caplog.text
    name = json.loads((REPO / "bundles" / bundle / "models" / "model_package.json").read_text())["name"]
    with open(out / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    lesions = json.loads((REPO / "bundles" / bundle / "models" / "model_package.json").read_text())["settings"][
        "lesions"
    ]
    assert [r["lesion"] for r in rows] == lesions and {r["model_origin"] for r in rows} == {name}
    # each lesion's mask at the threshold the model ships, chosen on its validation photographs
    stored = json.loads((REPO / "bundles" / bundle / "models" / "threshold.json").read_text())["thresholds"]
    assert {r["lesion"]: float(r["threshold"]) for r in rows} == pytest.approx(stored)
    assert (out / "IDRiD_55_overlay.jpg").is_file()
    for lesion in lesions:
        assert (out / f"IDRiD_55_{lesion}_prob.png").is_file() and (out / f"IDRiD_55_{lesion}_mask.png").is_file()
