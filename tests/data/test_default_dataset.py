"""The embedded default dataset: generated once, regenerated on new settings, never written over other data."""

from __future__ import annotations

import pytest

from monai_exudate.data.default_dataset import MARKER, ensure_synthetic_dataset, resolve_dataset_root


def test_generated_once_then_reused(tmp_path):
    root = tmp_path / "synth"
    ensure_synthetic_dataset(root, num=3, size=(64, 48))
    image = next(root.rglob("IDRiD_01.jpg"))
    mtime = image.stat().st_mtime_ns
    ensure_synthetic_dataset(root, num=3, size=(64, 48))
    assert image.stat().st_mtime_ns == mtime and (root / MARKER).is_file()


def test_refuses_a_folder_with_other_data(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"real data")
    with pytest.raises(FileExistsError, match="refusing"):
        ensure_synthetic_dataset(tmp_path, num=3, size=(64, 48))
    assert [p.name for p in tmp_path.iterdir()] == ["photo.jpg"]


@pytest.mark.parametrize("value", ["false", "False", "0", 0, False, "no"])
def test_synthetic_off_uses_the_folder_as_is(tmp_path, value):
    assert resolve_dataset_root(tmp_path, value) == str(tmp_path)
    assert not list(tmp_path.iterdir())
    with pytest.raises(FileNotFoundError, match="dataset_dir not found"):
        resolve_dataset_root(tmp_path / "absent", value)
