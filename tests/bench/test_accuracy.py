"""bench/accuracy.py: scoring at the photographs' own size with the project's metrics, and the results table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_accuracy", REPO / "bench" / "accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Constant(torch.nn.Module):
    """A dual network whose two branches predict the same probability everywhere (logits; size follows the input)."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.logit = float(torch.logit(torch.tensor(value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x[:, :2], self.logit)


def test_score_network_at_original_size_matches_direct_counts(tmp_path):
    from PIL import Image

    bench = _bench()
    overrides = {**bench.SMOKE, "bundle_root": str(tmp_path)}
    parser = bench.evaluation_parser(["train.json", "cpu.json"], overrides)
    scores = bench.score_network(_Constant(0.7), parser, torch.device("cpu"))
    masks = [item["EX"] for item in parser.get_parsed_content("validate#datalist")]
    truth = [np.asarray(Image.open(m)) > 0 for m in masks]
    assert truth and all(t.shape == (72, 96) for t in truth)  # the synthetic photographs' own size
    positive = sum(int(t.sum()) for t in truth)
    assert scores["iou"] == pytest.approx(positive / sum(t.size for t in truth))  # everything predicted
    assert scores["recall_lt100"] == 1.0 and scores["touched_lt100"] == 1.0 and scores["lesions_lt100"] > 0
    empty = bench.score_network(_Constant(0.2), parser, torch.device("cpu"))
    assert empty["iou"] == 0.0 and empty["recall_lt100"] == 0.0 and empty["region_f"] == 0.0
    assert empty["touched_lt100"] == 0.0


def test_markdown_table_has_mean_std_and_wall_time():
    bench = _bench()
    run = {c: 0.5 for c in bench.COLUMNS}
    results = {
        "dual_dsm": [
            {**run, "steps": 4, "crops": 64, "seconds": 10.0, "lesions_lt100": 7},
            {**run, "iou": 0.7, "steps": 4, "crops": 64, "seconds": 12.0, "lesions_lt100": 7},
        ]
    }
    table = bench.markdown_table(results)
    assert "| exudate_dsm CPU profile: dual U-Net + DSM | 2 | 0.600 +/- 0.141 |" in table
    assert "| 11 +/- 1 |" in table and "(7 in the scored set;" in table


def test_benchmark_runs_every_system_end_to_end(tmp_path):
    bench = _bench()
    out = tmp_path / "table.md"
    args = ["--smoke", "--seeds", "0", "--epochs", "1", "--workdir", str(tmp_path / "runs"), "--out", str(out)]
    args += ["--systems", *bench.SYSTEMS]
    table = bench.main(args, log=lambda line: None)
    assert out.read_text().startswith(table.splitlines()[0])
    rows = [line for line in table.splitlines() if line.startswith("| ") and "+/-" in line]
    assert len(rows) == len(bench.SYSTEMS)
    cells = [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]
    assert all(c[1] == "1" and not any("nan" in cell for cell in c) for c in cells)
    steps, crops = 2 + len(bench.COLUMNS), 3 + len(bench.COLUMNS)
    trained = [c for c in cells if not c[0].startswith("shipped")]
    # every trained system takes the same optimiser steps and sees the same crops; the shipped model trains none
    assert len({c[steps] for c in trained}) == 1 and len({c[crops] for c in trained}) == 1 and trained[0][steps] != "0"
    assert [c[steps] for c in cells if c[0].startswith("shipped")] == ["0"]
    # the shipped model's maps are calibrated already: their float AP would be the calibration's pooled ranking
    float_ap = 2 + bench.COLUMNS.index("ap_float")
    assert [c[float_ap] == "-" for c in cells] == [c[0].startswith("shipped") for c in cells]
    # each trained network is kept, so its scoring can be repeated without training it again
    kept = sorted(p.parent.name for p in (tmp_path / "runs").glob("*/network.pt"))
    assert kept == sorted(f"{s}_seed0" for s in bench.SYSTEMS if s != "shipped")


@pytest.mark.parametrize(
    "system, layer, dice_batch",
    [
        ("monai_unet", torch.nn.InstanceNorm2d, False),
        ("monai_unet_batchnorm", torch.nn.BatchNorm2d, False),
        ("monai_unet_batchdice", torch.nn.InstanceNorm2d, True),
    ],
)
def test_monai_unet_systems_build_their_recipe(tmp_path, monkeypatch, system, layer, dice_batch):
    bench = _bench()
    losses = []
    real_dice = bench.DiceLoss

    def recording_dice(**kwargs):
        losses.append(real_dice(**kwargs))
        return losses[-1]

    monkeypatch.setattr(bench, "DiceLoss", recording_dice)
    parser = bench.profile_parser(["train.json", "cpu.json"], {**bench.SMOKE, "bundle_root": str(tmp_path)})
    unet, steps, crops = bench.train_monai_unet(parser, 1, 2, 0, torch.device("cpu"), **bench.UNET_RECIPES[system])
    norms = {type(m) for m in unet.modules() if isinstance(m, (torch.nn.InstanceNorm2d, torch.nn.BatchNorm2d))}
    assert norms == {layer} and steps == 1 and crops > 0
    assert len(losses) == 1 and losses[0].batch is dice_batch


