"""FundusInferenceRunner end to end on tiny photographs: sizes, exact round trips, summary, failures, re-runs."""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.inferers import SimpleInferer
from monai.transforms import (
    Activationsd,
    Compose,
    EnsureTyped,
    InvertibleTransform,
    MapTransform,
    NormalizeIntensityd,
    Resized,
)
from PIL import Image
from torch import nn

from monai_exudate.data.transforms import IMAGENET_MEAN, IMAGENET_STD, FieldOfViewCropd, LoadFundusd, PadToSquared
from monai_exudate.inference import (
    LESION_COLOURS,
    FundusInferenceRunner,
    FuseBranchLogitsd,
    list_inference_inputs,
    load_network_weights,
)
from monai_exudate.networks import build_exudate_network

REPO = Path(__file__).resolve().parents[2]
FOUR_LESIONS = ("EX", "HE", "SE", "MA")
# the probes below return probabilities themselves, so their post-processing passes them through
PROBABILITIES_ALREADY = Compose([])


class ChannelProbe(nn.Module):
    """Probabilities = chosen input channels / 255 (for preprocessing without intensity normalisation)."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, self.channels] / 255.0


class BrightChannels(nn.Module):
    """Probability 1 where a chosen input channel exceeds 200, else 0."""

    def __init__(self, channels: list[int]) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, self.channels] > 200).float()


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Dark frame, bright field of view inset by 4 pixels with a random red channel."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[4:-4, 4:-4, 0] = rng.integers(0, 256, (height - 8, width - 8))
    image[4:-4, 4:-4, 1] = 150
    image[4:-4, 4:-4, 2] = 60
    return image


def _write(path: Path, height: int = 64, width: int = 96, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_photo(height, width, seed)).save(path)
    return path


def _identity_preprocessing() -> Compose:
    """Field-of-view crop and square padding only: the network sees the photograph's own pixel values."""
    return Compose(
        [
            LoadFundusd(lesions=[]),
            FieldOfViewCropd(keys=["image"]),
            PadToSquared(keys=["image"]),
            EnsureTyped(keys="image", dtype=torch.float32),
        ]
    )


def _bundle_preprocessing(size: tuple[int, int] = (64, 64)) -> Compose:
    return Compose(
        [
            LoadFundusd(lesions=[]),
            FieldOfViewCropd(keys=["image"]),
            PadToSquared(keys=["image"]),
            Resized(keys=["image"], spatial_size=size, mode="area"),
            EnsureTyped(keys="image", dtype=torch.float32),
            NormalizeIntensityd(keys="image", subtrahend=IMAGENET_MEAN, divisor=IMAGENET_STD, channel_wise=True),
        ]
    )


