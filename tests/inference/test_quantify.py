"""Lesion quantification, the summary table and the output writers on hand-built masks and images."""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage as ndi

from monai_exudate.inference.quantify import (
    MEASUREMENT_FIELDS,
    SUMMARY_FIELDS,
    field_of_view_pixels,
    lesion_statistics,
    summary_rows,
)
from monai_exudate.inference.summary import SummaryTable, model_columns, table_name
from monai_exudate.inference.writers import (
    LESION_COLOURS,
    OutputLayout,
    encode_nifti,
    encode_png,
    lesion_colours,
    paint_overlay,
    read_csv,
)
from monai_exudate.utils.atomic import atomic_write_bytes, remove_partial_files, write_csv_atomic


def _exudate_mask() -> np.ndarray:
    """64 x 96 mask: a 3x3 square, a diagonal pair (one 8-connected lesion) and a single pixel."""
    mask = np.zeros((64, 96), bool)
    mask[20:23, 30:33] = True
    mask[40, 50] = mask[41, 51] = True
    mask[30, 70] = True
    return mask


def test_lesion_statistics_counts_eight_connected_components() -> None:
    assert lesion_statistics(_exudate_mask()) == {"area_px": 12, "num_lesions": 3, "largest_lesion_px": 9}
    assert lesion_statistics(np.zeros((5, 7), bool)) == {"area_px": 0, "num_lesions": 0, "largest_lesion_px": 0}
    with pytest.raises(ValueError, match="2-D"):
        lesion_statistics(np.zeros((1, 5, 7), bool))


def test_banded_labelling_matches_a_full_label() -> None:
    rng = np.random.default_rng(0)
    for trial in range(100):
        mask = rng.random(tuple(rng.integers(1, 30, 2))) < rng.random() * 0.6
        mask[rng.random(mask.shape[0]) < 0.4 * (trial % 2)] = False  # empty rows split the mask into bands
        labels, count = ndi.label(mask, structure=np.ones((3, 3), bool))
        largest = int(np.bincount(labels.ravel())[1:].max()) if count else 0
        expected = {"area_px": int(mask.sum()), "num_lesions": count, "largest_lesion_px": largest}
        assert lesion_statistics(mask) == expected


def test_summary_rows_relative_to_field_of_view() -> None:
    he = np.zeros((64, 96), bool)
    he[45:47, 20:25] = True
    rows = summary_rows("a.png", np.stack([_exudate_mask(), he]), ["EX", "HE"], fov_pixels=3840)
    assert [tuple(r) for r in rows] == [MEASUREMENT_FIELDS] * 2
    assert rows[0] == {
        "image": "a.png",
        "lesion": "EX",
        "area_px": 12,
        "area_pct_fov": 0.3125,
        "num_lesions": 3,
        "largest_lesion_px": 9,
    }
    assert rows[1]["area_px"] == 10 and rows[1]["area_pct_fov"] == pytest.approx(100 * 10 / 3840, abs=1e-6)
    assert (rows[1]["num_lesions"], rows[1]["largest_lesion_px"]) == (1, 10)
    with pytest.raises(ValueError, match="lesion names"):
        summary_rows("a.png", np.stack([he]), ["EX", "HE"], 10)
    with pytest.raises(ValueError, match="fov_pixels"):
        summary_rows("a.png", np.stack([he]), ["HE"], 0)


def test_field_of_view_pixels_of_a_bright_rectangle() -> None:
    image = torch.zeros(3, 96, 64, dtype=torch.uint8)  # MONAI order (C, W, H)
    image[0, 10:90, 8:56] = 150
    assert field_of_view_pixels(image) == 80 * 48


def test_summary_table_saves_reloads_and_replaces_rows(tmp_path) -> None:
    path = tmp_path / "summary.csv"
    table = SummaryTable(path)
    rows_b = summary_rows("b.png", _exudate_mask()[None], ["EX"], 3840)
    table.update("b.png", rows_b)
    table.update("a.png", summary_rows("a.png", np.zeros((1, 4, 4), bool), ["EX"], 16))
    table.flush()
    loaded = read_csv(path, SUMMARY_FIELDS)
    assert [r["image"] for r in loaded] == ["a.png", "b.png"]  # sorted by image
    assert loaded[1]["area_pct_fov"] == "0.3125" and loaded[1]["num_lesions"] == "3"
    again = SummaryTable(path)
    assert again.lesions_of("b.png") == ["EX"] and again.lesions_of("c.png") == []
    again.remove("a.png")
    again.flush()
    assert [r["image"] for r in read_csv(path, SUMMARY_FIELDS)] == ["b.png"]
    assert not list(tmp_path.glob(".*"))  # no temporary file left


def test_summary_tables_of_earlier_versions_still_load(tmp_path) -> None:
    path = tmp_path / "summary.csv"
    write_csv_atomic(path, MEASUREMENT_FIELDS, summary_rows("b.png", _exudate_mask()[None], ["EX"], 3840))
    table = SummaryTable(path)  # written before the run columns existed: they read as empty
    assert table.lesions_of("b.png") == ["EX"] and table.rows()[0]["model"] == ""
    path.write_text("image,area\nb.png,3\n")
    with pytest.raises(ValueError, match=r"summary\.csv: expected columns"):
        SummaryTable(path)


