"""Settings a run was given that no config of it defines are refused before any work, with the closest names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from monai.bundle import run

from monai_exudate.bundle import root_cause
from monai_exudate.bundle.overrides import RunSettings, SettingsError, check_run_settings, setting_problems

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "exudate_dsm" / "configs"
CONFIG = {
    "max_epochs": 3,
    "fov_crop": True,
    "train": {"dataloader": {"_target_": "DataLoader", "shuffle": True}, "handlers": [{"_target_": "X"}]},
}


def test_known_settings_and_paths_pass():
    overrides = {"max_epochs": 2, "fov_crop": "no", "train#dataloader#shuffle": False, "train#handlers#0#x": 1}
    assert setting_problems(overrides, CONFIG) == []
    assert setting_problems({"train#dataloader#pin_memory": True}, CONFIG) == []  # a new component argument


def test_misspelt_top_level_setting_names_the_closest():
    (problem,) = setting_problems({"max_epoch": 2}, CONFIG)
    assert problem == "'max_epoch' is not defined by any config of the run; closest: max_epochs"


def test_misspelt_path_names_the_closest_item():
    (problem,) = setting_problems({"train#dataloder#shuffle": False}, CONFIG)
    assert "'train#dataloder#shuffle'" in problem and "closest: train#dataloader" in problem
    (problem,) = setting_problems({"train#handlers#3#x": 1}, CONFIG)
    assert "'3' is not defined in 'train#handlers'" in problem


SECTIONS = {
    "seed": 0,
    "model_settings": {"net_width": 16, "dual": True},
    "training_recipe": {"max_epochs": 3},
    "network_def": {"_target_": "Net", "settings": "@model_settings"},
}


def test_settings_in_sections_are_given_by_their_path():
    assert setting_problems({"model_settings#net_width": 8, "training_recipe#max_epochs": 1}, SECTIONS) == []
    assert setting_problems({"model_settings#dual": False, "network_def#extra": 1}, SECTIONS) == []
    (problem,) = setting_problems({"net_width": 8}, SECTIONS)  # the name without its section
    assert problem == "'net_width' is not a top-level setting: give it as model_settings#net_width"
    (problem,) = setting_problems({"max_epoch": 8}, SECTIONS)
    assert problem.endswith("closest: training_recipe#max_epochs")
    # a section is not a component: a misspelt name in it is refused, never added
    (problem,) = setting_problems({"model_settings#net_widht": 8}, SECTIONS)
    assert "'net_widht' is not defined in 'model_settings'; closest: model_settings#net_width" in problem
    # a switch in a section reads like a top-level one (the recipes parse it)
    assert setting_problems({"model_settings#dual": "no"}, SECTIONS) == []
    (problem,) = setting_problems({"model_settings#dual": "maybe"}, SECTIONS)
    assert "'model_settings#dual' must be true or false" in problem


def test_bad_switch_value_and_extra_names():
    (problem,) = setting_problems({"fov_crop": "maybe"}, CONFIG)
    assert "'fov_crop' must be true or false" in problem and "'maybe'" in problem
    (problem,) = setting_problems({"train#dataloader#shuffle": "false"}, CONFIG)
    assert "give it as True or False, got 'false'" in problem
    assert setting_problems({"save_execute_config": False}, CONFIG, extra_names=["save_execute_config"]) == []


def test_every_problem_in_one_message(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps(CONFIG))
    settings = RunSettings(config_files=[str(config)], overrides={"max_epoch": 1, "fov_crp": True})
    with pytest.raises(SettingsError, match="2 setting") as info:
        check_run_settings(settings)
    assert "closest: max_epochs" in str(info.value) and "closest: fov_crop" in str(info.value)
    check_run_settings(RunSettings(config_files=[str(config)], overrides={"max_epochs": 1}))


def test_python_run_refuses_a_misspelt_setting(tmp_path):
    with pytest.raises(RuntimeError) as info:
        run(
            "training",
            config_file=str(CONFIGS / "train.json"),
            meta_file=str(CONFIGS / "metadata.json"),
            output_dir=str(tmp_path / "out"),
            dataset_dir=str(tmp_path / "data"),
            max_epoch=2,
        )
    cause = root_cause(info.value)
    assert isinstance(cause, SettingsError) and "closest: training_recipe#max_epochs" in str(cause)
    assert not (tmp_path / "out").exists() and not (tmp_path / "data").exists()