def _runner(
    output_dir: Path, network: nn.Module, preprocessing: Compose | None = None, **kwargs
) -> FundusInferenceRunner:
    kwargs.setdefault("lesion_names", ("EX",))
    return FundusInferenceRunner(
        network,
        preprocessing or _identity_preprocessing(),
        kwargs.pop("postprocessing", PROBABILITIES_ALREADY),
        SimpleInferer(),
        output_dir=output_dir,
        progress=False,
        num_writers=2,
        **kwargs,
    )


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _summary(output_dir: Path) -> list[dict[str, str]]:
    with open(output_dir / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


def _assert_no_temporary_files(output_dir: Path) -> None:
    assert not [p.name for p in output_dir.iterdir() if p.name.startswith(".")]


def test_tiny_network_writes_every_output_at_the_photo_size(tmp_path) -> None:
    torch.manual_seed(0)
    network = build_exudate_network("pspnet", dual=True, out_channels=4, width=8, layers=(1, 1, 1, 1)).eval()
    inputs = [
        _write(tmp_path / "in" / "a.jpg", 64, 96),
        _write(tmp_path / "in" / "b.png", 120, 80, seed=1),
        _write(tmp_path / "in" / "c.png", 70, 70, seed=2),
    ]
    out = tmp_path / "out"
    # the exudate bundle's post-processing: fuse the two branches' logits, then the sigmoid
    postprocessing = Compose([FuseBranchLogitsd("pred", num_branches=2), Activationsd("pred", sigmoid=True)])
    runner = _runner(
        out,
        network,
        _bundle_preprocessing(),
        postprocessing=postprocessing,
        lesion_names=FOUR_LESIONS,
        batch_size=2,
        num_workers=1,
        nifti=True,
    )
    report = runner.run(list_inference_inputs(tmp_path / "in"))
    assert (report.processed, report.skipped, report.failed) == (3, 0, [])
    for path in inputs:
        width, height = Image.open(path).size
        for lesion in FOUR_LESIONS:
            assert _read(out / f"{path.stem}_{lesion}_prob.png").shape == (height, width)
            mask = _read(out / f"{path.stem}_{lesion}_mask.png")
            assert mask.shape == (height, width) and set(np.unique(mask)) <= {0, 255}
        assert _read(out / f"{path.stem}_overlay.png").shape == (height, width, 3)
        volume = nib.Nifti1Image.from_bytes(gzip.decompress((out / f"{path.stem}_prob.nii.gz").read_bytes()))
        assert volume.shape == (width, height, 4)
    rows = _summary(out)
    assert [(r["image"], r["lesion"]) for r in rows] == [(str(p), les) for p in inputs for les in FOUR_LESIONS]
    assert (out / "failures.csv").read_text() == "run,image,reason\n"
    _assert_no_temporary_files(out)


def test_probabilities_round_trip_to_the_original_grid(tmp_path) -> None:
    path = _write(tmp_path / "wide.png", 64, 96)
    red = _photo(64, 96)[..., 0]
    out = tmp_path / "out"
    report = _runner(out, ChannelProbe([0, 0]), lesion_names=("EX", "HE"), threshold=0.3).run([str(path)])
    assert report.processed == 1
    # the field of view is the inset rectangle: inside it p = red / 255 exactly, outside the crop it is 0
    np.testing.assert_array_equal(_read(out / "wide_EX_prob.png"), red)
    np.testing.assert_array_equal(_read(out / "wide_HE_prob.png"), red)
    np.testing.assert_array_equal(_read(out / "wide_EX_mask.png"), np.where(red / 255.0 > 0.3, 255, 0))


def _lesion_photo() -> np.ndarray:
    """64 x 96 field of view (rows 8..55, columns 10..89) with EX pixels (green 255) and HE pixels (blue 255)."""
    image = np.zeros((64, 96, 3), np.uint8)
    image[8:56, 10:90] = (150, 100, 50)
    for r, c in [(r, c) for r in range(20, 23) for c in range(30, 33)] + [(40, 50), (41, 51), (30, 70)]:
        image[r, c, 1] = 255
    image[45:47, 20:25, 2] = 255
    return image


def test_summary_and_overlay_of_a_hand_built_case(tmp_path) -> None:
    photo = _lesion_photo()
    Image.fromarray(photo).save(tmp_path / "case.png")
    out = tmp_path / "out"
    runner = _runner(out, BrightChannels([1, 2]), lesion_names=("EX", "HE"), overlay_legend=False)
    runner.run([{"image": str(tmp_path / "case.png")}])
    rows = {r["lesion"]: r for r in _summary(out)}
    fov = 48 * 80
    segmented_at = rows["EX"].pop("segmented_at")
    assert rows["EX"] == {
        "image": str(tmp_path / "case.png"),
        "lesion": "EX",
        "area_px": "12",
        "area_pct_fov": str(round(100 * 12 / fov, 6)),
        "num_lesions": "3",
        "largest_lesion_px": "9",
        "threshold": "0.5",
        "model": "unknown",
        "model_origin": "unknown",
    }
    assert segmented_at.startswith("20") and segmented_at.endswith("Z")
    assert (rows["HE"]["area_px"], rows["HE"]["num_lesions"], rows["HE"]["largest_lesion_px"]) == ("10", "1", "10")
    assert float(rows["HE"]["area_pct_fov"]) == pytest.approx(100 * 10 / fov, abs=1e-6)
    overlay = _read(out / "case_overlay.png")
    ex = photo[..., 1] == 255
    he = photo[..., 2] == 255
    np.testing.assert_array_equal(overlay[~(ex | he)], photo[~(ex | he)])
    yellow = np.rint(0.5 * photo[20, 30] + 0.5 * np.asarray(LESION_COLOURS["EX"], float))
    np.testing.assert_array_equal(overlay[20, 30], yellow)
    red = np.rint(0.5 * photo[45, 20] + 0.5 * np.asarray(LESION_COLOURS["HE"], float))
    np.testing.assert_array_equal(overlay[45, 20], red)
    # side by side: the untouched photograph on the left, the same painted overlay on the right
    wide = tmp_path / "wide"
    lesions = ("EX", "HE")
    side = _runner(wide, BrightChannels([1, 2]), lesion_names=lesions, overlay_legend=False, overlay_side_by_side=True)
    side.run([{"image": str(tmp_path / "case.png")}])
    both = _read(wide / "case_overlay.png")
    assert both.shape == (photo.shape[0], 2 * photo.shape[1], 3)
    np.testing.assert_array_equal(both[:, : photo.shape[1]], photo)
    np.testing.assert_array_equal(both[:, photo.shape[1] :], overlay)


def _bad_inputs(folder: Path) -> list[Path]:
    source = _write(folder / "source.jpg", 96, 128)
    data = source.read_bytes()
    source.unlink()
    (folder / "truncated.jpg").write_bytes(data[: len(data) * 2 // 3])
    (folder / "text.jpg").write_text("not a photograph")
    _write(folder / "tiny.png", 10, 10)
    Image.fromarray(_photo(64, 96)).save(folder / "anim.gif")
    (folder / "notes.txt").write_text("hello")
    return [folder / n for n in ("truncated.jpg", "text.jpg", "tiny.png", "anim.gif", "notes.txt")]


def test_bad_inputs_are_reported_and_skipped(tmp_path) -> None:
    bad = _bad_inputs(tmp_path / "in")
    good = [_write(tmp_path / "in" / "good1.png"), _write(tmp_path / "in" / "good2.jpg", 80, 64)]
    items = [str(good[0]), *map(str, bad), str(good[1])]
    out = tmp_path / "out"
    report = _runner(out, ChannelProbe([0])).run(items)
    assert report.processed == 2 and [p for p, _ in report.failed] == [str(p) for p in bad]
    assert all(reason for _, reason in report.failed)
    with open(out / "failures.csv", newline="") as f:
        assert [(r["image"], r["reason"]) for r in csv.DictReader(f)] == report.failed
    assert all((out / f"{p.stem}_EX_prob.png").is_file() for p in good)
    assert not [p for p in out.iterdir() if p.name.startswith(tuple(b.stem for b in bad))]
    assert {r["image"] for r in _summary(out)} == {str(p) for p in good}
    assert "truncated.jpg" in str(report) and "2 processed" in str(report)
    _assert_no_temporary_files(out)

    with pytest.raises(ValueError, match="truncated.jpg"):
        _runner(tmp_path / "strict", ChannelProbe([0]), strict=True).run(items)
    _assert_no_temporary_files(tmp_path / "strict")


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.suffix == ".png"}


def test_rerun_skips_done_images_and_overwrite_rewrites(tmp_path) -> None:
    items = [str(_write(tmp_path / "a.png")), str(_write(tmp_path / "b.png", 70, 90, seed=3))]
    out = tmp_path / "out"
    assert _runner(out, ChannelProbe([0])).run(items).processed == 2
    rows = _summary(out)
    past = (out / "a_EX_prob.png").stat().st_mtime - 1000
    for p in out.iterdir():
        os.utime(p, (past, past))
    before = _mtimes(out)

    report = _runner(out, ChannelProbe([0])).run(items)
    assert (report.processed, report.skipped) == (0, 2)
    assert _mtimes(out) == before and _summary(out) == rows

    # a crash can leave an image's files without its rows, or rows without all files: both are redone
    (out / "b_overlay.png").unlink()
    report = _runner(out, ChannelProbe([0])).run(items)
    assert (report.processed, report.skipped) == (1, 1) and _untimed(_summary(out)) == _untimed(rows)
    assert _mtimes(out)["a_EX_prob.png"] == before["a_EX_prob.png"]

    report = _runner(out, ChannelProbe([0]), overwrite=True).run(items)
    assert (report.processed, report.skipped) == (2, 0)
    after = _mtimes(out)
    assert all(after[name] > before[name] for name in before)
    assert _untimed(_summary(out)) == _untimed(rows)  # redone: the same measurements, a new time
    _assert_no_temporary_files(out)


def _untimed(rows: list[dict]) -> list[dict]:
    """Summary rows without the time each image was segmented."""
    return [{k: v for k, v in row.items() if k != "segmented_at"} for row in rows]


def test_datalist_and_single_file_inputs_and_stem_clashes(tmp_path) -> None:
    _write(tmp_path / "data" / "x.png")
    _write(tmp_path / "data" / "sub" / "x.jpg", 80, 64)
    (tmp_path / "data" / "list.json").write_text(json.dumps({"testing": [{"image": "x.png"}]}))
    out = tmp_path / "out"
    runner = _runner(out, ChannelProbe([0]))
    assert runner.run(list_inference_inputs(tmp_path / "data" / "list.json")).processed == 1
    assert runner.run(list_inference_inputs(tmp_path / "data" / "x.png")).skipped == 1
    report = runner.run(list_inference_inputs(tmp_path / "data"))
    failed = dict(report.failed)  # the folder's list.json is an entry too, reported as unsupported
    assert report.skipped == 1 and sorted(Path(p).name for p in failed) == ["list.json", "x.jpg"]
    assert "already used" in failed[str(tmp_path / "data" / "sub" / "x.jpg")]
    report = _runner(out, ChannelProbe([0]), overwrite=True).run([str(tmp_path / "data" / "sub" / "x.jpg")])
    assert report.processed == 1 and [r["image"] for r in _summary(out)] == [str(tmp_path / "data" / "sub" / "x.jpg")]
    assert _read(out / "x_EX_prob.png").shape == (80, 64)


def test_selected_formats_only(tmp_path) -> None:
    path = str(_write(tmp_path / "a.png"))
    out = tmp_path / "out"
    report = _runner(out, ChannelProbe([0]), formats=("mask",)).run([path, path])
    assert report.processed == 1 and report.failed == [(path, "listed twice")]
    assert sorted(p.name for p in out.iterdir()) == ["a_EX_mask.png", "failures.csv", "manifest.json", "summary.csv"]
    report = _runner(out, ChannelProbe([0]), formats=("overlay",), overlay_format="jpeg").run([path])
    assert report.processed == 1 and Image.open(out / "a_overlay.jpg").size == (96, 64)


def test_batches_of_different_image_sizes_without_resizing(tmp_path) -> None:
    sizes = [(64, 96), (90, 70), (64, 96)]
    items = [str(_write(tmp_path / f"{i}.png", h, w, seed=i)) for i, (h, w) in enumerate(sizes)]
    out = tmp_path / "out"
    report = _runner(out, ChannelProbe([0]), batch_size=2).run(items)
    assert report.processed == 3
    for i, path in enumerate(items):
        np.testing.assert_array_equal(_read(out / f"{i}_EX_prob.png"), _read(Path(path))[..., 0])


def test_network_and_argument_errors(tmp_path) -> None:
    item = [str(_write(tmp_path / "a.png"))]
    with pytest.raises(ValueError, match="expected"):
        _runner(tmp_path / "o1", ChannelProbe([0, 1])).run(item)
    with pytest.raises(ValueError, match="probabilities"):
        _runner(tmp_path / "o2", nn.Identity(), lesion_names=("A", "B", "C")).run(item)
    with pytest.raises(ValueError, match="unique"):
        _runner(tmp_path, ChannelProbe([0]), lesion_names=("EX", "EX"))
    with pytest.raises(ValueError, match="file names"):
        _runner(tmp_path, ChannelProbe([0]), lesion_names=("E/X",))
    with pytest.raises(ValueError, match="threshold"):
        _runner(tmp_path, ChannelProbe([0]), threshold=2.0)
    with pytest.raises(ValueError, match="formats"):
        _runner(tmp_path, ChannelProbe([0]), formats=("prob", "tiff"))
    with pytest.raises(ValueError, match="Compose"):
        FundusInferenceRunner(ChannelProbe([0]), LoadFundusd(lesions=[]), PROBABILITIES_ALREADY)
    with pytest.raises(ValueError, match="postprocessing must be callable"):
        FundusInferenceRunner(ChannelProbe([0]), _identity_preprocessing(), "sigmoid")
    # a dual network's stacked branch logits without the branch fusion: the channel count names the mismatch
    with pytest.raises(ValueError, match=r"post-processing returned shape \(2, "):
        sigmoid_only = Compose([Activationsd("pred", sigmoid=True)])
        _runner(tmp_path / "o3", ChannelProbe([0, 0]), postprocessing=sigmoid_only).run(item)


def test_load_network_weights(tmp_path) -> None:
    source = nn.Conv2d(3, 2, 1)
    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()}}, tmp_path / "ddp.pt")
    target = load_network_weights(nn.Conv2d(3, 2, 1), tmp_path / "ddp.pt")
    assert torch.equal(target.weight, source.weight)
    torch.save(source.state_dict(), tmp_path / "plain.pt")
    assert torch.equal(load_network_weights(nn.Conv2d(3, 2, 1), tmp_path / "plain.pt").bias, source.bias)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        load_network_weights(source, tmp_path / "missing.pt")
    with pytest.raises(ValueError, match="plain.pt"):
        load_network_weights(nn.Conv2d(3, 4, 1), tmp_path / "plain.pt")


