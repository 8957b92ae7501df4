"""Both bundles as the MONAI model zoo checks them: ConfigWorkflow properties of the train and infer workflows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow
from PIL import Image

from monai_exudate.inference import FundusInferenceRunner
from monai_exudate.inference.dataset import InferenceDataset

REPO = Path(__file__).resolve().parents[2]
TINY = {
    "exudate_dsm": {
        "model_settings#net_width": 8,
        "model_settings#spatial_size": [96, 64],
        "synthetic_num": 4,
        "synthetic_size": [160, 112],
    },
    "fundus_lesion_hrdecoder": {
        "model_settings#net_width": 4,
        "model_settings#stage1_channels": 8,
        "model_settings#stem_channels": 8,
        "model_settings#head_channels": 8,
        "model_settings#hr_scale": 32,
        "model_settings#resize_size": [96, 64],
        "model_settings#crop_size": [64, 64],
        "synthetic_num": 4,
        "synthetic_size": [160, 112],
    },
}


def _workflow(bundle: str, config: str, kind: str, overrides: dict) -> ConfigWorkflow:
    configs = REPO / "bundles" / bundle / "configs"
    return ConfigWorkflow(
        config_file=str(configs / config),
        meta_file=str(configs / "metadata.json"),
        workflow_type=kind,
        **overrides,
    )


@pytest.mark.parametrize("bundle", sorted(TINY))
def test_train_workflow_has_every_property_the_zoo_checks(bundle, tmp_path):
    dirs = {"dataset_dir": str(tmp_path / "data"), "output_dir": str(tmp_path / "out"), "ckpt_dir": str(tmp_path / "m")}
    workflow = _workflow(bundle, "train.json", "train", {**TINY[bundle], **dirs})
    workflow.initialize()
    assert workflow.check_properties() == []
    assert workflow.max_epochs > 0 and len(workflow.train_dataset) > 0


@pytest.mark.parametrize("bundle", sorted(TINY))
def test_infer_workflow_has_every_property_the_zoo_checks(bundle, tmp_path):
    configs = REPO / "bundles" / bundle / "configs"
    settings = {k: v for k, v in TINY[bundle].items() if not k.startswith("synthetic")}
    parser = ConfigParser()
    parser.read_config(str(configs / "inference.json"))
    parser.update({**settings, "ckpt_path": str(tmp_path / "none.pt")})
    (tmp_path / "models").mkdir()
    torch.save({"model": parser.get_parsed_content("network_def").state_dict()}, tmp_path / "models" / "model.pt")
    (tmp_path / "photos").mkdir()
    Image.fromarray(np.full((112, 160, 3), 90, np.uint8)).save(tmp_path / "photos" / "a.png")
    overrides = {
        **settings,
        "ckpt_dir": str(tmp_path / "models"),
        "dataset_dir": str(tmp_path / "photos"),
        "output_dir": str(tmp_path / "out"),
    }
    workflow = _workflow(bundle, "inference.json", "infer", overrides)
    workflow.initialize()
    assert workflow.check_properties() == []
    # the documented equivalents: the photographs as a dataset, the streaming runner as the evaluator, wired to the
    # workflow's own network, preprocessing and lesions
    runner = workflow.evaluator
    assert isinstance(workflow.dataset, InferenceDataset) and len(workflow.dataset) == 1
    assert isinstance(runner, FundusInferenceRunner)
    assert runner is workflow.parser.get_parsed_content("runner")
    assert runner.network is workflow.parser.get_parsed_content("network")
    assert runner.preprocessing is workflow.dataset.preprocessing
    lesions = list(workflow.parser.get_parsed_content("lesions"))
    assert list(runner.lesion_names) == lesions and runner.output_dir == tmp_path / "out"
    # and it segments the photograph: one probability map and one mask per lesion, a summary row per lesion
    workflow.run()
    written = {p.name for p in (tmp_path / "out").iterdir()}
    assert {f"a_{lesion}_{kind}.png" for lesion in lesions for kind in ("prob", "mask")} <= written
    rows = (tmp_path / "out" / "summary.csv").read_text().splitlines()
    assert len(rows) == 1 + len(lesions)
