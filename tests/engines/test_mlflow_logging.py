"""MLflowModelHandler: a bundle root without configs is refused when training starts, before the first epoch."""

from __future__ import annotations

import pytest
from ignite.engine import Engine

from monai_exudate.engines import MLflowModelHandler


def _engine(epochs: list[int]) -> Engine:
    engine = Engine(lambda engine, batch: epochs.append(engine.state.epoch))
    return engine


def test_missing_configs_folder_is_refused_before_the_first_epoch(tmp_path):
    trained: list[int] = []
    engine = _engine(trained)
    handler = MLflowModelHandler(mlflow_handler=None, bundle_root=tmp_path, ckpt_dir=tmp_path / "models")
    handler.attach(engine)  # parsing a config with such a root stays possible
    with pytest.raises(ValueError, match=r"has no 'configs' folder.*--mlflow_log_model false") as failure:
        engine.run([0, 1], max_epochs=1)
    assert str(tmp_path) in str(failure.value)
    assert trained == []


def test_bundle_root_with_configs_passes_the_check_and_logging_off_skips_it(tmp_path):
    (tmp_path / "configs").mkdir()
    MLflowModelHandler(mlflow_handler=None, bundle_root=tmp_path, ckpt_dir=tmp_path / "models").check_bundle_root()
    trained: list[int] = []
    engine = _engine(trained)
    MLflowModelHandler(None, tmp_path / "elsewhere", tmp_path / "models", enabled=False).attach(engine)
    engine.run([0, 1], max_epochs=1)
    assert trained == [1, 1]
