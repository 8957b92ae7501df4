"""bench/lookalikes.py: false positives of a model's maps against exudate masks, and where the optic disc is."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_lookalikes", REPO / "bench" / "lookalikes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_false_positives_largest_component_and_disc_region(tmp_path):
    bench = _bench()
    h, w = 640, 960  # disc_centre works on a 1/16 thumbnail: photographs are large
    photo = np.full((h, w, 3), 60, np.uint8)
    photo[280:360, 160:240] = 250  # the brightest blob: the "optic disc", centred at x 200/960, y 320/640
    Image.fromarray(photo).save(tmp_path / "p.jpg")
    truth = np.zeros((h, w), np.uint8)
    truth[50:53, 600:603] = 255  # one exudate, 9 pixels
    Image.fromarray(truth).save(tmp_path / "p_EX.tif")
    mask = truth.copy()
    mask[300:306, 190:196] = 255  # a 36-pixel false positive on the disc
    mask[500, 800] = 255  # and one pixel elsewhere
    out = tmp_path / "out"
    out.mkdir()
    Image.fromarray(mask).save(out / "p_EX_mask.png")
    Image.fromarray(np.where(mask > 0, 230, 10).astype(np.uint8)).save(out / "p_EX_prob.png")
    x, y = bench.disc_centre(str(tmp_path / "p.jpg"))
    assert x == pytest.approx(200 / 960, abs=0.03) and y == pytest.approx(320 / 640, abs=0.05)
    figures = bench.score([{"image": str(tmp_path / "p.jpg"), "EX": str(tmp_path / "p_EX.tif")}], out)
    assert figures["fp_area_px"] == 37 and figures["fp_in_disc_px"] == 36
    assert figures["largest_fp"]["area_px"] == 36 and figures["largest_fp"]["image"] == "p"
    # at 0.5 the exudate is found with 37 false-positive pixels: precision 9/46, recall 1
    assert figures["iou_at_0.5"] == pytest.approx(9 / 46, abs=1e-4)
    assert figures["f_at_0.5"] == pytest.approx(18 / 55, abs=1e-4)
    assert "| 37 (" in bench.markdown("m", figures)
