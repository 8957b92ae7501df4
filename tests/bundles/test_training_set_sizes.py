"""Any training-set size trains: one, an odd number, fewer images than a batch; full batches, one LR schedule."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, run

from monai_exudate.data.indexers import build_datalist
from monai_exudate.data.resize import AntialiasedResized, RandRescaled
from monai_exudate.data.synthetic import resolve_dataset_dir

REPO = Path(__file__).resolve().parents[2]
BATCH = 2
TINY = {
    "exudate_dsm": {"model_settings#spatial_size": [96, 64], "model_settings#net_width": 8},
    "fundus_lesion_hrdecoder": {
        "model_settings#net_width": 4, "model_settings#stage1_channels": 8, "model_settings#stem_channels": 8,
        "model_settings#head_channels": 8, "model_settings#hr_scale": 32, "model_settings#resize_size": [96, 64],
        "model_settings#crop_size": [64, 64], "training_recipe#warmup_iters": 1, "num_threads": 1,
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def datalist(tmp_path_factory) -> dict:
    """Seven training and one testing record of a tiny synthetic IDRiD-layout set."""
    root = resolve_dataset_dir(tmp_path_factory.mktemp("sizes") / "data", True, "idrid", 10, (160, 112))
    full = build_datalist("idrid", root)
    return {"root": root, "training": full["training"][:7], "testing": full["testing"][:1]}


def _train(bundle: str, datalist: dict, num_train: int, tmp_path: Path, **settings) -> None:
    """Train ``bundle``'s tiny configuration on the first ``num_train`` training records."""
    configs = REPO / "bundles" / bundle / "configs"
    run(
        "training",
        config_file=str(configs / "train.json"),
        meta_file=str(configs / "metadata.json"),
        synthetic=False,
        dataset_dir=datalist["root"],
        datalist={"training": datalist["training"][:num_train], "testing": datalist["testing"]},
        output_dir=str(tmp_path / "out"),
        ckpt_dir=str(tmp_path / "models"),
        **{
            "training_recipe#batch_size": BATCH,
            "training_recipe#max_epochs": 1,
            "val_interval": 1,
            **TINY[bundle],
            **settings,
        },
    )


@pytest.mark.parametrize("bundle", sorted(TINY))
@pytest.mark.parametrize("num_train", [1, 3, 7])
def test_set_of_any_size_trains_one_epoch(bundle, num_train, datalist, tmp_path):
    _train(bundle, datalist, num_train, tmp_path)
    state = torch.load(tmp_path / "models" / "checkpoint_epoch=1.pt", map_location="cpu", weights_only=False)
    iterations = math.ceil(num_train / BATCH)  # every image once, the last batch topped up to a full one
    assert state["trainer"]["epoch_length"] == iterations and state["trainer"]["iteration"] == iterations
    # the poly schedule was built for exactly the iterations that ran: it has reached its end
    assert state["lr_scheduler"]["last_epoch"] == iterations
    if "total_iters" in state["lr_scheduler"]:
        assert state["lr_scheduler"]["total_iters"] == iterations
    assert (tmp_path / "models" / "model.pt").is_file()


def test_passes_per_epoch_repeat_the_set_within_an_epoch(datalist, tmp_path):
    """The authors write six rotated/flipped copies of every training image, so one of their epochs is six passes:
    ``passes_per_epoch`` keeps their epoch count, images seen, poly length and alpha per epoch."""
    _train(
        "exudate_dsm", datalist, 3, tmp_path, val_interval=2,
        **{"training_recipe#max_epochs": 2, "training_recipe#passes_per_epoch": 3},
    )  # fmt: skip
    state = torch.load(tmp_path / "models" / "checkpoint_epoch=2.pt", map_location="cpu", weights_only=False)
    per_pass = math.ceil(3 / BATCH)
    assert state["trainer"]["epoch_length"] == 3 * per_pass and state["trainer"]["iteration"] == 2 * 3 * per_pass
    assert state["lr_scheduler"]["last_epoch"] == 2 * 3 * per_pass == state["lr_scheduler"]["total_iters"]


def test_idrid_overlays_follow_the_authors_schedule_and_sharing():
    dsm = json.loads((REPO / "bundles" / "exudate_dsm" / "configs" / "idrid.json").read_text())
    # 40 epochs of six passes over 54 images at one image per branch: the authors' 12,960 iterations of one image
    # per GPU and branch, with GroupNorm in the pooled branches as theirs; their six copies of every image (90/270
    # degree rotations included, batch 1 allows the portrait ones); only layer4's last block per branch
    assert (
        dsm["training_recipe#max_epochs"]
        * dsm["training_recipe#passes_per_epoch"]
        * 54
        // dsm["training_recipe#batch_size"]
        == 12_960
    )
    assert (
        dsm["training_recipe#batch_size"] == 1
        and dsm["model_settings#pooling_norm"] == "group"
        and dsm["training_recipe#augmentation_variants"] == "authors"
    )
    assert dsm["model_settings#branch_layer4_blocks"] == 1
    hrd = json.loads((REPO / "bundles" / "fundus_lesion_hrdecoder" / "configs" / "idrid.json").read_text())
    assert hrd["training_recipe#dice_smooth"] == 1e-5 and hrd["training_recipe#rotate_prob"] == 1.0
    assert hrd["model_settings#image_mean"] == [116.513, 56.437, 16.309] and hrd["model_settings#image_std"] == [
        80.206,
        41.232,
        13.293,
    ]


