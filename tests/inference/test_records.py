"""Honest runs: non-finite outputs fail, the manifest, re-runs with other settings, damaged outputs, the folder lock,
failures kept across runs, every folder entry accounted for, huge, rotated and black photographs."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.inferers import SimpleInferer
from monai.transforms import Activationsd, Compose, EnsureTyped
from PIL import Image
from torch import nn

from monai_exudate.data.transforms import FieldOfViewCropd, LoadFundusd, PadToSquared
from monai_exudate.inference import FundusInferenceRunner, FuseBranchLogitsd, check_image_file, list_inference_inputs
from monai_exudate.inference.records import FolderInUseError, folder_lock


class RedProbe(nn.Module):
    """Probability = red / 255; NaN (or inf) for images whose blue channel is above 200."""

    def __init__(self, bad: float = float("nan")) -> None:
        super().__init__()
        self.bad = bad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        prob = x[:, :1] / 255.0
        flagged = (x[:, 2].amax(dim=(1, 2)) > 200).view(-1, 1, 1, 1)
        return torch.where(flagged, torch.full_like(prob, self.bad), prob)


class SlowRedProbe(RedProbe):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(1.0)
        return super().forward(x)


def _write(path: Path, height: int = 64, width: int = 96, blue: int = 60, seed: int = 0, **save) -> Path:
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[4:-4, 4:-4, 0] = rng.integers(0, 256, (height - 8, width - 8))
    image[4:-4, 4:-4, 1] = 150
    image[4:-4, 4:-4, 2] = blue
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, **save)
    return path


def _preprocessing(crop: bool = True) -> Compose:
    crop_ = [FieldOfViewCropd(keys=["image"])] if crop else []
    return Compose([LoadFundusd(lesions=[]), *crop_, PadToSquared(keys=["image"]), EnsureTyped(keys="image")])


def _runner(out: Path, network: nn.Module | None = None, crop: bool = True, **kwargs) -> FundusInferenceRunner:
    # the probes return probabilities themselves: their post-processing passes them through
    return FundusInferenceRunner(
        network or RedProbe(),
        _preprocessing(crop),
        kwargs.pop("postprocessing", Compose([])),
        SimpleInferer(),
        lesion_names=("EX",),
        output_dir=out,
        progress=False,
        num_writers=1,
        **kwargs,
    )


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_prediction_fails_that_image_alone(tmp_path, bad) -> None:
    good = _write(tmp_path / "good.png")
    broken = _write(tmp_path / "broken.png", blue=250)
    out = tmp_path / "out"
    report = _runner(out, RedProbe(bad), batch_size=2).run([good, broken])
    assert report.processed == 1 and [p for p, _ in report.failed] == [str(broken)]
    assert "non-finite" in report.failed[0][1]
    assert [r["image"] for r in _csv(out / "summary.csv")] == [str(good)]
    assert not list(out.glob("broken_*"))
    assert [r["image"] for r in _csv(out / "failures.csv")] == [str(broken)]
    with pytest.raises(ValueError, match=r"broken\.png: the network output has .* non-finite"):
        _runner(tmp_path / "strict", RedProbe(bad), strict=True).run([broken])


def test_manifest_records_what_made_the_folder(tmp_path) -> None:
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights one")
    out = tmp_path / "out"
    provenance = {"bundle": "tiny", "version": "1.2.3"}
    _runner(out, model_file=model, provenance=provenance, threshold=0.4).run([_write(tmp_path / "a.png")])
    manifest = json.loads((out / "manifest.json").read_text())
    settings = manifest["settings"]
    assert settings["model"]["sha256"] == hashlib.sha256(b"weights one").hexdigest()
    assert settings["threshold"] == 0.4 and settings["lesions"] == ["EX"] and "provenance" not in settings
    assert any(t["class"].endswith("FieldOfViewCropd") for t in settings["preprocessing"]["transforms"])
    (run,) = manifest["runs"]
    assert run["provenance"] == provenance  # recorded with the run; a new bundle version leaves the folder valid
    assert (run["found"], run["processed"], run["skipped"], run["failed"], run["completed"]) == (1, 1, 0, 0, True)
    assert run["formats"] == ["prob", "mask", "overlay"] and run["model_file"] == str(model)


def test_the_folder_identity_is_the_output_settings_and_the_model_hash(tmp_path) -> None:
    """With the settings that change the outputs given, a library upgrade that adds an attribute to a transform (or
    a new bundle version) leaves a finished folder valid; a changed setting or model does not."""
    items = [_write(tmp_path / "a.png"), _write(tmp_path / "b.png", seed=1)]
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights one")
    out = tmp_path / "out"
    given = {"model": {"spatial_size": [96, 64], "fov_crop": True}, "tta_flip_axes": []}
    first = _runner(out, model_file=model, output_settings=given, provenance={"version": "1.0.0"})
    assert first.run(items).processed == 2
    upgraded = _runner(out, model_file=model, output_settings=given, provenance={"version": "1.1.0"})
    upgraded.preprocessing.transforms[0].added_by_an_upgrade = True
    assert upgraded.run(items).skipped == 2  # done: nothing that changes the outputs changed
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"]["settings"] == given and len(manifest["runs"]) == 2
    flipped = {**given, "tta_flip_axes": [0]}
    with pytest.raises(ValueError, match=r"(?s)other settings.*tta_flip_axes.*overwrite"):
        _runner(out, model_file=model, output_settings=flipped).run(items)
    model.write_bytes(b"weights two")
    with pytest.raises(ValueError, match=r"(?s)other settings.*sha256"):
        _runner(out, model_file=model, output_settings=given).run(items)
    # without output_settings the components are described, so the same added attribute counts as a change
    described = tmp_path / "described"
    _runner(described, model_file=model).run(items)
    changed = _runner(described, model_file=model)
    changed.preprocessing.transforms[0].added_by_an_upgrade = True
    with pytest.raises(ValueError, match="added_by_an_upgrade"):
        changed.run(items)


def test_a_rerun_with_other_settings_is_refused_unless_it_overwrites(tmp_path) -> None:
    items = [_write(tmp_path / "a.png"), _write(tmp_path / "b.png", seed=1)]
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights one")
    out = tmp_path / "out"
    assert _runner(out, model_file=model).run(items).processed == 2
    assert _runner(out, model_file=model).run(items).skipped == 2  # same settings: done

    with pytest.raises(ValueError, match=r"(?s)other settings.*threshold: 0\.5 -> 0\.7.*overwrite"):
        _runner(out, model_file=model, threshold=0.7).run(items)
    model.write_bytes(b"weights two")  # retrained in place: same file name, other weights
    with pytest.raises(ValueError, match=r"(?s)other settings.*model\.sha256"):
        _runner(out, model_file=model).run(items)
    with pytest.raises(ValueError, match="preprocessing"):
        _runner(out, crop=False, model_file=tmp_path / "model.pt").run(items)
    before = _csv(out / "summary.csv")

    report = _runner(out, model_file=model, overwrite=True).run(items[:1])
    assert report.processed == 1
    # b was made by the first model: its rows are dropped, so a later run redoes it instead of keeping it as done
    assert {r["image"] for r in _csv(out / "summary.csv")} == {str(items[0])} != {r["image"] for r in before}
    report = _runner(out, model_file=model).run(items)
    assert (report.processed, report.skipped) == (1, 1)
    assert len(json.loads((out / "manifest.json").read_text())["runs"]) == 2  # history restarts with the settings


class DualLogitProbe(nn.Module):
    """A stand-in for an exported dual network: two branches' logits from the red channel; its path is no setting."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = (x[:, :1] - 127.5) / 16.0
        return torch.cat([logits, 0.5 * logits], dim=1)


