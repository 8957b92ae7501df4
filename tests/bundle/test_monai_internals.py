"""With a MONAI whose internals moved, a run still starts and a warning names the start-up feature that is off."""

from __future__ import annotations

import functools
import inspect
import json
import sys
import warnings
from pathlib import Path

import monai.bundle
import pytest
from monai.bundle import run, scripts
from monai.bundle.config_item import ConfigExpression

from monai_exudate.bundle import SettingsError, root_cause
from monai_exudate.bundle.errors import error_summary_works, install_error_summary
from monai_exudate.bundle.monai_internals import (
    ERROR_SUMMARY,
    SETTINGS_CHECK,
    MonaiInternalsWarning,
    create_workflow_call,
)


def _config(tmp_path: Path) -> Path:
    """A bundle config that starts like the package's bundles and records the epochs it was given."""
    config = {
        "imports": ["$import monai_exudate"],
        "max_epochs": 1,
        "out": str(tmp_path / "ran.txt"),
        "initialize": ["$monai_exudate.bundle.start_run()"],
        "run": ["$open(@out, 'w').write(str(@max_epochs))"],
    }
    path = tmp_path / "train.json"
    path.write_text(json.dumps(config))
    return path


def _internals_warnings(record: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in record if issubclass(w.category, MonaiInternalsWarning)]


def test_installed_monai_gives_every_feature_without_a_warning(tmp_path):
    config = _config(tmp_path)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        run("run", config_file=str(config), logging_file=False, max_epochs=3)
        with pytest.raises(RuntimeError) as info:
            run("run", config_file=str(config), logging_file=False, max_epoch=3)
    assert (tmp_path / "ran.txt").read_text() == "3"
    assert isinstance(root_cause(info.value), SettingsError) and "closest: max_epochs" in str(root_cause(info.value))
    assert error_summary_works()
    assert _internals_warnings(record) == []


@pytest.mark.parametrize("workflow_name", ["ConfigWorkflow", "monai.bundle.workflows.ConfigWorkflow", None])
def test_run_workflow_and_args_file_are_read_as_monai_merges_them(tmp_path, workflow_name):
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"max_epoch": 3, "logging_file": False}))  # misspelt in the defaults file
    with pytest.raises(RuntimeError) as info:
        monai.bundle.run_workflow(workflow_name, args_file=str(args_file), config_file=str(_config(tmp_path)))
    assert "'max_epoch' is not defined" in str(root_cause(info.value))
    args_file.write_text(json.dumps({"max_epochs": 2, "logging_file": False}))
    monai.bundle.run_workflow(workflow_name, args_file=str(args_file), config_file=str(tmp_path / "train.json"))
    assert (tmp_path / "ran.txt").read_text() == "2"


def _misspelt_run(tmp_path: Path) -> list[str]:
    """Run the config with a misspelt setting; return the package's warnings (the run must still finish)."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        run("run", config_file=str(_config(tmp_path)), logging_file=False, max_epoch=3)
    assert (tmp_path / "ran.txt").read_text() == "1"
    return _internals_warnings(record)


def test_a_decorated_create_workflow_is_looked_through(tmp_path, monkeypatch):
    original = monai.bundle.create_workflow
    decorated = functools.wraps(original)(lambda *args, **kwargs: original(*args, **kwargs))
    monkeypatch.setattr(monai.bundle, "create_workflow", decorated)
    monkeypatch.setattr(scripts, "create_workflow", decorated)
    with pytest.raises(RuntimeError) as info:
        run("run", config_file=str(_config(tmp_path)), logging_file=False, max_epoch=3)
    assert isinstance(root_cause(info.value), SettingsError)


def test_renamed_create_workflow_parameters_turn_the_check_off(tmp_path, monkeypatch):
    original = monai.bundle.create_workflow

    def create_workflow(name=None, **overrides):  # config_file and args_file are no parameters of their own
        return original(name, **overrides)

    monkeypatch.setattr(monai.bundle, "create_workflow", create_workflow)
    monkeypatch.setattr(scripts, "create_workflow", create_workflow)
    (message,) = set(_misspelt_run(tmp_path))  # misspelt, yet it runs
    assert message.startswith(f"{SETTINGS_CHECK} is off: monai.bundle.create_workflow(name=None")
    assert "no longer takes workflow_name, config_file, args_file and **kwargs" in message and "goes on" in message


def test_a_frame_without_the_parameters_turns_the_check_off(tmp_path, monkeypatch):
    original = monai.bundle.create_workflow

    def create_workflow(*args, **kwargs):  # claims the public signature, holds other locals
        return original(*args, **kwargs)

    create_workflow.__signature__ = inspect.signature(original)
    monkeypatch.setattr(monai.bundle, "create_workflow", create_workflow)
    monkeypatch.setattr(scripts, "create_workflow", create_workflow)
    (message,) = set(_misspelt_run(tmp_path))
    assert message.startswith(f"{SETTINGS_CHECK} is off: the frame of monai.bundle.create_workflow lacks")
    assert "['workflow_name', 'config_file', 'args_file']" in message


def test_create_workflow_gone_turns_the_check_off(tmp_path, monkeypatch):
    monkeypatch.delattr(monai.bundle, "create_workflow")  # scripts.run still has its own
    (message,) = set(_misspelt_run(tmp_path))
    assert message.startswith(f"{SETTINGS_CHECK} is off: monai.bundle.create_workflow cannot be read")


def test_a_run_that_skips_create_workflow_is_named(monkeypatch):
    namespace = {"__name__": "monai.bundle.scripts", "create_workflow_call": create_workflow_call}
    exec("def run():\n    return create_workflow_call()", namespace)  # a MONAI whose run builds workflows itself
    with pytest.warns(MonaiInternalsWarning, match="no longer goes through monai.bundle.create_workflow"):
        assert namespace["run"]() is None


def test_a_hand_built_workflow_or_parser_is_not_a_run():
    with warnings.catch_warnings():
        warnings.simplefilter("error", MonaiInternalsWarning)
        assert create_workflow_call() is None


def test_changed_config_wrappers_turn_the_error_summary_off(tmp_path, monkeypatch):
    original = ConfigExpression.evaluate

    def evaluate(self, globals=None, locals=None):
        return original(self, globals, locals)  # the wrapper's code is no longer ConfigExpression.evaluate's

    monkeypatch.setattr(ConfigExpression, "evaluate", evaluate)
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    assert not error_summary_works()
    with pytest.warns(MonaiInternalsWarning) as record:
        run("run", config_file=str(_config(tmp_path)), logging_file=False, max_epochs=2)
    assert (tmp_path / "ran.txt").read_text() == "2"
    (message,) = set(_internals_warnings(record.list))
    assert message.startswith(f"{ERROR_SUMMARY} is off: ")
    assert sys.excepthook is sys.__excepthook__  # no hook that would print a misleading summary
    with pytest.warns(MonaiInternalsWarning, match="summary"):
        install_error_summary()  # a second start-up warns again rather than failing
