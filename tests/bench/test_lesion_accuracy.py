"""bench/lesion_accuracy.py: four-lesion scoring at the photographs' own size, equal crops for every system."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_lesion_accuracy", REPO / "bench" / "lesion_accuracy.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Constant(torch.nn.Module):
    """Four lesion logits, one constant probability per lesion (size follows the input)."""

    def __init__(self, values: list[float]) -> None:
        super().__init__()
        self.register_buffer("logits", torch.logit(torch.tensor(values)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.reshape(1, -1, 1, 1).expand(x.shape[0], -1, *x.shape[2:]).clone()


def test_score_network_counts_every_lesion_at_the_photographs_own_size(tmp_path):
    from PIL import Image

    bench = _bench()
    overrides = {**bench.SMOKE, "bundle_root": str(tmp_path)}
    settings = bench.profile_parser(["train.json", "cpu.json"], overrides).get_parsed_content("model_settings")
    parser = bench.evaluation_parser(["train.json", "cpu.json"], overrides, settings)
    # EX, HE everywhere; SE, MA nowhere at 0.5, but above a threshold of 0.1
    network = _Constant([0.7, 0.9, 0.2, 0.3])
    scores = bench.score_network(network, parser, torch.device("cpu"), {"EX": 0.5, "HE": 0.5, "SE": 0.5, "MA": 0.1})
    assert list(scores) == ["EX", "HE", "SE", "MA"]
    items = parser.get_parsed_content("validate#datalist")
    size = sum(
        np.asarray(Image.open(item["image"])).shape[0] * np.asarray(Image.open(item["image"])).shape[1]
        for item in items
    )

    def share(name: str) -> float:  # a photograph without the lesion's mask counts as negative
        return sum(int((np.asarray(Image.open(item[name])) > 0).sum()) for item in items if item.get(name)) / size

    # predicted over the same region (the field of view; the inverted padding is 0) for EX, HE at 0.5 and MA at
    # 0.1: each lesion's IoU is its pixels over that region's area, so IoUs scale as the lesions' pixel counts
    area = share("EX") / scores["EX"]["iou"]
    assert 0.3 < area <= 1.0
    assert scores["HE"]["iou"] == pytest.approx(share("HE") / area, rel=1e-6)
    assert scores["MA"]["iou_thr"] == pytest.approx(share("MA") / area, rel=1e-6) and share("MA") > 0
    for name in ("EX", "HE"):
        assert scores[name]["f"] == pytest.approx(2 * scores[name]["iou"] / (1 + scores[name]["iou"]))
        assert scores[name]["recall_lt100_thr"] in (None, 1.0)
    assert scores["SE"]["iou"] == 0.0 and scores["MA"]["iou"] == 0.0 and scores["SE"]["iou_thr"] == 0.0
    # the component recall follows each lesion's own threshold: MA (0.3) is marked at 0.1, SE (0.2) not at 0.5
    assert scores["MA"]["recall_lt100_thr"] == 1.0 and scores["SE"]["recall_lt100_thr"] in (None, 0.0)
    assert all(0.0 <= row["ap"] <= 1.0 for row in scores.values())


def test_trained_systems_see_equal_crops_and_are_scored_on_both_sets(tmp_path):
    bench = _bench()
    out = tmp_path / "table.md"
    args = ["--smoke", "--seeds", "0", "--systems", "monai_unet", "hrdecoder", "lr_only",
            "--workdir", str(tmp_path / "w"), "--out", str(out)]  # fmt: skip
    table = bench.main(args, log=lambda line: None)
    assert out.read_text().startswith(table.splitlines()[0])
    assert "### validation" in table and "### test" in table and "recall_lt100_thr" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and " | EX | " in line]
    assert len(rows) == 6  # three systems, two sets
    cost = [line.split("|")[2:5] for line in table.splitlines() if line.count("|") == 6 and "---" not in line][1:]
    # equal steps and crops; each scored at its last epoch
    assert len(cost) == 3 and len({tuple(c) for c in cost}) == 1 and cost[0][0].strip() != "0"
    assert cost[0][2].strip() == "1"


def test_select_best_scores_the_checkpoint_the_recipe_keeps(tmp_path, monkeypatch):
    bench = _bench()
    results, trained, scored = [], [], []
    real_train, real_score = bench.train_profile, bench.score_network

    def recording_score(network, parser, device, thresholds=None):
        scored.append(network)
        return real_score(network, parser, device, thresholds)

    def train(configs, overrides):
        network, steps, crops = real_train(configs, overrides)
        trained.append(network)
        return network, steps, crops

    monkeypatch.setattr(bench, "train_profile", train)
    monkeypatch.setattr(bench, "score_network", recording_score)
    args = ["--smoke", "--seeds", "0", "--systems", "hrdecoder", "--select_best", "--epochs", "3", "--override",
            "val_interval=1", "--workdir", str(tmp_path / "w"), "--out", str(tmp_path / "t.md")]  # fmt: skip
    bench.main(args, log=results.append)
    models = tmp_path / "w" / "hrdecoder_seed0" / "outputs" / "models"
    package = json.loads((models / "model_package.json").read_text())
    best = package["validation"]["epoch"]
    assert package["last_validation"]["epoch"] == 3 and best in (1, 2, 3)
    logged = next(line for line in results if line.startswith("hrdecoder seed 0: "))
    assert f"'epoch': {best}," in logged
    # both sets are scored with the network loaded from the kept model.pt, not the trainer's last-epoch one
    kept = bench.shipped_network(models, torch.device("cpu"), "fundus_lesion_hrdecoder", bench.hrdecoder.network)
    assert len(scored) == 2 and all(n is not trained[0] for n in scored)
    for network in scored:
        for (name, ours), theirs in zip(network.state_dict().items(), kept.state_dict().values()):
            assert torch.equal(ours, theirs), name


def test_select_best_without_a_validation_names_the_folder(tmp_path):
    bench = _bench()
    args = ["--smoke", "--seeds", "0", "--systems", "lr_only", "--select_best", "--workdir", str(tmp_path / "w"),
            "--out", str(tmp_path / "t.md")]  # fmt: skip
    with pytest.raises(RuntimeError, match="lr_only_seed0.*no validated checkpoint"):
        bench.main(args, log=lambda line: None)


def test_lr_only_system_trains_the_low_resolution_branch_alone(tmp_path, monkeypatch):
    bench = _bench()
    seen = []
    real = bench.train_profile

    def recording(configs, overrides):
        network, steps, crops = real(configs, overrides)
        seen.append((overrides["model_settings#lr_only"], network.lr_only))
        return network, steps, crops

    monkeypatch.setattr(bench, "train_profile", recording)
    args = ["--smoke", "--seeds", "0", "--systems", "lr_only", "--workdir", str(tmp_path / "w"),
            "--out", str(tmp_path / "t.md")]  # fmt: skip
    bench.main(args, log=lambda line: None)
    assert seen == [(True, True)]


def test_missing_shipped_package_is_refused_by_name(tmp_path, capsys):
    bench = _bench()
    with pytest.raises(SystemExit):
        bench.main(["--smoke", "--systems", "shipped", "--ckpt_dir", str(tmp_path / "none")], log=lambda line: None)
    assert "--ckpt_dir" in capsys.readouterr().err


def test_test_set_is_scored_at_the_levels_chosen_on_validation(tmp_path, monkeypatch):
    """The thresholds of the test columns are the validation maps' F-maximising levels, never the test maps'."""
    bench = _bench()
    calls = []
    real = bench.score_network

    def recording(network, parser, device, thresholds=None):
        scores = real(network, parser, device, thresholds)
        calls.append((parser["dataset_dir"], thresholds, scores))
        return scores

    monkeypatch.setattr(bench, "score_network", recording)
    args = ["--smoke", "--seeds", "0", "--systems", "monai_unet", "--workdir", str(tmp_path / "w"),
            "--out", str(tmp_path / "t.md")]  # fmt: skip
    bench.main(args, log=lambda line: None)
    (validation_dir, none, validation), (test_dir, thresholds, test) = calls
    assert none is None and validation_dir != test_dir
    assert thresholds == {name: row["best_thr"] for name, row in validation.items()}
    # the smoke test set holds other photographs than the validation set, so the two choices differ somewhere
    assert any(
        test[name]["best_thr"] != thresholds[name] or test[name]["ap"] != validation[name]["ap"] for name in test
    )


def test_missing_masks_other_than_negative_is_refused(tmp_path, capsys):
    bench = _bench()
    with pytest.raises(SystemExit):
        bench.main(
            ["--smoke", "--systems", "monai_unet", "--override", 'training_recipe#missing_masks="ignore"'], log=print
        )
    assert "missing_masks" in capsys.readouterr().err


def test_seeds_run_apart_merge_into_one_table(tmp_path):
    bench = _bench()

    def run(aupr: float, seconds: float) -> dict:
        return {"validation": {"EX": {"aupr": aupr, "ap": aupr}}, "steps": 10, "crops": 20, "seconds": seconds}

    first, second = tmp_path / "seed0.log", tmp_path / "seed1.log"
    first.write_text(f"Loading dataset: 100%\rmonai_unet seed 0: {run(0.5, 10.0)}\nshipped seed 0: {run(0.7, 1.0)}\n")
    second.write_text(f"monai_unet seed 1: {run(0.7, 30.0)}\nshipped seed 1: {run(0.9, 1.0)}\nnot a result line\n")
    table = bench.main(["--merge", str(first), str(second), "--out", str(tmp_path / "t.md")], log=lambda _: None)
    assert "| plain MONAI UNet (4 sigmoid channels) + DiceLoss, Adam 1e-3 | EX | 2 | 0.600 +/- 0.141 |" in table
    assert "| shipped model (bundle models/), calibrated | EX | 1 | 0.700 +/- 0.000 |" in table  # scored once
    assert (tmp_path / "t.md").read_text().startswith("### validation")
    (tmp_path / "empty.log").write_text("nothing\n")
    with pytest.raises(ValueError, match="no result line"):
        bench.main(["--merge", str(tmp_path / "empty.log")], log=lambda _: None)
