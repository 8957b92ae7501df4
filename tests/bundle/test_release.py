"""large_files.yml written for a trained model: MONAI's download_large_files fetches it into a fresh clone and
refuses a changed file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from monai.apps.utils import HashCheckError
from monai.bundle import download_large_files

from monai_exudate.__main__ import main
from monai_exudate.bundle.release import write_large_files


def _trained_bundle(root: Path, synthetic: bool = False) -> Path:
    """A bundle folder with the files training leaves in models/ (weights as opaque bytes)."""
    models = root / "models"
    models.mkdir(parents=True)
    (models / "model.pt").write_bytes(bytes(range(256)) * 64)
    package = {
        "bundle": "exudate_dsm",
        "version": "0.8.0",
        "settings": {"arch": "pspnet"},
        "provenance": {"synthetic": synthetic, "dataset_dir": "/data/IDRiD", "images": {"training": 54}, "seed": 0},
        "validation": {"epoch": 40, "metrics": {"val_aupr": 0.61, "EX_f": 0.7}},
    }
    (models / "model_package.json").write_text(json.dumps(package))
    (models / "threshold.json").write_text(json.dumps({"threshold": 0.42}))
    (models / "checkpoint_epoch=40.pt").write_bytes(b"resume state, not for download")
    return root


def test_a_fresh_clone_downloads_the_released_model_and_checks_its_hash(tmp_path):
    bundle = _trained_bundle(tmp_path / "bundle")
    host = tmp_path / "host"
    host.mkdir()
    path = write_large_files(bundle, host.as_uri())
    text = path.read_text()
    assert "trained on /data/IDRiD" in text and "validation (epoch 40): val_aupr 0.6100" in text  # what the model is
    entries = yaml.safe_load(text)["large_files"]
    assert [e["path"] for e in entries] == ["models/model.pt", "models/model_package.json", "models/threshold.json"]
    assert all(e["hash_type"] == "sha256" and len(e["hash_val"]) == 64 for e in entries)
    for entry in entries:  # the publisher uploads the files
        shutil.copy(bundle / entry["path"], host / Path(entry["path"]).name)

    clone = tmp_path / "clone"
    clone.mkdir()
    shutil.copy(path, clone / "large_files.yml")
    download_large_files(bundle_path=str(clone))
    for entry in entries:
        assert (clone / entry["path"]).read_bytes() == (bundle / entry["path"]).read_bytes()

    (clone / "models" / "model.pt").unlink()
    (host / "model.pt").write_bytes(b"another model")  # the hosted file changed after release
    with pytest.raises(HashCheckError, match="sha256 hash check"):
        download_large_files(bundle_path=str(clone))


def test_release_refuses_a_demo_model_and_a_folder_without_a_package(tmp_path, capsys):
    demo = _trained_bundle(tmp_path / "demo", synthetic=True)
    with pytest.raises(ValueError, match="synthetic demo set"):
        write_large_files(demo, "https://example.org/models")
    assert write_large_files(demo, "https://example.org/models", allow_synthetic=True).is_file()
    (demo / "models" / "model_package.json").unlink()
    assert main(["release", "--bundle-root", str(demo), "--base-url", "https://example.org/models"]) == 2
    assert "model_package.json" in capsys.readouterr().err
    bundle = _trained_bundle(tmp_path / "bundle")
    assert main(["release", "--bundle-root", str(bundle), "--base-url", "models"]) == 2
    assert "must be an address" in capsys.readouterr().err
    assert main(["release", "--bundle-root", str(bundle), "--base-url", "https://example.org/m/"]) == 0
    out = capsys.readouterr().out
    assert "upload to https://example.org/m/" in out and "checkpoint" not in out
    entries = yaml.safe_load((bundle / "large_files.yml").read_text())["large_files"]
    assert entries[0]["url"] == "https://example.org/m/model.pt" and entries[0]["path"] == "models/model.pt"
    assert write_large_files(bundle, "https://example.org/m", "models/").read_text().count("models/model.pt") == 1
    with pytest.raises(ValueError, match="inside the bundle"):
        write_large_files(bundle, "https://example.org/m", str(tmp_path / "elsewhere"))
