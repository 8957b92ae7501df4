"""Inference of a model trained with a dataset overlay builds the network and input geometry training used: the
model package written from training's ``model_settings`` describes them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
# (bundle, overlay, input size key, what preprocessing makes of a 1000x700 photograph with a 700x600 field of view)
CASES = [
    ("exudate_dsm", "idrid.json", "spatial_size", (1440, 960)),
    ("exudate_dsm", "ddr.json", "spatial_size", (1024, 1024)),
    ("exudate_dsm", "cpu.json", "spatial_size", (1440, 960)),
    ("fundus_lesion_hrdecoder", "idrid.json", "resize_size", (2880, 1920)),
    ("fundus_lesion_hrdecoder", "ddr.json", "resize_size", (2048, 1755)),  # FOV crop 700x600 first
]


def _parser(bundle: str, *configs: str, ckpt_dir: Path | None = None) -> ConfigParser:
    """The bundle's configs; ``ckpt_dir``: an empty model folder, so that a model the user trained in the bundle's
    own ``models/`` (whose package inference follows) cannot change what the test sees."""
    parser = ConfigParser()
    parser.read_config([str(BUNDLES / bundle / "configs" / c) for c in configs])
    if ckpt_dir is not None:
        parser.update({"ckpt_dir": str(ckpt_dir)})
    return parser


def _trained(bundle: str, overlay: str, models: Path) -> tuple[ConfigParser, ConfigParser]:
    """Training's parser with the overlay, and inference's reading the package training writes into ``models``."""
    training = _parser(bundle, "train.json", overlay, ckpt_dir=models)
    models.mkdir(parents=True, exist_ok=True)
    package = {"format": 1, "bundle": bundle, "settings": training.get_parsed_content("model_settings")}
    (models / "model_package.json").write_text(json.dumps(package))
    return training, _parser(bundle, "inference.json", overlay, ckpt_dir=models)


@pytest.mark.parametrize(("bundle", "overlay", "size_key", "expected"), CASES)
def test_inference_with_the_overlay_matches_training(tmp_path, bundle, overlay, size_key, expected):
    training, inference = _trained(bundle, overlay, tmp_path / "models")
    assert inference.get_parsed_content("model_description")[size_key] == training[f"model_settings#{size_key}"]
    shapes = [
        {k: tuple(v.shape) for k, v in p.get_parsed_content("network_def").state_dict().items()}
        for p in (inference, training)
    ]
    assert shapes[0] == shapes[1]  # a checkpoint of the training run loads into the inference network
    photo = np.zeros((700, 1000, 3), np.uint8)
    photo[50:650, 150:850] = (170, 90, 40)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    image = inference.get_parsed_content("preprocessing")({"image": str(tmp_path / "photo.png")})["image"]
    assert tuple(image.shape) == (3, *expected) and image.dtype == torch.float32


def test_cpu_profile_trains_on_crops_and_infers_with_a_sliding_window(tmp_path):
    from monai.inferers import SlidingWindowInferer

    training, inference = _trained("exudate_dsm", "cpu.json", tmp_path / "models")
    described = inference.get_parsed_content("model_description")
    for settings in (described, training.get_parsed_content("model_settings")):
        assert settings["arch"] == "unet" and settings["dual"] is True and settings["patch_training"] is True
    assert (
        described["patch_size"] == training["model_settings#patch_size"]
        and described["net_dropout"] == training["model_settings#net_dropout"]
    )
    inferer = inference.get_parsed_content("inferer").inferer  # inside the test-time flip wrapper
    assert isinstance(inferer, SlidingWindowInferer) and list(inferer.roi_size) == training["model_settings#patch_size"]
    names = [type(t).__name__ for t in training.get_parsed_content("train#augmentation")]
    assert training["training_recipe#loss_name"] == "dsm" and "RandFlipRotate90d" in names
    assert isinstance(training.get_parsed_content("validate#inferer").inferer, SlidingWindowInferer)
    # the horizontal mirror at validation (where the threshold is chosen), evaluation and inference alike
    for flips in (inference.get_parsed_content("inferer"), training.get_parsed_content("validate#inferer")):
        assert list(flips.spatial_axes) == [0]


@pytest.mark.parametrize("bundle", ["exudate_dsm", "fundus_lesion_hrdecoder"])
def test_ddr_is_evaluated_on_its_test_split_and_selected_on_its_validation_split(bundle):
    """The papers' DDR figures are on DDR's test split; training keeps choosing its model on the validation split."""
    for order in (("evaluate.json", "ddr.json"), ("ddr.json", "evaluate.json")):  # either order of the overlays
        ddr = _parser(bundle, "train.json", *order)
        assert ddr.get_parsed_content("eval_section") == "testing" and ddr["val_section"] == "validation"
        assert ddr["validate#datalist"] == "$@checked_datalist[@eval_section]"
    idrid = _parser(bundle, "train.json", "evaluate.json", "idrid.json")
    assert idrid.get_parsed_content("eval_section") == "testing" == idrid["val_section"]  # IDRiD has no other