def test_table_names_and_model_columns(tmp_path) -> None:
    (tmp_path / "eyes" / "left").mkdir(parents=True)
    photo = tmp_path / "eyes" / "left" / "a.jpg"
    photo.write_bytes(b"")
    assert table_name(photo, tmp_path / "eyes") == "left/a.jpg"
    assert table_name(photo, photo) == "a.jpg"  # a single file: named in its folder
    assert table_name(photo, tmp_path / "other") == str(photo) and table_name(photo, None) == str(photo)
    origin = {"known": True, "synthetic": False, "trained_on": "/data/IDRiD"}
    provenance = {"bundle": "exudate_dsm", "version": "0.6.0", "model": origin}
    assert model_columns(provenance, "/m/model.pt") == {
        "model": "exudate_dsm 0.6.0 model.pt",
        "model_origin": "/data/IDRiD",
    }
    assert model_columns({"model": {"known": True, "synthetic": True}}, None)["model_origin"] == (
        "synthetic demo set"
    )
    assert model_columns({}, None) == {"model": "unknown", "model_origin": "unknown"}


def test_summary_table_rejects_a_foreign_csv(tmp_path) -> None:
    path = tmp_path / "summary.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="summary.csv"):
        SummaryTable(path)


def test_atomic_writes_leave_no_partial_file(tmp_path) -> None:
    target = atomic_write_bytes(tmp_path / "sub" / "x.bin", b"abc")
    assert target.read_bytes() == b"abc"
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.bin"]
    (tmp_path / "sub" / ".x.bin.0123.partial").write_bytes(b"ab")  # as an interrupted run leaves it
    assert remove_partial_files(tmp_path / "sub") == 1
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.bin"]
    write_csv_atomic(tmp_path / "t.csv", ["image", "reason"], [{"image": "a,b.jpg", "reason": 'bad "x"'}])
    assert read_csv(tmp_path / "t.csv", ["image", "reason"]) == [{"image": "a,b.jpg", "reason": 'bad "x"'}]


def test_overlay_blends_the_lesion_colours_only_on_lesions() -> None:
    photo = np.full((6, 4, 3), 100, np.uint8).transpose(1, 0, 2)  # a transposed view, as the runner passes it
    masks = np.zeros((2, 4, 6), bool)
    masks[0, 1, 2] = True
    masks[1, 3, 5] = True
    colours = lesion_colours(["EX", "XYZ"])
    assert colours[0] == LESION_COLOURS["EX"] and colours[1] not in LESION_COLOURS.values()
    out = paint_overlay(photo, masks, colours, alpha=0.5)
    expected = photo.copy()
    expected[1, 2] = np.rint(0.5 * 100 + 0.5 * np.asarray(colours[0], float))
    expected[3, 5] = np.rint(0.5 * 100 + 0.5 * np.asarray(colours[1], float))
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(photo, np.full((4, 6, 3), 100))  # the photo itself is untouched
    with pytest.raises(ValueError, match="alpha"):
        paint_overlay(photo, masks, colours, alpha=1.5)


def test_png_encoder_round_trips_through_pil() -> None:
    rng = np.random.default_rng(1)
    for shape in [(1, 1), (5, 1), (64, 96), (1, 9, 3), (64, 96, 3)]:
        array = rng.integers(0, 256, shape, dtype=np.uint8)
        for view in (array, np.ascontiguousarray(array.swapaxes(0, 1)).swapaxes(0, 1)):  # C and strided layouts
            data = encode_png(view)
            Image.open(io.BytesIO(data)).verify()  # chunk CRCs and structure
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), array)
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        encode_png(np.zeros((4, 4, 4), np.uint8))


def test_nifti_holds_width_height_channel_probabilities() -> None:
    prob = np.random.default_rng(0).random((2, 5, 7)).astype(np.float32)  # (C, H, W)
    image = nib.Nifti1Image.from_bytes(gzip.decompress(encode_nifti(prob, ["EX", "HE"])))
    data = np.asarray(image.dataobj)
    assert data.shape == (7, 5, 2)
    np.testing.assert_array_equal(data[:, :, 1], prob[1].T)
    assert b"EX,HE" in image.header["descrip"].tobytes()


def test_output_layout_names_and_checks_formats(tmp_path) -> None:
    layout = OutputLayout(tmp_path, ["EX", "HE"], formats=("prob", "overlay"), nifti=True)
    assert [p.name for p in layout.expected("im")] == [
        "im_EX_prob.png",
        "im_HE_prob.png",
        "im_overlay.png",
        "im_prob.nii.gz",
    ]
    assert not layout.complete("im")
    with pytest.raises(ValueError, match="formats"):
        OutputLayout(tmp_path, ["EX"], formats=("prob", "jpeg"))
