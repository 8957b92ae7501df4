"""bench/data_pipeline.py: it times the bundle's own loading chain, and its table covers every row."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from monai_exudate.data.preprocessing import fundus_load_transforms
from monai_exudate.data.synthetic import write_synthetic_dataset

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_data_pipeline", REPO / "bench" / "data_pipeline.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pipeline_is_the_packages_chain_and_gives_its_output(tmp_path):
    bench = _bench()
    root = write_synthetic_dataset(tmp_path / "idrid", num=2, size=(160, 112))
    items = bench.load_items(root)
    cached, per_epoch, full = bench.pipelines((64, 48))
    package = fundus_load_transforms(("EX",), (64, 48), labels="resize", resize_filter="area")
    assert [type(t) for t in cached.transforms] == [type(t) for t in package]
    assert [type(t).__name__ for t in full.transforms] == [*(type(t).__name__ for t in package), "NormalizeIntensityd"]
    loaded, expected = cached(dict(items[0])), dict(items[0])
    for transform in package:
        expected = transform(expected)
    assert torch.equal(torch.as_tensor(loaded["image"]), torch.as_tensor(expected["image"]))
    assert tuple(loaded["image"].shape) == (3, 64, 48) and tuple(loaded["label"].shape) == (1, 64, 48)
    sample = full(dict(items[0]))
    assert abs(float(sample["image"].mean())) < 3  # ImageNet-normalised, not raw 0-255


def test_command_line_prints_every_row(tmp_path, capsys):
    bench = _bench()
    root = write_synthetic_dataset(tmp_path / "idrid", num=2, size=(160, 112))
    bench.main(["--root", str(root), "--size", "32x24", "--epochs", "2", "--generator-num", "1", "--breakdown"])
    out = capsys.readouterr().out
    for row in ("uncached Dataset", "cache fill", "cached, median", "cached + flip/rot90", "synthetic generate_fundus"):
        assert row in out
    assert "per transform, uncached pass (s/image): LoadFundusd" in out
