"""The exudate_dsm recipe: the authors' rules, and the network, preprocessing and inferer a settings dict describes."""

from __future__ import annotations

import pytest
import torch
from monai.data import Dataset
from monai.inferers import SimpleInferer, SlidingWindowInferer

from monai_exudate.recipes import exudate_dsm

SETTINGS = {
    "lesions": ["EX"], "arch": "unet", "dual": True, "net_width": 8, "net_layers": [1, 1, 1, 1],
    "branch_layer4_blocks": 1, "shared_aux_head": True, "pooling_norm": "batch", "net_dropout": 0.0,
    "head_prior": None, "fusion": "logits", "spatial_size": [96, 64], "fov_crop": "false", "pad_below": 0,
    "patch_training": True, "patch_size": [32, 32], "image_mean": [0.0, 0.0, 0.0], "image_std": [1.0, 1.0, 1.0],
}  # fmt: skip


def test_the_authors_auxiliary_weight_and_rotation_rules():
    assert exudate_dsm.aux_weight(True) == 0.2 and exudate_dsm.aux_weight("no") == 0.4
    assert exudate_dsm.rotate_non_square(1, False) and not exudate_dsm.rotate_non_square(2, False)
    assert not exudate_dsm.rotate_non_square(1, "yes")  # patches are square: the rule is for whole photographs
    assert exudate_dsm.run_name("pspnet", "false", "dice") == "pspnet_single_dice"


def test_the_settings_build_the_network_fusion_and_patch_inferer():
    net = exudate_dsm.network(SETTINGS).eval()
    with torch.no_grad():
        logits = net(torch.zeros(1, 3, 32, 32))
    assert logits.shape == (1, 2, 32, 32)  # one channel per branch
    (fuse,) = exudate_dsm.logit_postprocessing(SETTINGS)
    assert fuse({"pred": logits[0]})["pred"].shape == (1, 32, 32)
    tiled = exudate_dsm.inferer(SETTINGS, sw_batch_size=2, overlap=0.25, flip_axes=[0])
    assert isinstance(tiled.inferer, SlidingWindowInferer) and list(tiled.inferer.roi_size) == [32, 32]
    assert list(tiled.spatial_axes) == [0]
    whole = exudate_dsm.inferer({**SETTINGS, "patch_training": False}, sw_batch_size=2, overlap=0.25)
    assert isinstance(whole.inferer, SimpleInferer)


def test_the_preprocessing_follows_the_settings():
    names = [type(t).__name__ for t in exudate_dsm.preprocessing(SETTINGS, labels="none")]
    assert "FieldOfViewCropd" not in names and names[-1] == "NormalizeIntensityd"
    cropped = [type(t).__name__ for t in exudate_dsm.preprocessing({**SETTINGS, "fov_crop": True}, labels="none")]
    assert "FieldOfViewCropd" in cropped


RECIPE = {
    "loss_name": "dsm", "sample_rate": 0.5, "dsm_mode": "sampled", "aux_weight": 0.2, "aux_loss": "plain",
    "loss_scale": 1.0, "hed_supervision": "authors", "batch_size": 2, "augmentation_variants": "dihedral",
    "patch_pos": 1.0, "patch_neg": 1.0, "patch_samples": 4, "small_patch_sampling": "pixels",
}  # fmt: skip


def test_patch_crops_and_the_small_branch_loader():
    assert exudate_dsm.patch_crops({**SETTINGS, "patch_training": False}, RECIPE) == []
    assert [type(t).__name__ for t in exudate_dsm.patch_crops({**SETTINGS, "patch_training": "yes"}, RECIPE)] == [
        "SpatialPadd", "RandCropByPosNegLabeld"]  # fmt: skip
    shared = Dataset(list(range(6)))
    whole = {**SETTINGS, "patch_training": False}
    assert exudate_dsm.small_branch_dataset(shared, [], [], [], whole, RECIPE) is shared
    with pytest.raises(ValueError, match="needs patch_training true"):
        exudate_dsm.small_branch_dataset(shared, [], [], [], whole, {**RECIPE, "small_patch_sampling": "components"})
    with pytest.raises(ValueError, match="small_patch_sampling must be one of"):
        exudate_dsm.small_branch_dataset(shared, [], [], [], SETTINGS, {**RECIPE, "small_patch_sampling": "blobs"})
    assert exudate_dsm.small_branch_loader(shared, dual=False, batch_size=2, seed=0) is None
    loader = exudate_dsm.small_branch_loader(shared, dual=True, batch_size=2, seed=0)
    assert loader.sampler.seed == 1  # shuffled independently of the large branch's loader (seed 0)


def test_the_recipe_builds_the_loss_and_the_augmentation():
    loss = exudate_dsm.loss(SETTINGS, {**RECIPE, "aux_weight": 0.3})
    assert type(loss).__name__ == "DualBranchLoss" and loss.aux_weight == 0.3  # the recipe's values reach the loss
    single = exudate_dsm.loss({**SETTINGS, "dual": "no"}, {**RECIPE, "loss_name": "cbce"})
    assert type(single).__name__ != "DualBranchLoss"
    (turn,) = exudate_dsm.augmentation(SETTINGS, {**RECIPE, "batch_size": 1})
    assert turn.rotate_non_square is False  # patches: the rule for whole photographs does not apply
    (turn,) = exudate_dsm.augmentation({**SETTINGS, "patch_training": False}, {**RECIPE, "batch_size": 1})
    assert turn.rotate_non_square is True and turn.variants == "dihedral"