def _fusion(rule: str) -> Compose:
    return Compose([FuseBranchLogitsd("pred", num_branches=2, fusion=rule), Activationsd("pred", sigmoid=True)])


def test_the_branch_fusion_rule_is_a_setting_and_a_model_path_is_not(tmp_path) -> None:
    items = [_write(tmp_path / "a.png")]
    out = tmp_path / "out"
    _runner(out, network=DualLogitProbe("/models/a.onnx"), postprocessing=_fusion("logits")).run(items)
    settings = json.loads((out / "manifest.json").read_text())["settings"]
    assert "path" not in settings["network"]
    fuse = settings["postprocessing"]["transforms"][0]
    assert fuse["fusion"] == "logits" and fuse["num_branches"] == 2
    moved = _runner(out, network=DualLogitProbe("/moved/a.onnx"), postprocessing=_fusion("logits"))
    assert moved.run(items).skipped == 1
    other = _runner(out, network=DualLogitProbe("/models/a.onnx"), postprocessing=_fusion("probabilities"))
    with pytest.raises(ValueError, match=r'(?s)other settings.*postprocessing.*"logits" -> "probabilities"'):
        other.run(items)


def test_outputs_without_a_manifest_or_with_a_damaged_one_are_not_trusted(tmp_path) -> None:
    items = [_write(tmp_path / "a.png")]
    out = tmp_path / "out"
    _runner(out).run(items)
    (out / "manifest.json").unlink()  # a folder written before manifests existed
    with pytest.raises(ValueError, match="no manifest.json"):
        _runner(out).run(items)
    assert _runner(out, overwrite=True).run(items).processed == 1
    (out / "manifest.json").write_text('{"settings": ')
    with pytest.raises(ValueError, match="damaged manifest"):
        _runner(out).run(items)
    assert _runner(out, overwrite=True).run(items).processed == 1
    assert _runner(out).run(items).skipped == 1


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage", "other size"])
def test_an_empty_or_damaged_output_is_not_done(tmp_path, damage) -> None:
    items = [_write(tmp_path / "a.png")]
    out = tmp_path / "out"
    _runner(out).run(items)
    target = out / "a_EX_mask.png"
    data = target.read_bytes()
    if damage == "empty":
        target.write_bytes(b"")
    elif damage == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        target.write_bytes(b"x" * len(data))
    else:
        Image.fromarray(np.zeros((10, 20), np.uint8)).save(target)
    report = _runner(out).run(items)
    assert (report.processed, report.skipped) == (1, 0)
    with Image.open(target) as mask:
        assert mask.size == (96, 64)