def test_default_table_leaves_the_measured_results_alone(tmp_path, monkeypatch):
    bench = _bench()
    results = tmp_path / "bench" / "accuracy_results.md"
    results.parent.mkdir()
    results.write_text("measured tables\n")
    monkeypatch.setattr(bench, "REPO", tmp_path)
    args = ["--smoke", "--seeds", "0", "--epochs", "1", "--systems", "monai_unet", "--workdir", str(tmp_path / "w")]
    table = bench.main(args, log=lambda line: None)
    assert results.read_text() == "measured tables\n"
    assert (tmp_path / "runs" / "accuracy.md").read_text() == table


def test_foreground_logit_gives_the_two_class_softmax_probability():
    bench = _bench()
    two_class = torch.nn.Conv2d(3, 2, 1)
    x = torch.randn(2, 3, 5, 7)
    with torch.no_grad():
        exudate = torch.sigmoid(bench.ForegroundLogit(two_class)(x))
        softmax = torch.softmax(two_class(x), dim=1)[:, 1:2]
    assert exudate.shape == (2, 1, 5, 7)
    torch.testing.assert_close(exudate, softmax)


def test_two_class_unet_trains_on_background_and_exudate_channels(tmp_path):
    bench = _bench()
    parser = bench.profile_parser(["train.json", "cpu.json"], {**bench.SMOKE, "bundle_root": str(tmp_path)})
    network, steps, crops = bench.train_monai_unet(parser, 2, 2, 0, torch.device("cpu"), two_class=True)
    assert isinstance(network, bench.ForegroundLogit) and network.network.out_channels == 2
    samples = bench.SMOKE["training_recipe#patch_samples"]
    assert steps == 2 and crops % samples == 0 and 2 * samples <= crops <= 2 * 2 * samples  # whole photographs' crops
    with torch.no_grad():
        assert network(torch.zeros(1, 3, 32, 32)).shape == (1, 1, 32, 32)  # one exudate logit for the evaluation


def test_networks_are_scored_again_on_a_held_out_test_set(tmp_path):
    """``--test_dataset_dir``: each network chosen on the validation section is scored on a second set's testing
    section; the table adds its columns, average precision among them."""
    bench = _bench()
    out = tmp_path / "table.md"
    args = ["--smoke", "--seeds", "0", "--epochs", "1", "--systems", "monai_unet", "--workdir", str(tmp_path / "w"),
            "--out", str(out), "--test_dataset_dir", str(tmp_path / "test_set")]  # fmt: skip
    table = bench.main(args, log=lambda line: None)
    head = table.splitlines()[0]
    assert "| ap |" in head and "test_aupr" in head and "test_ap" in head and "test_recall_lt100" in head
    assert (tmp_path / "test_set").is_dir()  # the smoke run generated the held-out synthetic set there


def test_shipped_system_is_scored_with_its_package_and_calibration(tmp_path):
    """The shipped model is evaluated as the bundle's evaluation reads it (settings and calibration from its package);
    a network trained here by its profile's settings and without calibration."""
    bench = _bench()
    overrides = {**bench.SMOKE, "bundle_root": str(tmp_path), "ckpt_dir": str(REPO / "bundles/exudate_dsm/models")}
    shipped = bench.evaluation_parser(["train.json", "cpu.json"], overrides, packaged=True)
    assert shipped.get_parsed_content("calibration") is not None
    assert shipped.get_parsed_content("model_description")["net_width"] == 8  # the package's, not the smoke's 2
    trained = bench.evaluation_parser(["train.json", "cpu.json"], overrides)
    assert trained.get_parsed_content("calibration") is None
    assert trained.get_parsed_content("model_description")["net_width"] == bench.SMOKE["model_settings#net_width"]
    network = bench.shipped_network(REPO / "bundles/exudate_dsm/models", torch.device("cpu"))
    assert sum(p.numel() for p in network.parameters()) > 500_000


def test_missing_shipped_package_is_refused_by_name(tmp_path, capsys):
    bench = _bench()
    with pytest.raises(SystemExit):
        bench.main(["--smoke", "--systems", "shipped", "--ckpt_dir", str(tmp_path / "none")], log=lambda line: None)
    assert "--ckpt_dir" in capsys.readouterr().err


