"""Training, evaluation and inference of each bundle prepare a photograph identically (one chain, three configs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
# one non-default geometry per bundle, so an argument dropped from one config shows up as a difference
SETTINGS = {
    "exudate_dsm": {"model_settings#spatial_size": [96, 64], "model_settings#fov_crop": True},
    "fundus_lesion_hrdecoder": {"model_settings#resize_size": [96, 64]},
}


def _photo(folder: Path) -> dict[str, str]:
    """A 200x140 photograph: a bright disc on black (so the field-of-view crop acts) with one exudate mask."""
    yy, xx = np.mgrid[:140, :200]
    inside = (xx - 104) ** 2 + (yy - 70) ** 2 < 64**2
    rng = np.random.default_rng(0)
    photo = np.where(inside[..., None], rng.integers(60, 200, (140, 200, 3)), 0).astype(np.uint8)
    mask = ((xx - 90) ** 2 + (yy - 60) ** 2 < 6**2).astype(np.uint8) * 255
    Image.fromarray(photo).save(folder / "photo.png")
    Image.fromarray(mask).save(folder / "photo_EX.png")
    return {"image": str(folder / "photo.png"), "EX": str(folder / "photo_EX.png")}


def _parser(bundle: str, configs: list[str], overrides: dict) -> ConfigParser:
    folder = REPO / "bundles" / bundle / "configs"
    parser = ConfigParser()
    parser.read_config([str(folder / c) for c in configs])
    parser.update(overrides)
    return parser


def _package(bundle: str, tmp_path: Path, overrides: dict) -> Path:
    """Write the model package training would: the resolved ``model_settings`` of ``train.json``; returns the path
    of the (absent) weights beside it."""
    settings = _parser(bundle, ["train.json"], overrides).get_parsed_content("model_settings")
    (tmp_path / "model_package.json").write_text(json.dumps({"format": 1, "bundle": bundle, "settings": settings}))
    return tmp_path / "model.pt"


def _chain(bundle: str, configs: list[str], name: str, tmp_path: Path):
    overrides = {**SETTINGS[bundle], "lesions": ["EX"]}
    if "train.json" not in configs or len(configs) > 1:  # evaluation and inference: everything from the package
        overrides = {"ckpt_path": str(_package(bundle, tmp_path, overrides))}
    return _parser(bundle, configs, overrides).get_parsed_content(name)


@pytest.mark.parametrize("bundle", sorted(SETTINGS))
def test_training_evaluation_and_inference_prepare_the_photograph_alike(bundle, tmp_path, caplog):
    item = _photo(tmp_path)
    train = _chain(bundle, ["train.json"], "validate#preprocessing", tmp_path)
    evaluate = _chain(bundle, ["train.json", "evaluate.json"], "validate#preprocessing", tmp_path)
    infer = _chain(bundle, ["inference.json"], "preprocessing", tmp_path)
    assert "no model_package.json" not in caplog.text  # the package written from train.json's model_settings
    trained, evaluated, inferred = train(dict(item)), evaluate(dict(item)), infer({"image": item["image"]})
    assert tuple(trained["image"].shape[1:]) == tuple(SETTINGS[bundle].get("model_settings#spatial_size", [96, 64]))
    assert torch.equal(trained["image"].as_tensor(), evaluated["image"].as_tensor())
    assert torch.equal(trained["image"].as_tensor(), inferred["image"].as_tensor())
    # training resizes the label with the photograph; evaluation keeps it at the photograph's size for scoring
    assert tuple(trained["label"].shape[1:]) == tuple(trained["image"].shape[1:])
    assert tuple(evaluated["label"].shape[1:]) == (200, 140) and float(evaluated["label"].sum()) > 0
    assert "label" not in inferred and inferred["fov_pixels"] > 0
    # the evaluation and inference chains invert to the photograph's own grid the same way
    restored = [t.inverse({"image": d["image"]})["image"] for t, d in ((evaluate, evaluated), (infer, inferred))]
    assert tuple(restored[0].shape[1:]) == (200, 140)
    assert torch.equal(restored[0].as_tensor(), restored[1].as_tensor())


@pytest.mark.parametrize("bundle", sorted(SETTINGS))
def test_training_and_inference_build_the_same_network_and_post_processing(bundle, tmp_path):
    train = ConfigParser()
    train.read_config(str(REPO / "bundles" / bundle / "configs" / "train.json"))
    widths = {"net_width": 8} if bundle == "exudate_dsm" else {"net_width": 4, "stage1_channels": 8, "head_channels": 8}
    tiny = {f"model_settings#{name}": value for name, value in widths.items()}
    train.update({**SETTINGS[bundle], **tiny})
    infer = _parser(
        bundle, ["inference.json"], {"ckpt_path": str(_package(bundle, tmp_path, {**SETTINGS[bundle], **tiny}))}
    )
    trained, inferred = train.get_parsed_content("network_def"), infer.get_parsed_content("network_def")
    assert type(trained) is type(inferred)
    shapes = [{k: tuple(v.shape) for k, v in n.state_dict().items()} for n in (trained, inferred)]
    assert shapes[0] == shapes[1]
    logits = torch.randn(2 if bundle == "exudate_dsm" else 4, 8, 8)  # the DSM default is dual: one channel per branch
    outputs = []
    for parser in (train, infer):
        output = {"pred": logits.clone()}
        for transform in parser.get_parsed_content("postprocessing_transforms"):
            output = transform(output)
        outputs.append(output["pred"])
    assert outputs[0].shape == (1 if bundle == "exudate_dsm" else 4, 8, 8)
    assert torch.equal(outputs[0], outputs[1])
