"""bench/failure_modes.py: false marks and misses found by component, and the picture of the largest ones."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from monai_exudate.data.indexers import build_datalist

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_failure_modes", REPO / "bench" / "failure_modes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sample_testing(sample: Path, photo: str) -> dict:
    """A datalist holding one photograph of the IDRiD sample's testing section, paths relative to the sample."""
    entries = build_datalist("idrid", str(sample))["testing"]
    return {"testing": [entry for entry in entries if entry["id"] == photo]}


def test_mistakes_are_components_touching_nothing_on_the_other_side():
    bench = _bench()
    truth = np.zeros((40, 40), dtype=bool)
    predicted = np.zeros_like(truth)
    truth[2:6, 2:6] = True  # found (overlaps a mark): no mistake
    predicted[4:8, 4:8] = True
    truth[20:23, 20:22] = True  # missed, area 6
    predicted[30:35, 2:7] = True  # false mark, area 25
    predicted[10, 10] = predicted[11, 11] = True  # one false mark under 8-connectivity
    found = sorted(bench.mistakes(predicted, truth))
    assert found == [("false mark", 2, (10, 10)), ("false mark", 25, (32, 4)), ("missed", 6, (21, 20))]


def test_picture_of_a_real_photograph_from_the_run_folder(tmp_path, idrid_sample):
    """The command reads the lesions from the run's manifest and tiles the largest false mark and misses."""
    bench = _bench()
    (tmp_path / "manifest.json").write_text(json.dumps({"settings": {"lesions": ["EX"]}}))
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps(_sample_testing(idrid_sample, "IDRiD_55")))
    truth = np.asarray(Image.open(idrid_sample / _sample_testing(idrid_sample, "IDRiD_55")["testing"][0]["EX"])) > 0
    _, lesions = ndimage.label(truth, structure=np.ones((3, 3)))
    predicted = np.zeros_like(truth)
    predicted[100:140, 2000:2060] = True  # a false mark on the background; every exudate missed
    Image.fromarray(predicted.astype(np.uint8) * 255).save(tmp_path / "IDRiD_55_EX_mask.png")
    out = tmp_path / "picture.jpg"
    args = [
        "--outputs",
        str(tmp_path),
        "--datalist",
        str(datalist),
        "--dataset_dir",
        str(idrid_sample),
        "--out",
        str(out),
    ]
    assert bench.main([*args, "--per_lesion", "3", "--tile", "64"]) == 0
    assert lesions >= 3 and Image.open(out).size == (4 * 68, 68)  # one false mark and the three largest misses
    # the tile is the photograph around the false mark, upright: its centre pixel is the photograph's there, half
    # covered by the exudate colour (centre of mass of rows 100-139, columns 2000-2059: (119, 2029))
    items = bench.checked_sections(str(datalist), ["testing"], str(idrid_sample), ["EX"])["testing"]
    tile = np.asarray(bench.failure_picture(tmp_path, items, ["EX"], per_lesion=1, size=64))[:64, :64]
    photo = np.asarray(Image.open(items[0]["image"]).convert("RGB")).astype(np.float32)
    expected = 0.5 * photo[119, 2029] + 0.5 * np.asarray(bench.LESION_COLOURS["EX"], dtype=np.float32)
    np.testing.assert_allclose(tile[32, 32], expected, atol=1.0)
    (tmp_path / "IDRiD_55_EX_mask.png").unlink()
    with pytest.raises(FileNotFoundError, match="IDRiD_55_EX_mask.png"):
        bench.main(args)