def test_failures_csv_keeps_earlier_runs_with_a_run_column(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "failures.csv").write_text("image,reason\nold.png,from a run before the run column\n")
    (tmp_path / "one.txt").write_text("x")
    (tmp_path / "two.txt").write_text("x")
    first = _runner(out).run([tmp_path / "one.txt"])
    second = _runner(out).run([tmp_path / "two.txt"])
    rows = _csv(out / "failures.csv")
    assert [(r["run"], Path(r["image"]).name) for r in rows] == [
        ("", "old.png"),
        (first.run_id, "one.txt"),
        (second.run_id, "two.txt"),
    ]
    assert first.run_id != second.run_id and all("unsupported" in r["reason"] for r in rows[1:])


def test_a_second_run_into_a_busy_folder_is_refused_and_nothing_is_lost(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    with folder_lock(out, "other-run"):
        with pytest.raises(FolderInUseError, match="in use by another inference run"):
            _runner(out).run([_write(tmp_path / "x.png")])

    first = [_write(tmp_path / "in1" / f"p{i}.png", seed=i) for i in range(2)]
    second = [_write(tmp_path / "in2" / f"q{i}.png", seed=9 + i) for i in range(2)]
    (tmp_path / "in1" / "bad.txt").write_text("x")
    (tmp_path / "in2" / "worse.txt").write_text("x")
    outcome: dict[str, object] = {}

    def slow_run() -> None:
        outcome["report"] = _runner(out, SlowRedProbe()).run(list_inference_inputs(tmp_path / "in1"))

    thread = threading.Thread(target=slow_run)
    thread.start()
    deadline = time.monotonic() + 30
    while not (out / ".inference.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(FolderInUseError):
        _runner(out, SlowRedProbe()).run(list_inference_inputs(tmp_path / "in2"))
    thread.join()
    assert outcome["report"].processed == 2
    assert _runner(out, SlowRedProbe()).run(list_inference_inputs(tmp_path / "in2")).processed == 2
    assert {r["image"] for r in _csv(out / "summary.csv")} == {str(p) for p in first + second}
    assert sorted(Path(r["image"]).name for r in _csv(out / "failures.csv")) == ["bad.txt", "worse.txt"]
    assert not (out / ".inference.lock").exists()


def test_every_folder_entry_is_accounted_for(tmp_path, caplog) -> None:
    data = tmp_path / "data"
    _write(data / "good.png")
    _write(data / "sub" / "good2.jpg", seed=1)
    (data / "notes.txt").write_text("x")
    (data / "folder.jpg").mkdir()
    _write(data / "folder.jpg" / "inside.png", seed=2)
    os.symlink(data / "missing.png", data / "dangling.png")
    os.symlink(data / "loop_b.jpg", data / "loop_a.jpg")
    os.symlink(data / "loop_a.jpg", data / "loop_b.jpg")
    items = list_inference_inputs(data)
    assert len(items) == 8
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="monai_exudate.inference.runner"):
        report = _runner(out).run(items)
    reasons = {Path(p).name: r for p, r in report.failed}
    assert report.processed == 3 and sorted(reasons) == ["dangling.png", "folder.jpg", "loop_a.jpg", "loop_b.jpg",
                                                        "notes.txt"]  # fmt: skip
    assert "dangling symbolic link" in reasons["dangling.png"] and "loop" in reasons["loop_a.jpg"]
    assert "folder" in reasons["folder.jpg"] and "unsupported" in reasons["notes.txt"]
    assert report.found == report.processed + report.skipped + len(report.failed) == 8
    assert "8 entries found: 3 processed, 0 skipped (already done), 5 failed" in caplog.text
    assert {Path(r["image"]).name for r in _csv(out / "failures.csv")} == set(reasons)
    run = json.loads((out / "manifest.json").read_text())["runs"][-1]
    assert (run["found"], run["processed"], run["skipped"], run["failed"]) == (8, 3, 0, 5)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares ``width`` x ``height`` but holds one row of data: decoding it would fail or take long."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IDAT", zlib.compress(b"\x00" * (3 * width + 1)))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + body + chunk(b"IEND", b""))
    return path


