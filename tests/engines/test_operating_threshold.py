"""Operating threshold: F-maximising level from the validation histograms, stored beside the model, applied again."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from monai_exudate.engines import OperatingThresholdHandler
from monai_exudate.inference import load_operating_threshold
from monai_exudate.metrics import counts_at_threshold, f_maximising_threshold, pixel_histograms, pixel_scores


def _hist(probs: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    hist = pixel_histograms(probs, target).numpy()
    return hist[0, 1], hist[0, 0]


def test_f_maximising_threshold_beats_every_level_and_splits_levels():
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(1, 1, 64, 64, generator=g) < 0.1).float()
    probs = (0.3 * target + 0.5 * torch.rand(1, 1, 64, 64, generator=g)).clamp(0, 1)
    pos, neg = _hist(probs, target)
    threshold, f = f_maximising_threshold(pos, neg)
    best = max(pixel_scores(*counts_at_threshold(pos, neg, k / 255))["f"] for k in range(255))
    assert f == pytest.approx(best)
    assert pixel_scores(*counts_at_threshold(pos, neg, threshold))["f"] == pytest.approx(f)
    assert (threshold * 255) % 1 == pytest.approx(0.5)  # mid-way between two 8-bit levels


def test_f_maximising_threshold_of_a_separable_map_gives_f_one_and_empty_truth_gives_half():
    target = torch.zeros(1, 1, 8, 8)
    target[..., :2, :] = 1
    probs = 0.2 + 0.3 * target  # positives at 0.5, negatives at 0.2
    threshold, f = f_maximising_threshold(*_hist(probs, target))
    assert f == pytest.approx(1.0) and 0.2 < threshold <= 0.5  # the cut just below the positive level
    assert f_maximising_threshold(*_hist(probs, torch.zeros_like(target))) == (0.5, 0.0)
    with pytest.raises(ValueError, match="histograms"):
        f_maximising_threshold(np.zeros(4), np.zeros(5))


def _engine(epoch: int, best_epoch: int, pred: torch.Tensor, label: torch.Tensor):
    state = types.SimpleNamespace(epoch=epoch, best_metric_epoch=best_epoch, best_metric=0.5, metrics={},
                                  output=[{"pred": pred, "label": label}])  # fmt: skip
    return types.SimpleNamespace(state=state)


def test_handler_writes_the_threshold_only_for_the_best_validation_and_applies_it(tmp_path):
    path = tmp_path / "threshold.json"
    target = torch.zeros(1, 8, 8)
    target[:, :3] = 1
    pred = 0.1 + 0.2 * target
    select = OperatingThresholdHandler(path, ["EX"])
    engine = _engine(2, 2, pred, target)
    select.histograms.iteration_completed(engine)
    select.complete(engine)
    stored = json.loads(path.read_text())
    assert stored["epoch"] == 2 and 0.1 < stored["thresholds"]["EX"] <= 0.3
    assert engine.state.metrics["EX_f_at_threshold"] == pytest.approx(1.0)
    assert engine.state.metrics["EX_threshold"] == stored["thresholds"]["EX"]

    later = _engine(3, 2, 0.5 * torch.ones_like(pred), target)  # not the best epoch: the file is kept
    select.histograms.reset()
    select.histograms.iteration_completed(later)
    select.complete(later)
    assert json.loads(path.read_text()) == stored

    apply = OperatingThresholdHandler(path, ["EX"], mode="apply")
    check = _engine(1, -1, pred, target)
    apply.histograms.iteration_completed(check)
    apply.complete(check)
    assert check.state.metrics["EX_threshold"] == stored["thresholds"]["EX"]
    assert check.state.metrics["EX_f_at_threshold"] == pytest.approx(1.0)


def test_an_unknown_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        OperatingThresholdHandler(tmp_path / "threshold.json", mode="choose")


def test_the_map_settings_are_stored_with_the_threshold_and_a_differing_run_is_warned(tmp_path, caplog):
    path = tmp_path / "threshold.json"
    target = torch.zeros(1, 8, 8)
    target[:, :3] = 1
    pred = 0.1 + 0.2 * target
    chosen_on = {"fusion": "logits", "tta_flip_axes": (0,)}
    select = OperatingThresholdHandler(path, ["EX"], map_settings=chosen_on)
    engine = _engine(1, 1, pred, target)
    select.histograms.iteration_completed(engine)
    select.complete(engine)
    stored = json.loads(path.read_text())
    assert stored["map_settings"] == {"fusion": "logits", "tta_flip_axes": [0]}

    with caplog.at_level("WARNING"):
        assert load_operating_threshold(path, map_settings={"fusion": "logits", "tta_flip_axes": [0]}) == pytest.approx(
            stored["thresholds"]["EX"]
        )
        load_operating_threshold(path)  # no settings given: nothing to compare
    assert not caplog.records

    single_pass = {"fusion": "logits", "tta_flip_axes": []}
    apply = OperatingThresholdHandler(path, ["EX"], mode="apply", map_settings=single_pass)
    check = _engine(1, -1, pred, target)
    apply.histograms.iteration_completed(check)
    with caplog.at_level("WARNING"):
        apply.complete(check)
    assert check.state.metrics["EX_threshold"] == stored["thresholds"]["EX"]  # applied all the same
    (message,) = [r.getMessage() for r in caplog.records]
    assert "threshold.json" in message and "tta_flip_axes [] (chosen with [0])" in message and "fusion" not in message


@pytest.mark.parametrize("config", ["inference.json", "evaluate.json"])
def test_evaluation_and_inference_take_their_flips_from_the_threshold_record(tmp_path, config):
    """A model validated on flip-averaged maps is run the same way without the training overlay."""
    folder = Path(__file__).resolve().parents[2] / "bundles" / "exudate_dsm" / "configs"
    record = {"thresholds": {"EX": 0.4}, "map_settings": {"fusion": "logits", "tta_flip_axes": [0]}}
    (tmp_path / "threshold.json").write_text(json.dumps(record))
    parser = ConfigParser()
    parser.read_config([str(folder / c) for c in ([config] if config == "inference.json" else ["train.json", config])])
    parser.update({"ckpt_dir": str(tmp_path), "bundle_root": str(tmp_path)})
    assert parser.get_parsed_content("tta_flip_axes") == [0]
    parser.update({"tta_flip_axes": []})  # the command line still decides
    assert parser.get_parsed_content("tta_flip_axes") == []


@pytest.mark.parametrize("config_name", ["train.json", "evaluate.json"])
def test_the_threshold_is_chosen_before_the_stats_handler_logs_it(config_name, tmp_path):
    """Handlers run in list order at EPOCH_COMPLETED: after the stats handler, its log would show the last
    validation's threshold instead of this one's."""
    from monai.bundle import ConfigParser

    folder = Path(__file__).resolve().parents[2] / "bundles" / "exudate_dsm" / "configs"
    config = json.loads((folder / config_name).read_text())
    if config_name == "train.json":  # the validation handlers both bundles build, in their order
        parser = ConfigParser(config)
        parser.update({"network": "$torch.nn.Linear(1, 1)", "ckpt_dir": str(tmp_path), "output_dir": str(tmp_path)})
        targets = [type(h).__name__ for h in parser.get_parsed_content("validate#handlers")]
    else:
        targets = [h["_target_"].split(".")[-1] for h in config["validate#handlers"]]
    assert targets.index("OperatingThresholdHandler") < targets.index("StatsHandler")
