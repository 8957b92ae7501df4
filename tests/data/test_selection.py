"""The authors' training-set rule: photographs whose masks hold no lesion pixel are left out when asked."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from monai_exudate.data.selection import has_lesion_pixels, training_items


def _items(folder) -> list[dict]:
    """Three photographs: an IDRiD-style red TIF mask with one lesion, an all-black mask, and no mask at all."""
    red = np.zeros((20, 30, 3), np.uint8)
    red[5:7, 8:10, 0] = 255
    Image.fromarray(red).save(folder / "a_EX.tif")
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(folder / "b_EX.png")
    return [
        {"image": "a.jpg", "EX": str(folder / "a_EX.tif")},
        {"image": "b.jpg", "EX": str(folder / "b_EX.png")},
        {"image": "c.jpg", "EX": None},
    ]


def test_lesion_free_photographs_are_dropped_only_when_asked(tmp_path, caplog):
    items = _items(tmp_path)
    assert [has_lesion_pixels(i, ["EX"]) for i in items] == [True, False, False]
    assert training_items(items, ["EX"], "false") == items
    with caplog.at_level(logging.INFO):
        assert training_items(items, ["EX"], True) == items[:1]
    assert "2 of 3 training photographs" in caplog.text


def test_nothing_left_or_a_bad_switch_is_refused_by_name(tmp_path):
    items = _items(tmp_path)[1:]
    with pytest.raises(ValueError, match="drop_lesion_free"):
        training_items(items, ["EX"], True)
    with pytest.raises(ValueError, match="drop_lesion_free"):
        training_items(items, ["EX"], "perhaps")
