"""Indexers: the official IDRiD layout (real sample and generated), DDR and generic folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from monai_exudate.__main__ import main
from monai_exudate.data.indexers import build_datalist, index_ddr, index_folders, index_idrid, load_datalist
from monai_exudate.data.synthetic import write_synthetic_dataset


def test_idrid_sample(idrid_sample):
    dl = index_idrid(idrid_sample)
    assert [e["id"] for e in dl["training"]] == ["IDRiD_01", "IDRiD_02", "IDRiD_03", "IDRiD_04"]
    assert [e["id"] for e in dl["testing"]] == ["IDRiD_55", "IDRiD_56", "IDRiD_57", "IDRiD_58"]
    with_se = sorted(e["id"] for s in ("training", "testing") for e in dl[s] if e["SE"] is not None)
    assert with_se == ["IDRiD_03", "IDRiD_55", "IDRiD_56"]
    for entry in dl["training"] + dl["testing"]:
        assert entry["OD"] is None  # the sample ships no optic-disc masks: recorded missing, not invented
        for lesion in ("EX", "HE", "MA"):
            assert entry[lesion].endswith(f"{entry['id']}_{lesion}.tif")
            assert (idrid_sample / entry[lesion]).is_file()
        assert not entry["image"].startswith("/")  # relative to the dataset folder


def test_generated_idrid_layout(tmp_path):
    root = write_synthetic_dataset(tmp_path / "idrid", layout="idrid", num=4, size=(96, 64), seed=1)
    dl = index_idrid(root)
    assert len(dl["training"]) + len(dl["testing"]) == 4
    assert dl["training"][0]["id"] == "IDRiD_01" and dl["testing"][0]["id"] == "IDRiD_55"
    items = load_datalist(dl, "training", root, lesions=("EX", "SE"))
    for item in items:
        assert (root / item["image"]).is_file()
        assert item["SE"] is None or (root / item["SE"]).is_file()


def test_generated_ddr_layout(tmp_path):
    root = write_synthetic_dataset(tmp_path / "ddr", layout="ddr", num=5, size=(64, 64), seed=2)
    dl = index_ddr(root)
    assert all(dl[s] for s in ("training", "validation", "testing"))
    entry = dl["training"][0]
    assert set(entry) >= {"image", "EX", "HE", "MA", "SE"}
    assert entry["EX"] == f"lesion_segmentation/train/label/EX/{entry['id']}.tif"


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_folders_layout_matches_by_stem(tmp_path):
    img = np.zeros((16, 16, 3), dtype=np.uint8)
    mask = np.zeros((16, 16), dtype=np.uint8)
    for stem in ("a", "b", "c", "d", "e"):
        _write(tmp_path / "images" / f"{stem}.png", img)
        _write(tmp_path / "masks" / "EX" / f"{stem}_EX.png", mask)
    _write(tmp_path / "masks" / "HE" / "a.png", mask)  # HE only for one image
    dl = index_folders(tmp_path, validation_fraction=0.4, seed=0)
    entries = dl["training"] + dl["validation"]
    assert len(dl["validation"]) == 2 and len(entries) == 5
    by_id = {e["id"]: e for e in entries}
    assert by_id["a"]["HE"] == "masks/HE/a.png" and by_id["b"]["HE"] is None
    assert by_id["c"]["EX"] == "masks/EX/c_EX.png"
    assert index_folders(tmp_path, validation_fraction=0.4, seed=0) == dl  # deterministic


def test_bad_layouts_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="IDRiD image folder"):
        index_idrid(tmp_path)
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "images")):
        index_folders(tmp_path)
    with pytest.raises(ValueError, match="unknown dataset layout 'kaggle'"):
        build_datalist("kaggle", tmp_path)


def test_load_datalist_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json is not valid JSON"):
        load_datalist(bad, "training", tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_datalist(tmp_path / "missing.json", "training", tmp_path)
    with pytest.raises(ValueError, match="no key for lesion"):
        load_datalist({"training": [{"image": "x.jpg"}]}, "training", tmp_path, lesions=("EX",))
    with pytest.raises(ValueError, match="no section 'validation'"):
        load_datalist({"training": []}, "validation", tmp_path)


def test_cli_datalist(idrid_sample, tmp_path):
    out = tmp_path / "dl.json"
    assert main(["datalist", "--layout", "idrid", "--dataset-dir", str(idrid_sample), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == index_idrid(idrid_sample)
    assert main(["datalist", "--layout", "ddr", "--dataset-dir", str(tmp_path), "--out", str(out)]) == 2


def test_shipped_idrid_datalist():
    from pathlib import Path

    dl = json.loads((Path(__file__).resolve().parents[2] / "data_lists" / "idrid.json").read_text())
    assert len(dl["training"]) == 54 and len(dl["testing"]) == 27
    assert dl["testing"][0]["EX"].endswith("b. Testing Set/3. Hard Exudates/IDRiD_55_EX.tif")


def test_idrid_validation_ids_hold_training_images_out(idrid_sample, tmp_path):
    dl = index_idrid(idrid_sample, validation_ids=["IDRiD_04"])
    assert [e["id"] for e in dl["training"]] == ["IDRiD_01", "IDRiD_02", "IDRiD_03"]
    assert [e["id"] for e in dl["validation"]] == ["IDRiD_04"]
    assert [e["id"] for e in dl["testing"]] == ["IDRiD_55", "IDRiD_56", "IDRiD_57", "IDRiD_58"]
    with pytest.raises(ValueError, match="IDRiD_55"):  # a testing image never becomes validation
        index_idrid(idrid_sample, validation_ids=["IDRiD_55"])
    out = tmp_path / "dl.json"
    args = ["datalist", "--layout", "idrid", "--dataset-dir", str(idrid_sample), "--out", str(out)]
    assert main([*args, "--validation-ids", "IDRiD_04"]) == 0
    assert json.loads(out.read_text()) == dl
    assert main(["datalist", "--layout", "folders", "--dataset-dir", str(tmp_path), "--out", str(out),
                 "--validation-ids", "IDRiD_04"]) == 2  # fmt: skip


def test_idrid_copy_of_the_training_split_alone(tmp_path):
    root = write_synthetic_dataset(tmp_path / "idrid", layout="idrid", num=4, size=(96, 64), seed=1)
    import shutil

    from monai_exudate.data.layouts import IDRID_IMAGE_DIR, IDRID_SPLIT_DIRS

    shutil.rmtree(root / IDRID_IMAGE_DIR / IDRID_SPLIT_DIRS["testing"])
    dl = index_idrid(root)
    assert dl["testing"] == [] and len(dl["training"]) > 0


def test_shipped_idrid_training_split():
    from pathlib import Path

    dl = json.loads((Path(__file__).resolve().parents[2] / "data_lists" / "idrid_training_split.json").read_text())
    assert [e["id"] for e in dl["training"]] == [f"IDRiD_{i:02d}" for i in range(1, 45)]
    assert [e["id"] for e in dl["validation"]] == [f"IDRiD_{i:02d}" for i in range(45, 55)]
    assert dl["testing"] == []
    # SE is recorded where IDRiD has a mask (26 of the 54 training images)
    assert sum(e["SE"] is not None for e in dl["training"] + dl["validation"]) == 26