@pytest.mark.slow
def test_bundle_command_on_a_tiny_checkpoint(tmp_path) -> None:
    # the bundle's default network (one auxiliary head shared by the branches), built from its settings
    network = build_exudate_network("pspnet", True, 1, width=8, layers=(1, 1, 1, 1), shared_aux_head=True)
    (tmp_path / "models").mkdir()
    torch.save({"model": network.state_dict()}, tmp_path / "models" / "model.pt")
    inputs = [_write(tmp_path / "data" / "p.jpg", 64, 96), _write(tmp_path / "data" / "q.png", 100, 72, seed=5)]
    (tmp_path / "data" / "broken.jpg").write_text("x")
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str(REPO / "bundles" / "exudate_dsm" / "configs" / "inference.json"),
        "--dataset_dir", str(tmp_path / "data"), "--output_dir", str(out), "--ckpt_dir", str(tmp_path / "models"),
        "--unpackaged_settings", '{"net_width": 8, "spatial_size": [64, 64]}', "--batch_size", "2",
        "--device", "cpu", "--amp", "False", "--progress", "False",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 processed, 0 skipped (already done), 1 failed" in result.stdout + result.stderr
    for path in inputs:
        width, height = Image.open(path).size
        assert _read(out / f"{path.stem}_EX_mask.png").shape == (height, width)
        assert _read(out / f"{path.stem}_overlay.jpg").shape == (height, width, 3)
    rows = _summary(out)
    assert [(r["image"], r["lesion"]) for r in rows] == [(p.name, "EX") for p in inputs]  # relative to the input
    metadata = json.loads((REPO / "bundles" / "exudate_dsm" / "configs" / "metadata.json").read_text())
    model = f"{metadata['name']} {metadata['version']} model.pt"
    assert {(r["model"], r["model_origin"], r["threshold"]) for r in rows} == {(model, "unknown", "0.5")}
    assert "broken.jpg" in (out / "failures.csv").read_text()
    import hashlib

    manifest = json.loads((out / "manifest.json").read_text())
    settings = manifest["settings"]
    assert "q / 255" in manifest["runs"][-1]["encoding"]["prob"]
    # a checkpoint without a provenance record beside it: its origin is recorded as unknown
    assert manifest["runs"][-1]["provenance"] == {
        "bundle": metadata["name"],
        "version": metadata["version"],
        "model": {"known": False},
    }
    assert settings["model"]["sha256"] == hashlib.sha256((tmp_path / "models" / "model.pt").read_bytes()).hexdigest()
    assert settings["threshold"] == 0.5
    # the same folder with another threshold: refused, saying why, and nothing is rewritten
    before = (out / "summary.csv").read_text()
    result = subprocess.run([*command, "--threshold", "0.7"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0 and "threshold: 0.5 -> 0.7" in result.stderr
    assert (out / "summary.csv").read_text() == before


class _FailsToInvertFor(MapTransform, InvertibleTransform):
    """Identity forward; the inverse raises for photographs whose file name contains ``word``."""

    def __init__(self, word: str) -> None:
        MapTransform.__init__(self, keys="image")
        self.word = word

    def __call__(self, data):
        d = dict(data)
        self.push_transform(d["image"], extra_info={"path": str(d["image"].meta["filename_or_obj"])})
        return d

    def inverse(self, data):
        d = dict(data)
        path = self.pop_transform(d["image"])["extra_info"]["path"]
        if self.word in Path(path).name:
            raise RuntimeError("inverse refused")
        return d


def test_an_image_that_cannot_be_mapped_back_or_written_fails_alone(tmp_path) -> None:
    inputs = [_write(tmp_path / "in" / f"{name}.png", seed=i) for i, name in enumerate(("good", "bad", "locked"))]
    preprocessing = Compose([*_identity_preprocessing().transforms, _FailsToInvertFor("bad")])
    out = tmp_path / "out"
    (out / "locked_EX_prob.png").mkdir(parents=True)  # a folder where the file should go: the write fails
    report = _runner(out, ChannelProbe([0]), preprocessing).run(inputs)
    assert report.processed == 1 and [Path(p).name for p, _ in report.failed] == ["bad.png", "locked.png"]
    reasons = dict((Path(p).name, r) for p, r in report.failed)
    assert "could not map the prediction back (RuntimeError: inverse refused)" in reasons["bad.png"]
    assert "could not write outputs" in reasons["locked.png"]
    assert [r["image"] for r in _summary(out)] == [str(inputs[0])]
    with pytest.raises(ValueError, match=r"bad\.png: could not map the prediction back"):
        _runner(tmp_path / "strict", ChannelProbe([0]), preprocessing, strict=True).run(inputs[1:2])


def test_overlay_legend_sits_in_the_corner_and_names_the_model(tmp_path) -> None:
    path = _write(tmp_path / "in" / "a.png", 200, 300)
    plain, legend = tmp_path / "plain", tmp_path / "legend"
    _runner(plain, ChannelProbe([0]), overlay_legend=False).run([str(path)])
    origin = {"known": True, "synthetic": True}
    runner = _runner(legend, ChannelProbe([0]), provenance={"model": origin})
    assert runner.outputs.legend_model == "ChannelProbe, DEMO: synthetic data only"
    runner.run([str(path)])
    a, b = _read(plain / "a_overlay.png"), _read(legend / "a_overlay.png")
    assert a.shape == b.shape == (200, 300, 3)
    changed = np.argwhere((a != b).any(axis=2))
    # only a box in the bottom-left corner changes; the rest of the overlay is untouched
    assert len(changed) and changed[:, 0].min() > 100 and changed[:, 1].max() < 240
    settings = json.loads((legend / "manifest.json").read_text())["settings"]
    assert settings["overlay_legend"] is True


def test_rows_are_named_relative_to_the_input_folder_and_a_failed_redo_drops_them(tmp_path) -> None:
    photos = tmp_path / "photos"
    items = [str(_write(photos / "eye" / "a.png")), str(_write(photos / "b.png", 70, 90, seed=3))]
    out = tmp_path / "out"
    assert _runner(out, ChannelProbe([0]), input_root=photos).run(items).processed == 2
    assert sorted(r["image"] for r in _summary(out)) == ["b.png", "eye/a.png"]
    Path(items[0]).write_bytes(b"no longer a photograph")
    report = _runner(out, ChannelProbe([0]), input_root=photos, overwrite=True).run(items)
    assert (report.processed, len(report.failed)) == (1, 1)
    # the old rows of the photograph that failed would describe outputs this run could not make
    assert [r["image"] for r in _summary(out)] == ["b.png"]