def test_a_photograph_declaring_too_many_pixels_is_refused_before_decoding(tmp_path) -> None:
    huge = _png_header_only(tmp_path / "huge.png", 9000, 8000)
    reason = check_image_file(huge)
    assert "72000000 pixels, more than max_image_pixels (50000000)" in reason and "not decoded" in reason
    bomb = _png_header_only(tmp_path / "bomb.png", 20000, 20000)  # above Pillow's own limit too
    assert "not decoded" in check_image_file(bomb)
    small = _write(tmp_path / "small.png")
    report = _runner(tmp_path / "out", max_image_pixels=5000).run([small])
    assert report.processed == 0 and "more than max_image_pixels (5000)" in report.failed[0][1]
    assert _runner(tmp_path / "out2", max_image_pixels=96 * 64).run([small]).processed == 1


def test_outputs_follow_the_exif_orientation_of_the_photograph(tmp_path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait (rotated 90 degrees clockwise)
    photo = _write(tmp_path / "turned.jpg", 64, 96, exif=exif, quality=95)
    out = tmp_path / "out"
    assert _runner(out, overlay_format="jpeg").run([photo]).processed == 1
    for name in ("turned_EX_prob.png", "turned_EX_mask.png", "turned_overlay.jpg"):
        with Image.open(out / name) as image:
            assert image.size == (64, 96), name


@pytest.mark.parametrize("crop", [True, False])
def test_a_black_frame_fails_instead_of_counting_as_all_field_of_view(tmp_path, crop) -> None:
    black = tmp_path / "black.png"
    Image.fromarray(np.full((64, 96, 3), 3, np.uint8)).save(black)
    good = _write(tmp_path / "good.png")
    out = tmp_path / "out"
    report = _runner(out, crop=crop).run([black, good])
    assert report.processed == 1 and [p for p, _ in report.failed] == [str(black)]
    assert "no field of view" in report.failed[0][1]
    assert [r["image"] for r in _csv(out / "summary.csv")] == [str(good)]


def test_another_process_holding_the_folder_is_named_and_a_killed_one_blocks_nothing(tmp_path) -> None:
    import signal
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        # the lock as a run takes it (records.folder_lock), without importing torch in the child
        [sys.executable, "-c", "import fcntl, os, time\n"
         f"fd = os.open({str(out / '.inference.lock')!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nos.write(fd, f'pid {os.getpid()}, run other'.encode())\n"
         "print('held', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(FolderInUseError, match=rf"pid {holder.pid}, run other"):
            _runner(out).run([_write(tmp_path / "a.png")])
    finally:
        holder.send_signal(signal.SIGKILL)  # a killed run: the kernel drops its lock, its lock file stays
        holder.wait()
    assert (out / ".inference.lock").exists()
    assert _runner(out).run([tmp_path / "a.png"]).processed == 1
    assert not (out / ".inference.lock").exists()
