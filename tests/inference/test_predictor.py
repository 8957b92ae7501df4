"""Photographs as the MLflow model and the in-memory predictor receive them: paths, image bytes, arrays."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from monai_exudate.inference.mlflow_pyfunc import photo_inputs
from monai_exudate.inference.predictor import _write_photo, decode_photo


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_paths_bytes_and_arrays_become_the_same_file(tmp_path):
    photo = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    path.write_bytes(_png(photo))
    assert decode_photo(str(path)) == str(path) and decode_photo(path) == str(path)
    assert decode_photo(np.array([str(path)])) == str(path)  # as MLflow's schema enforcement may pass it
    encoded = base64.b64encode(_png(photo)).decode("ascii")
    for given in (encoded, photo, photo.astype(np.int64), photo.tolist()):
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        written = _write_photo(given, folder)
        np.testing.assert_array_equal(np.asarray(Image.open(written).convert("RGB")), photo)
    jpeg = io.BytesIO()
    Image.fromarray(photo).save(jpeg, format="JPEG")
    assert _write_photo(jpeg.getvalue(), tmp_path).endswith("photo.jpg")


def test_bad_photographs_are_refused_with_what_was_wrong(tmp_path):
    with pytest.raises(ValueError, match="not a readable file path nor base64-encoded image bytes"):
        decode_photo("/no/such/photo.jpg")
    with pytest.raises(ValueError, match=r"must be \(H, W, 3\) RGB, got shape \(4, 4\)"):
        decode_photo(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="8-bit RGB values"):
        _write_photo(np.full((4, 4, 3), 0.5), tmp_path)
    with pytest.raises(ValueError, match="not an image file PIL can read"):
        _write_photo(b"not an image", tmp_path)


def test_model_inputs_name_their_photographs():
    assert photo_inputs({"image": ["a.jpg", "b.jpg"]}) == ["a.jpg", "b.jpg"]
    assert photo_inputs("a.jpg") == ["a.jpg"]
    with pytest.raises(ValueError, match="no 'image' entry"):
        photo_inputs({"photo": ["a.jpg"]})