@pytest.mark.parametrize("overlay", ["idrid.json", "ddr.json"])
def test_dsm_overlays_take_the_authors_auxiliary_head_sample_rates_and_training_set(overlay):
    configs = REPO / "bundles" / "exudate_dsm" / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "train.json"), str(configs / overlay)])
    # one shared aux head, plain Dice on each branch's own image at 0.2 (0.4 for the single baselines)
    assert parser.get_parsed_content("network_def").aux_head is not None
    loss = parser.get_parsed_content("loss")
    # their two GPUs each compute one branch's loss and DDP averages the gradients: a 0.5 x step for a dual network
    assert loss.aux_loss is not None and loss.aux_weight == 0.2 and loss.scale == 0.5
    parser.update({"model_settings#dual": False, "training_recipe#loss_name": "dice"})
    loss = parser.get_parsed_content("loss")
    assert loss.aux_weight == 0.4 and loss.scale == 1.0
    parser.update({"model_settings#dual": True, "model_settings#arch": "deeplabv3"})
    assert parser.get_parsed_content("training_recipe#sample_rate") == 0.25
    assert parser["training_recipe#drop_lesion_free"] is True  # training images without exudate are left out


def test_one_image_per_branch_trains_with_the_authors_six_copies(datalist, tmp_path):
    """The IDRiD overlay's step: one landscape image per branch (portrait after a 90/270 degree turn) through a
    PSPNet whose pooled branches use GroupNorm; every image once per pass."""
    _train(
        "exudate_dsm", datalist, 3, tmp_path,
        **{"model_settings#pooling_norm": "group", "model_settings#branch_layer4_blocks": 1,
           "model_settings#net_layers": [1, 1, 1, 2], "training_recipe#batch_size": 1,
           "training_recipe#augmentation_variants": "authors", "training_recipe#passes_per_epoch": 2},
    )  # fmt: skip
    state = torch.load(tmp_path / "models" / "checkpoint_epoch=1.pt", map_location="cpu", weights_only=False)
    assert state["trainer"]["iteration"] == 2 * 3  # two passes of three images, one per branch and step
    pyramid_norm = [k for k in state["model"] if ".head.stages.0.2." in k]  # GroupNorm: no running statistics
    assert pyramid_norm and not any(k.endswith("running_mean") for k in pyramid_norm)
    package = json.loads((tmp_path / "models" / "model_package.json").read_text())
    assert package["settings"]["pooling_norm"] == "group"


def test_hed_overlay_trains_with_the_authors_optimiser_and_supervision(datalist, tmp_path):
    """hed.json: SGD at 2e-4 with the authors' per-layer multipliers, weight decay 2e-4 on weights only, a constant
    rate (poly power 0), one image per branch, sample rate 0.25 and the authors' dual-HED loss."""
    configs = REPO / "bundles" / "exudate_dsm" / "configs"
    run(
        "training",
        config_file=[str(configs / "train.json"), str(configs / "hed.json")],
        meta_file=str(configs / "metadata.json"),
        synthetic=False,
        dataset_dir=datalist["root"],
        datalist={"training": datalist["training"][:2], "testing": datalist["testing"]},
        output_dir=str(tmp_path / "out"),
        ckpt_dir=str(tmp_path / "models"),
        val_interval=1,
        **{"training_recipe#max_epochs": 1, "model_settings#spatial_size": [96, 64], "model_settings#net_width": 4},
    )
    state = torch.load(tmp_path / "models" / "checkpoint_epoch=1.pt", map_location="cpu", weights_only=False)
    groups = state["optimizer"]["param_groups"]
    assert sorted(round(g["lr"] / 2e-4, 6) for g in groups) == [0.001, 0.002, 0.01, 0.02, 1.0, 2.0, 100.0, 200.0]
    assert {g["weight_decay"] for g in groups} == {0.0, 2e-4}
    assert state["trainer"]["iteration"] == 2  # one image per branch and step
    package = (tmp_path / "models" / "model_package.json").read_text()
    assert '"hed_supervision": "authors"' in package and '"sample_rate": 0.25' in package


def test_hrdecoder_rescales_the_full_resolution_photograph_as_the_authors():
    """The authors resize the original photograph by r in [0.5, 2]: the training set is cached at the field of
    view's own resolution (uint8) and RandRescaled reaches r x 2880x1920 from it in one resize."""
    configs = REPO / "bundles" / "fundus_lesion_hrdecoder" / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "train.json"), str(configs / "idrid.json")])
    chain = parser.get_parsed_content("train#preprocessing").transforms
    rescale = parser.get_parsed_content("train#augmentation")[0]
    cached = chain[: chain.index(rescale)]
    assert not any(isinstance(t, AntialiasedResized) for t in cached)
    assert isinstance(rescale, RandRescaled) and rescale.ratio_range == (0.5, 2.0)
    assert rescale.resizer.spatial_size == (2880, 1920)
    validation = parser.get_parsed_content("validate#preprocessing").transforms
    assert any(isinstance(t, AntialiasedResized) for t in validation)