def test_test_set_is_scored_at_the_level_chosen_on_validation(tmp_path, monkeypatch):
    """The test columns at a threshold use the validation maps' F-maximising level, never the test maps'."""
    bench = _bench()
    calls = []
    real = bench.score_network

    def recording(network, parser, device, threshold=None, calibration=None):
        scores = real(network, parser, device, threshold, calibration)
        calls.append((parser["dataset_dir"], threshold, calibration, dict(scores)))
        return scores

    monkeypatch.setattr(bench, "score_network", recording)
    args = ["--smoke", "--seeds", "0", "--epochs", "1", "--systems", "monai_unet", "--workdir", str(tmp_path / "w"),
            "--out", str(tmp_path / "t.md"), "--test_dataset_dir", str(tmp_path / "test_set")]  # fmt: skip
    table = bench.main(args, log=lambda line: None)
    (validation_dir, none, no_fit, validation), (test_dir, threshold, calibration, test) = calls
    assert none is None and validation_dir != test_dir and threshold == validation["best_thr"]
    assert {"iou_thr", "f_thr", "recall_lt100_thr"} <= test.keys() and "iou_thr" not in validation
    assert "test_recall_lt100_thr" in table.splitlines()[0]
    # the test maps are also scored through an isotonic calibration fitted on the validation maps' logits
    assert no_fit is None and calibration == bench.validation_calibration(validation["logit_histogram"])
    assert {"aupr_cal", "ap_cal"} <= test.keys() and "aupr_cal" not in validation
    assert 0.0 < test["ap_float"] <= 1.0 and "test_ap_cal" in table.splitlines()[0]


def test_kept_networks_are_rescored_to_the_same_figures(tmp_path):
    """``--rescore WORKDIR`` loads each kept ``network.pt`` instead of training, and scores it as its run did."""
    bench = _bench()
    common = ["--smoke", "--seeds", "0", "--epochs", "1", "--systems", "monai_unet", "single_dice"]
    lines, again = [], []
    bench.main([*common, "--workdir", str(tmp_path / "w"), "--out", str(tmp_path / "t.md")], log=lines.append)
    rescore = ["--workdir", str(tmp_path / "w2"), "--out", str(tmp_path / "t2.md"), "--rescore", str(tmp_path / "w")]
    table = bench.main([*common, "shipped", *rescore], log=again.append)  # the shipped model: from its package
    logged_results = sys.modules["run_logs"].logged_results  # loaded by the benchmark from bench/
    runs = [logged_results([_write(tmp_path / f"{n}.log", rows)], bench.SYSTEMS) for n, rows in
            (("first", lines), ("again", again))]  # fmt: skip
    for system in ("monai_unet", "single_dice"):
        trained, rescored = runs[0][system][0], runs[1][system][0]
        assert rescored["steps"] is None and trained["steps"] > 0
        assert {k: v for k, v in rescored.items() if k not in ("steps", "crops", "seconds")} == {
            k: v for k, v in trained.items() if k not in ("steps", "crops", "seconds")
        }
    assert "| - | - |" in table  # no training here: its steps and crops are not claimed
    with pytest.raises(FileNotFoundError, match="network.pt"):
        bench.main([*common, "--workdir", str(tmp_path / "w3"), "--rescore", str(tmp_path / "none")], log=print)


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def test_seeds_run_apart_merge_into_one_table(tmp_path):
    bench = _bench()

    def run(aupr: float, seconds: float) -> dict:
        return {**{c: aupr for c in bench.COLUMNS}, "steps": 10, "crops": 20, "seconds": seconds, "lesions_lt100": 7}

    first, second = tmp_path / "seed0.log", tmp_path / "seed1.log"
    first.write_text(f"Loading dataset: 100%\rmonai_unet seed 0: {run(0.5, 10.0)}\nshipped seed 0: {run(0.7, 1.0)}\n")
    second.write_text(f"monai_unet seed 1: {run(0.7, 30.0)}\nshipped seed 1: {run(0.9, 1.0)}\nnot a result line\n")
    table = bench.main(["--merge", str(first), str(second), "--out", str(tmp_path / "t.md")], log=lambda _: None)
    assert "| plain MONAI UNet + DiceLoss (sigmoid), Adam 1e-3 | 2 | 0.600 +/- 0.141 |" in table
    assert "| shipped model (bundle models/), calibrated | 1 | 0.700 +/- 0.000 |" in table  # scored once
    assert (tmp_path / "t.md").read_text() == table + "\n"
    (tmp_path / "empty.log").write_text("nothing\n")
    with pytest.raises(ValueError, match="no result line"):
        bench.main(["--merge", str(tmp_path / "empty.log")], log=lambda _: None)
