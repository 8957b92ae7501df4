"""Data checks: shape and files, every problem reported at once, each located; training refuses a bad datalist."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from monai_exudate.__main__ import main
from monai_exudate.data.checks import DataCheckError, check_datalist, checked_datalist, checked_sections
from monai_exudate.data.indexers import index_idrid, write_datalist


def _dataset(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    mask = np.zeros((64, 96), dtype=np.uint8)
    mask[10:20, 10:20] = 255
    Image.fromarray(img).save(tmp_path / "good.jpg")
    Image.fromarray(mask).save(tmp_path / "good_EX.png")
    Image.fromarray(img).save(tmp_path / "full.jpg")
    data = (tmp_path / "full.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "notimage.jpg").write_text("hello")
    Image.fromarray(mask[:32]).save(tmp_path / "small_EX.png")
    Image.fromarray(np.tile(np.linspace(0, 255, 96, dtype=np.uint8), (64, 1))).save(tmp_path / "grey_EX.png")
    return {
        "training": [
            {"image": "good.jpg", "EX": "good_EX.png"},
            {"image": "truncated.jpg", "EX": "good_EX.png"},
            {"image": "notimage.jpg", "EX": None},
            {"image": "good.jpg", "EX": "absent_EX.png"},
            {"image": "good.jpg", "EX": "small_EX.png"},
            {"image": "good.jpg", "EX": "grey_EX.png"},
            {"image": "nowhere.jpg", "EX": None},
        ]
    }


def test_every_problem_reported_with_its_file(tmp_path):
    problems = check_datalist(_dataset(tmp_path), tmp_path)
    text = [str(p) for p in problems]
    assert len(problems) == 6
    assert any("truncated.jpg" in t and "truncated" in t for t in text)
    assert any("notimage.jpg" in t and "unreadable" in t for t in text)
    assert any("absent_EX.png" in t and "not found" in t for t in text)
    assert any("small_EX.png" in t and "96x32 but its image is 96x64" in t for t in text)
    assert any("grey_EX.png" in t and "not binary" in t for t in text)
    assert any("nowhere.jpg" in t and "not found" in t for t in text)


def test_training_refuses_bad_datalist_with_same_messages(tmp_path):
    datalist = _dataset(tmp_path)
    with pytest.raises(DataCheckError) as info:
        checked_datalist(datalist, "training", tmp_path, lesions=("EX",))
    assert len(info.value.problems) == 6
    assert "truncated.jpg" in str(info.value) and "grey_EX.png" in str(info.value)
    good = {"training": datalist["training"][:1]}
    assert checked_datalist(good, "training", tmp_path, lesions=("EX",))[0]["image"] == str(tmp_path / "good.jpg")


def test_cli_check_data(tmp_path, capsys):
    path = write_datalist(_dataset(tmp_path), tmp_path / "dl.json")
    assert main(["check-data", str(path), "--dataset-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "6 problem(s) found" in out and "truncated.jpg" in out


def test_idrid_sample_is_clean(idrid_sample):
    assert check_datalist(index_idrid(idrid_sample), idrid_sample, lesions=("EX", "SE")) == []


KNOWN = "training, validation, testing"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            [{"image": "good.jpg"}],
            "a datalist is an object of sections (training, validation, testing), this is a list",
        ),
        (
            {"train": [{"image": "good.jpg"}]},
            "has none of the sections training, validation, testing (it has ['train'])",
        ),
        ({"training": {"image": "good.jpg"}}, "section 'training' is an object, not a list of records"),
        (
            {"training": ["good.jpg"]},
            "section 'training' entry 0 is the string 'good.jpg', not a record like {\"image\": \"a.jpg\"}",
        ),
        ({"training": [{"EX": "good_EX.png"}]}, "section 'training' entry 0 has no 'image'"),
        ({"training": [{"image": 3}]}, "section 'training' entry 0 has 'image' 3, not a path"),
        (
            {"training": [{"image": "good.jpg", "EX": 1}]},
            "section 'training' entry 0 (good.jpg) has 'EX' 1, not a path or null",
        ),
    ],
)
def test_datalists_of_another_shape_are_refused(tmp_path, capsys, content, expected):
    _dataset(tmp_path)
    path = tmp_path / "dl.json"
    path.write_text(json.dumps(content))
    problems = check_datalist(path, tmp_path)
    assert [p.reason for p in problems] == [expected] and problems[0].path == str(path)
    assert main(["check-data", str(path), "--dataset-dir", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert expected in out and "no problems found" not in out
    if isinstance(content, dict) and "training" not in content:
        expected = "has no section 'training' (it has ['train'])"
    with pytest.raises(DataCheckError, match=re.escape(expected)):
        checked_datalist(content, "training", tmp_path, lesions=("EX",))


def test_training_reports_every_section_in_one_message(tmp_path):
    datalist = _dataset(tmp_path)
    datalist["validation"] = [{"image": "nowhere_val.jpg", "EX": None}, {"image": None}]
    datalist["testing"] = []
    with pytest.raises(DataCheckError) as info:
        checked_sections(datalist, ["training", "validation", "testing"], tmp_path, lesions=("EX",))
    text = str(info.value)
    assert len(info.value.problems) == 6 + 3
    assert "'training', 'validation', 'testing'" in text.splitlines()[0]
    assert "truncated.jpg" in text and "nowhere_val.jpg" in text
    assert "section 'validation' entry 1 has 'image' None" in text and "section 'testing' is empty" in text
    good = {"training": datalist["training"][:1], "validation": datalist["training"][:1]}
    loaded = checked_sections(good, ["training", "validation", "training"], tmp_path, lesions=("EX",))
    assert list(loaded) == ["training", "validation"] and loaded["validation"][0]["EX"] == str(tmp_path / "good_EX.png")
    with pytest.raises(DataCheckError, match="has no section 'testing'"):
        checked_sections(good, ["training", "testing"], tmp_path, lesions=("EX",))
