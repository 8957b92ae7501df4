"""The embedded default dataset: generated once, regenerated on new settings, never written over other data."""

from __future__ import annotations

import pytest

from monai_exudate.data.synthetic import MARKER, ensure_synthetic_dataset, resolve_dataset_dir
from monai_exudate.data.synthetic.render import GENERATOR_VERSION


def test_generated_once_then_reused(tmp_path):
    root = tmp_path / "synth"
    ensure_synthetic_dataset(root, num=3, size=(64, 48))
    image = next(root.rglob("IDRiD_01.jpg"))
    mtime = image.stat().st_mtime_ns
    ensure_synthetic_dataset(root, num=3, size=(64, 48))
    assert image.stat().st_mtime_ns == mtime and (root / MARKER).is_file()


def test_a_set_of_an_older_generator_is_regenerated(tmp_path):
    """A default set generated before the generator last changed is replaced, not trained on as if it were today's."""
    import json

    root = tmp_path / "synth"
    ensure_synthetic_dataset(root, num=3, size=(64, 48))
    marker = json.loads((root / MARKER).read_text())
    assert marker["generator"] == GENERATOR_VERSION
    image = next(root.rglob("IDRiD_01.jpg"))
    fresh = image.read_bytes()
    image.write_bytes(b"an older generator's photograph")
    del marker["generator"]  # what 0.7.0 wrote
    (root / MARKER).write_text(json.dumps(marker))
    ensure_synthetic_dataset(root, num=3, size=(64, 48))
    assert image.read_bytes() == fresh and json.loads((root / MARKER).read_text())["generator"] == GENERATOR_VERSION


def test_refuses_a_folder_with_other_data(tmp_path):
    (tmp_path / "photo.jpg").write_bytes(b"real data")
    with pytest.raises(FileExistsError, match="refusing"):
        ensure_synthetic_dataset(tmp_path, num=3, size=(64, 48))
    assert [p.name for p in tmp_path.iterdir()] == ["photo.jpg"]


@pytest.mark.parametrize("value", ["false", "False", "0", 0, False, "no"])
def test_synthetic_off_uses_the_folder_as_is(tmp_path, value):
    assert resolve_dataset_dir(tmp_path, value) == str(tmp_path)
    assert not list(tmp_path.iterdir())
    with pytest.raises(FileNotFoundError, match="dataset_dir not found"):
        resolve_dataset_dir(tmp_path / "absent", value)


def _generate(folder: str) -> str:
    from monai_exudate.data.synthetic import ensure_synthetic_dataset

    return ensure_synthetic_dataset(folder, "idrid", 2, (64, 48), 0)


def test_processes_starting_together_share_one_generation(tmp_path):
    """The ranks of a torchrun start at once: one generates the set, the others wait and find its marker (before the
    lock, a rank that saw the half-written folder refused it as 'not empty and holds no synthetic dataset')."""
    import multiprocessing

    folder = str(tmp_path / "synthetic")
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        roots = pool.map(_generate, [folder] * 3)
    assert roots == [folder] * 3
    assert (tmp_path / "synthetic" / "synthetic_dataset.json").is_file()
