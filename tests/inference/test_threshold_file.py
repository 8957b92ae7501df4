"""The stored operating threshold read back: its values, its map settings, and a clear error for a bad file."""

from __future__ import annotations

import json

import pytest

from monai_exudate.inference import load_operating_threshold, recorded_map_setting


def test_load_operating_threshold_defaults_and_rejects_bad_files(tmp_path):
    assert load_operating_threshold(tmp_path / "missing.json", 0.5) == 0.5
    assert load_operating_threshold(None, 0.4) == 0.4
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"thresholds": {"EX": 0.31}}))
    assert load_operating_threshold(good) == pytest.approx(0.31)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_operating_threshold(bad)
    bad.write_text(json.dumps({"thresholds": {"EX": 3}}))
    with pytest.raises(ValueError, match="bad.json"):
        load_operating_threshold(bad)


def test_recorded_map_setting_reads_the_validation_map_and_defaults_without_a_record(tmp_path):
    path = tmp_path / "threshold.json"
    assert recorded_map_setting(path, "tta_flip_axes", []) == []  # no file
    path.write_text(json.dumps({"thresholds": {"EX": 0.4}}))  # a file from before the record
    assert recorded_map_setting(path, "tta_flip_axes", []) == []
    path.write_text(json.dumps({"thresholds": {"EX": 0.4}, "map_settings": {"tta_flip_axes": [0]}}))
    assert recorded_map_setting(path, "tta_flip_axes", []) == [0]
    assert recorded_map_setting(path, "fusion", "logits") == "logits"
    path.write_text(json.dumps({"thresholds": {"EX": 0.4}, "map_settings": [0]}))
    with pytest.raises(ValueError, match="threshold.json: map_settings"):
        recorded_map_setting(path, "tta_flip_axes", [])
