"""``python -m monai_exudate reproduce``: a paper table's rows as bundle runs, beside the published values."""

from __future__ import annotations

import csv
import json

import mlflow
import pytest

from monai_exudate.__main__ import main
from monai_exudate.reproduction import published_values, table_rows, write_reports


def test_rows_of_both_tables_and_their_published_values():
    names = [row.name for row in table_rows("exudate_dsm", "hed", (0.25,))]
    assert names == ["single_cbce_hed", "single_dice_hed", "dual_dsm_hed", "dual_dsm_hed_rate0.25"]
    dual = table_rows("exudate_dsm", "pspnet")[2]
    settings = {"model_settings#arch": "pspnet", "model_settings#dual": True}
    assert dual.overrides == {**settings, "training_recipe#loss_name": "dsm"}
    assert published_values("exudate_dsm", "idrid", dual.published_key) == {"iou": 61.03, "f": 75.80, "aupr": 77.82}
    assert published_values("exudate_dsm", None, dual.published_key) == {}
    hrd = {row.name: row for row in table_rows("fundus_lesion_hrdecoder")}
    assert hrd["lr_only_full_resolution"].overrides == {"model_settings#lr_only": True, "model_settings#downscale": 1}
    assert published_values("fundus_lesion_hrdecoder", "ddr", "hrdecoder") == {"miou": 32.24, "maupr": 49.24}
    with pytest.raises(ValueError, match="bundle must be one of"):
        table_rows("spleen")


def test_reproduce_runs_rows_over_seeds_and_writes_the_table(tmp_path, capsys):
    tiny = [
        f"dataset_dir={json.dumps(str(tmp_path / 'data'))}", "synthetic_num=5", "synthetic_size=[160,112]",
        "model_settings#spatial_size=[96,64]", "model_settings#net_width=8", "model_settings#net_layers=[1,1,1,1]",
        "training_recipe#max_epochs=1", "val_interval=1",
    ]  # fmt: skip
    out = tmp_path / "repro"
    # one row and one seed: each run is a training and an evaluation process (about 20 s each on 2 cores)
    argv = ["reproduce", "--rows", "dual_dsm_pspnet", "--seeds", "3", "--out", str(out)]
    assert main([*argv, "--set", *tiny]) == 0
    text = (out / "reproduction.md").read_text()
    assert "| dual_dsm_pspnet | 1 |" in text and "+/- 0.00" in text
    with open(out / "reproduction.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["row"] for r in rows] == ["dual_dsm_pspnet"]
    assert all(float(r["peak memory (MiB)"]) > 0 and float(r["time per seed (s)"]) > 0 for r in rows)
    # every row and seed is a training run of one MLflow experiment
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("exudate_dsm_reproduction")
    names = {r.info.run_name for r in client.search_runs([experiment.experiment_id])}
    assert "dual_dsm_pspnet_seed3" in names
    assert "dual_dsm_pspnet" in capsys.readouterr().out


def test_unknown_rows_are_named(tmp_path, capsys):
    assert main(["reproduce", "--rows", "dual_dsm_unet", "--out", str(tmp_path)]) == 2
    assert "--rows ['dual_dsm_unet'] not in the table" in capsys.readouterr().err


def test_report_gives_mean_and_std_over_seeds_beside_the_published_values(tmp_path):
    def result(name: str, key: str, auprs: list[float]) -> dict:
        return {
            "name": name, "seeds": list(range(len(auprs))),
            "metrics": [{"iou": 0.3, "f": 0.5, "aupr": a} for a in auprs],
            "seconds": [100.0, 120.0][: len(auprs)], "peak_mib": [900.0, 1000.0][: len(auprs)],
            "published": published_values("exudate_dsm", "idrid", key),
        }  # fmt: skip

    rows = table_rows("exudate_dsm", "pspnet")
    results = [
        result(rows[1].name, rows[1].published_key, [0.5]),
        result(rows[2].name, rows[2].published_key, [0.6, 0.7]),
    ]
    text = write_reports("exudate_dsm", results, tmp_path, "the paper's Table 3", "python -m monai_exudate reproduce")
    lines = text.splitlines()
    assert lines[2].startswith("| single_dice_pspnet | 1 |") and lines[3].startswith("| dual_dsm_pspnet | 2 |")
    assert "| 65.00 +/- 7.07 | 77.82 |" in lines[3] and lines[3].endswith("| 110 | 1000 |")
    assert "Published values: the paper's Table 3" in text
    with open(tmp_path / "reproduction.csv", newline="") as f:
        assert [r["row"] for r in csv.DictReader(f)] == ["single_dice_pspnet", "dual_dsm_pspnet"]
