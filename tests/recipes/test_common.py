"""The rules both bundles share: which handlers a rank attaches, the validation handlers, the MLflow parameters."""

from __future__ import annotations

import torch
from monai.handlers import MLFlowHandler, StatsHandler

from monai_exudate.engines import (
    AtomicCheckpointSaver,
    NonFiniteOutputHandler,
    OperatingThresholdHandler,
    PRCurveHandler,
    ValidationOverlayHandler,
)
from monai_exudate.recipes.common import (
    experiment_params,
    handlers_for_rank,
    validation_handlers,
    validation_main_rank_handlers,
)


def test_main_rank_handlers_are_left_out_on_other_ranks_and_disabled_ones_dropped():
    every, main = ["a", None, "b"], ["c", None]
    assert handlers_for_rank(every, main, is_main_rank=True) == ["a", "b", "c"]
    assert handlers_for_rank(every, main, is_main_rank=False) == ["a", "b"]


def test_experiment_params_flatten_the_package_dictionaries_and_keep_the_first_meaning():
    settings = {"arch": "unet", "spatial_size": [96, 64], "calibration": {"EX": {"x": [0, 1]}}}
    recipe = {"max_epochs": 3, "arch": "ignored"}  # a later section never redefines a name of an earlier one
    params = experiment_params(settings, recipe, {"seed": 0})
    assert params == {"arch": "unet", "spatial_size": [96, 64], "calibration.EX.x": [0, 1], "max_epochs": 3, "seed": 0}


def test_validation_handlers_place_the_threshold_before_the_log_and_the_best_model_saver_on_every_rank(tmp_path):
    network = torch.nn.Linear(1, 1)
    with_threshold = validation_handlers(
        network, tmp_path, tmp_path, ["EX"], threshold_file=tmp_path / "threshold.json", threshold_map_settings={}
    )
    kinds = [type(h) for h in with_threshold]
    assert kinds == [OperatingThresholdHandler, StatsHandler, AtomicCheckpointSaver, NonFiniteOutputHandler,
                     PRCurveHandler]  # fmt: skip
    saver = with_threshold[2]
    assert saver._key_metric_checkpoint is not None and saver.save_dir == str(tmp_path)  # the best model's saver
    assert [type(h) for h in validation_handlers(network, tmp_path, tmp_path, ["EX", "HE"])] == kinds[1:]


def test_validation_main_rank_handlers_write_overlays_and_log_to_the_training_run(tmp_path):
    overlay, mlflow = validation_main_rank_handlers(
        tmp_path, ["EX"], [1.0, 2.0, 3.0], [4.0, 5.0, 6.0], "sqlite:///x.db", "exp", "run", num_overlays=2
    )
    assert isinstance(overlay, ValidationOverlayHandler) and overlay.num_images == 2
    assert overlay.output_dir == tmp_path / "overlays"
    assert isinstance(mlflow, MLFlowHandler) and mlflow.run_name == "run" and not mlflow.iteration_log
