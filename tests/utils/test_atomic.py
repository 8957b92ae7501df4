"""The one atomic-write module: bytes, JSON, images and CSV tables appear whole or not at all."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from monai_exudate.utils.atomic import (
    atomic_save_image,
    atomic_write_bytes,
    atomic_write_json,
    remove_partial_files,
    write_csv_atomic,
)


def test_every_kind_of_file_round_trips_and_leaves_no_temporary_file(tmp_path):
    atomic_write_json({"threshold": np.float32(0.25), "epoch": 3}, tmp_path / "sub" / "a.json")
    assert json.loads((tmp_path / "sub" / "a.json").read_text()) == {"threshold": 0.25, "epoch": 3}
    picture = np.arange(12, dtype=np.uint8).reshape(3, 4)
    atomic_save_image(Image.fromarray(picture), tmp_path / "b.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "b.png")), picture)
    write_csv_atomic(tmp_path / "c.csv", ["image", "area"], [{"image": "x.jpg", "area": 5}])
    assert (tmp_path / "c.csv").read_text() == "image,area\nx.jpg,5\n"
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["a.json", "b.png", "c.csv"]


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_json({"v": 1}, target)
    with pytest.raises(TypeError):
        atomic_write_json({"v": object()}, target)  # not JSON: nothing is written
    assert json.loads(target.read_text()) == {"v": 1}
    (tmp_path / ".a.json.0123456789ab.partial").write_bytes(b"half")  # left by a killed run
    assert remove_partial_files(tmp_path) == 1 and [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert atomic_write_bytes(target, b"{}") == target and target.read_text() == "{}"
