"""exudate_dsm with patch training: lesion-biased crops per loader, sliding-window validation, stored threshold."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import pytest
import torch
from monai.bundle import ConfigParser, run
from monai.inferers import SimpleInferer, SlidingWindowInferer

from monai_exudate.bundle import root_cause

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "exudate_dsm" / "configs"
PATCHES = {
    "synthetic_num": 4,
    "synthetic_size": [120, 96],
    "model_settings#spatial_size": [80, 64],
    "model_settings#arch": "unet",
    "model_settings#net_width": 2,
    "model_settings#net_dropout": 0.0,
    "model_settings#patch_training": True,
    "model_settings#patch_size": [32, 32],
    "training_recipe#patch_samples": 2,
    "training_recipe#max_epochs": 2,
    "val_interval": 1,
    "training_recipe#learning_rate": 0.001,
}


def _parser(*configs: str, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / c) for c in configs])
    parser.update(overrides)
    return parser


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("dsm_patches")
    dirs = {"dataset_dir": str(root / "data"), "output_dir": str(root / "out"), "ckpt_dir": str(root / "models")}
    optimizer = {
        "_target_": "torch.optim.Adam", "params": "$@network.parameters()", "lr": "@training_recipe#learning_rate"
    }  # fmt: skip
    overrides = {**PATCHES, "optimizer": optimizer}
    run("training", config_file=str(CONFIGS / "train.json"), meta_file=str(CONFIGS / "metadata.json"),
        **overrides, **dirs)  # fmt: skip
    return {**dirs, "root": root, "overrides": overrides}


def test_each_loader_draws_its_own_lesion_biased_crops(tmp_path):
    parser = _parser(
        "train.json",
        bundle_root=str(tmp_path),
        **{**PATCHES, "training_recipe#patch_pos": 1.0, "training_recipe#patch_neg": 0.0},
    )
    parser.get_parsed_content("initialize")
    large = next(iter(parser.get_parsed_content("train#dataloader")))
    small = next(iter(parser.get_parsed_content("train#small_branch_loader")))
    batch = parser["training_recipe#batch_size"] * parser["training_recipe#patch_samples"]
    assert large["image"].shape == (batch, 3, 32, 32) and large["label"].shape == (batch, 1, 32, 32)
    assert small["image"].shape == large["image"].shape
    assert not torch.equal(large["image"], small["image"])
    # pos=1, neg=0: every crop is centred on a lesion pixel (shifted inside the image near its border)
    assert all(bool(label.any()) for label in large["label"])
    assert isinstance(parser.get_parsed_content("validate#inferer").inferer, SlidingWindowInferer)
    assert list(parser.get_parsed_content("validate#inferer").inferer.roi_size) == [32, 32]


def test_whole_image_training_stays_the_default(tmp_path):
    parser = _parser("train.json", bundle_root=str(tmp_path), synthetic_num=2, synthetic_size=[120, 96],
                     **{"model_settings#spatial_size": [80, 64]})  # fmt: skip
    assert parser["model_settings#patch_training"] is False and parser["model_settings#arch"] == "pspnet"
    assert isinstance(parser.get_parsed_content("validate#inferer").inferer, SimpleInferer)
    names = [type(t).__name__ for t in parser.get_parsed_content("train#preprocessing").transforms]
    assert "RandCropByPosNegLabeld" not in names and "SpatialPadd" not in names


def test_patch_training_stores_the_validation_threshold(trained):
    models = Path(trained["ckpt_dir"])
    assert (models / "model.pt").is_file()
    record = json.loads((models / "threshold.json").read_text())
    assert set(record["thresholds"]) == {"EX"} and 0.0 < record["thresholds"]["EX"] < 1.0
    assert record["epoch"] in (1, 2)
    # the map it was chosen on, so a run that makes its map otherwise is told
    assert record["map_settings"] == {"fusion": "logits", "tta_flip_axes": [], "calibrated": False}
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{trained['output_dir']}/mlflow.db")
    run_info = client.search_runs([client.get_experiment_by_name("exudate_dsm").experiment_id])[0]
    assert {"EX_threshold", "EX_f_at_threshold", "EX_f", "val_aupr"} <= set(run_info.data.metrics)


def test_evaluate_and_inference_use_the_stored_threshold(trained):
    stored = json.loads((Path(trained["ckpt_dir"]) / "threshold.json").read_text())["thresholds"]["EX"]
    dirs = {k: trained[k] for k in ("dataset_dir", "output_dir", "ckpt_dir")}
    run("evaluating", config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "evaluate.json")],
        meta_file=str(CONFIGS / "metadata.json"), **trained["overrides"], **dirs)  # fmt: skip
    metrics = json.loads((Path(trained["output_dir"]) / "eval" / "metrics.json").read_text())
    assert metrics["EX_threshold"] == pytest.approx(stored)
    assert 0.0 <= metrics["EX_f_at_threshold"] <= 1.0 and 0.0 <= metrics["EX_f"] <= 1.0  # beside the 0.5 scores

    # the trained model's package describes the network, geometry and patch inference: nothing else is given
    parser = _parser("inference.json", ckpt_dir=trained["ckpt_dir"])
    assert parser.get_parsed_content("threshold") == pytest.approx(stored)
    assert isinstance(parser.get_parsed_content("inferer").inferer, SlidingWindowInferer)
    flipped = _parser("inference.json", ckpt_dir=trained["ckpt_dir"], tta_flip_axes=[0])
    with mock.patch("monai_exudate.inference.threshold_file.logger") as logger:
        assert flipped.get_parsed_content("threshold") == pytest.approx(stored)
    assert "tta_flip_axes [0] (chosen with [])" in logger.warning.call_args.args[-1]
    photos = sorted(Path(trained["dataset_dir"]).rglob("b. Testing Set/IDRiD_*.jpg"))
    out = Path(trained["root"]) / "infer"
    run(config_file=str(CONFIGS / "inference.json"), meta_file=str(CONFIGS / "metadata.json"),
        dataset_dir=str(photos[0].parent), ckpt_dir=trained["ckpt_dir"], output_dir=str(out))  # fmt: skip
    from PIL import Image

    prob = out / f"{photos[0].stem}_EX_prob.png"
    assert Image.open(prob).size == Image.open(photos[0]).size


def test_small_branch_loader_can_centre_its_crops_on_lesion_components(tmp_path):
    parser = _parser(
        "train.json", bundle_root=str(tmp_path), **{**PATCHES, "training_recipe#small_patch_sampling": "components"}
    )
    parser.get_parsed_content("initialize")
    large_names = [type(t).__name__ for t in parser.get_parsed_content("train#preprocessing").transforms]
    small_set = parser.get_parsed_content("train#small_branch_dataset")
    assert small_set is not parser.get_parsed_content("train#dataset")
    small_names = [type(t).__name__ for t in small_set.transform.transforms]
    assert "RandCropByPosNegLabeld" in large_names and "RandWeightedCropd" not in large_names
    assert "ComponentBalancedWeightd" in small_names and "RandWeightedCropd" in small_names
    large = next(iter(parser.get_parsed_content("train#dataloader")))
    small = next(iter(parser.get_parsed_content("train#small_branch_loader")))
    assert small["image"].shape == large["image"].shape and small["label"].shape == large["label"].shape
    # the resume state holds the random transforms of both loaders' pipelines
    from monai_exudate.engines import ResumeState

    state = ResumeState(transforms=parser.get_parsed_content("train#checkpoint_handlers#random_transforms"))
    assert any(type(t).__name__ == "RandWeightedCropd" for t in state.transforms)


def test_pixel_sampling_shares_the_large_branch_dataset(tmp_path):
    parser = _parser("train.json", bundle_root=str(tmp_path), **PATCHES)
    assert parser["training_recipe#small_patch_sampling"] == "pixels"
    assert parser.get_parsed_content("train#small_branch_dataset") is parser.get_parsed_content("train#dataset")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"training_recipe#small_patch_sampling": "blobs"}, "small_patch_sampling must be one of"),
        (
            {"training_recipe#small_patch_sampling": "components", "model_settings#patch_training": False},
            "needs patch_training true",
        ),
    ],
)
def test_small_patch_sampling_is_checked(tmp_path, settings, message):
    parser = _parser("train.json", bundle_root=str(tmp_path), **{**PATCHES, **settings})
    with pytest.raises(RuntimeError) as failure:
        parser.get_parsed_content("train#small_branch_dataset")
    assert message in str(root_cause(failure.value))
