"""End-to-end runs of the exudate_dsm bundle on a tiny synthetic set: train, evaluate, infer, verify, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ckpt_export, run, verify_metadata, verify_net_in_out

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "exudate_dsm"
CONFIGS = BUNDLE / "configs"
SCHEMA = REPO.parent / "shared" / "schema" / "meta_schema_20240725.json"

TINY = {
    "synthetic_num": 5,
    "synthetic_size": [160, 112],
    "model_settings#spatial_size": [96, 64],
    "model_settings#net_width": 8,
    "training_recipe#max_epochs": 2,
    "val_interval": 1,
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Train the tiny configuration once for the module; return its folders."""
    root = tmp_path_factory.mktemp("dsm")
    dirs = {"dataset_dir": str(root / "data"), "output_dir": str(root / "out"), "ckpt_dir": str(root / "models")}
    run("training", config_file=str(CONFIGS / "train.json"), meta_file=str(CONFIGS / "metadata.json"), **TINY, **dirs)
    return {**dirs, "root": root}


def test_training_writes_checkpoints_and_mlflow_run(trained, run_artifacts):
    models = Path(trained["ckpt_dir"])
    assert (models / "model.pt").is_file()
    assert (models / "checkpoint_epoch=2.pt").is_file()
    state = torch.load(models / "checkpoint_epoch=2.pt", map_location="cpu", weights_only=False)
    assert {"model", "optimizer", "lr_scheduler", "trainer"} <= set(state)
    trainer = state["trainer"]  # ignite keeps the iteration count; the epoch follows from it
    assert trainer["iteration"] // trainer["epoch_length"] == 2
    package = json.loads((models / "model_package.json").read_text())
    assert package["provenance"]["synthetic"] is True and package["bundle"] == "exudate_dsm"
    assert package["settings"]["net_width"] == 8 and package["provenance"]["images"]["training"] > 0
    assert package["settings"]["spatial_size"] == [96, 64] and package["recipe"]["loss_name"] == "dsm"
    best, last = package["validation"], package["last_validation"]  # model.pt's figures, and the last epoch's
    assert last["epoch"] == 2 and best["epoch"] in (1, 2) and 0.0 <= last["metrics"]["val_aupr"] <= 1.0
    assert best["metrics"]["val_aupr"] >= last["metrics"]["val_aupr"]

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{trained['output_dir']}/mlflow.db")
    experiment = client.get_experiment_by_name("exudate_dsm")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    data = runs[0].data
    assert data.params["arch"] == "pspnet" and data.params["loss_name"] == "dsm"
    # every setting of the model package and the recipe is a parameter of the run, under its name in the package
    for name in (*package["settings"], *package["recipe"]):
        assert name in data.params, name
    for name in (
        "momentum", "weight_decay", "poly_power", "aux_weight", "fov_crop", "val_interval", "pretrained_path",
        "pooling_norm", "augmentation_variants", "sw_overlap",
    ):  # fmt: skip
        assert name in data.params, name
    assert data.params["synthetic"] == "True" and data.params["passes_per_epoch"] == "1"
    assert "train_loss" in data.metrics and "val_aupr" in data.metrics and "EX_f_sigma0.5" in data.metrics
    alpha = [m.value for m in client.get_metric_history(runs[0].info.run_id, "alpha")]
    assert alpha == pytest.approx([1.0, 1.0 - (1 / 2) ** 2])
    assert len(client.get_metric_history(runs[0].info.run_id, "train_loss")) >= 4  # logged per iteration
    artifacts = run_artifacts(client, runs[0].info.run_id)
    assert "model_package.json" in artifacts and "model/MLmodel" in artifacts
    assert "model/artifacts/weights/model.pt" in artifacts and "model/artifacts/weights/threshold.json" in artifacts
    # every validation's PR curve and overlays under its own epoch folder: none replaces another
    assert {"pr_curves/epoch_001/pr_EX.png", "pr_curves/epoch_002/pr_EX.png"} <= artifacts
    for epoch in ("epoch_001", "epoch_002"):
        assert any(a.startswith(f"overlays/{epoch}/") and a.endswith("_EX.png") for a in artifacts)
    # the synthetic default model is registered under the bundle's name, its validation on the version
    (version,) = client.search_model_versions("name='exudate_dsm'")
    assert version.run_id == runs[0].info.run_id and "val_aupr" in version.tags


def test_rerun_resumes_and_ends_with_same_epochs(trained):
    before = torch.load(Path(trained["ckpt_dir"]) / "checkpoint_epoch=2.pt", map_location="cpu", weights_only=False)
    dirs = {k: trained[k] for k in ("dataset_dir", "output_dir", "ckpt_dir")}
    run("training", config_file=str(CONFIGS / "train.json"), meta_file=str(CONFIGS / "metadata.json"), **TINY, **dirs)
    after = torch.load(Path(trained["ckpt_dir"]) / "checkpoint_epoch=2.pt", map_location="cpu", weights_only=False)
    # the run was already complete: resuming does no further epoch and leaves the last checkpoint as it was
    assert after["trainer"]["iteration"] == before["trainer"]["iteration"]
    for key, value in before["model"].items():
        torch.testing.assert_close(after["model"][key], value)


def test_evaluate_reports_every_metric(trained):
    dirs = {k: trained[k] for k in ("dataset_dir", "output_dir", "ckpt_dir")}
    run(
        "evaluating",
        config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "evaluate.json")],
        meta_file=str(CONFIGS / "metadata.json"),
        **TINY,
        **dirs,
    )
    metrics = json.loads((Path(trained["output_dir"]) / "eval" / "metrics.json").read_text())
    for key in ("EX_iou", "EX_sn", "EX_ppv", "EX_f", "EX_aupr", "EX_mae", "val_aupr"):
        assert 0.0 <= metrics[key] <= 1.0
    assert {f"EX_f_sigma{s}" for s in (0.2, 0.35, 0.5, 0.65, 0.8)} <= set(metrics)
    assert any(k.startswith("EX_recall_size") for k in metrics)
    assert list((Path(trained["output_dir"]) / "eval" / "overlays").rglob("*.png"))
    import mlflow

    # the evaluation's MLflow run says which model it scored on which section
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{trained['output_dir']}/mlflow.db")
    (evaluation,) = [r for r in client.search_runs([client.get_experiment_by_name("exudate_dsm").experiment_id])
                     if r.info.run_name.endswith("_eval")]  # fmt: skip
    assert evaluation.data.params["section"] == "testing"
    assert evaluation.data.params["checkpoint"] == str(Path(trained["ckpt_dir"]) / "model.pt")


def test_inference_writes_maps_at_original_size(trained):
    from PIL import Image

    photos = sorted(Path(trained["dataset_dir"]).rglob("b. Testing Set/IDRiD_*.jpg"))
    out = Path(trained["root"]) / "infer"
    run(
        config_file=str(CONFIGS / "inference.json"),
        meta_file=str(CONFIGS / "metadata.json"),
        dataset_dir=str(photos[0].parent),
        ckpt_dir=trained["ckpt_dir"],
        output_dir=str(out),
    )
    stem = photos[0].stem
    # the model trained on the synthetic set says so in the output folder's record
    origin = json.loads((out / "manifest.json").read_text())["runs"][-1]["provenance"]["model"]
    assert origin["synthetic"] is True and origin["trained_on"] == "the synthetic demo set"
    written = [out / f"{stem}_EX_prob.png", out / f"{stem}_EX_mask.png", out / f"{stem}_overlay.jpg"]
    assert all(p.is_file() for p in written), sorted(p.name for p in out.iterdir())
    assert f"{stem}.jpg,EX," in (out / "summary.csv").read_text()
    for path in written:
        assert Image.open(path).size == Image.open(photos[0]).size


def test_inference_refuses_a_setting_that_contradicts_the_model_package(trained, tmp_path):
    from monai_exudate.bundle import SettingsError, root_cause

    photos = sorted(Path(trained["dataset_dir"]).rglob("b. Testing Set/IDRiD_*.jpg"))
    with pytest.raises(RuntimeError) as raised:
        run(
            config_file=str(CONFIGS / "inference.json"),
            meta_file=str(CONFIGS / "metadata.json"),
            dataset_dir=str(photos[0].parent),
            ckpt_dir=trained["ckpt_dir"],
            output_dir=str(tmp_path / "out"),
            unpackaged_settings={"net_width": 8, "spatial_size": [128, 96]},
        )
    refusal = root_cause(raised.value)
    assert isinstance(refusal, SettingsError)
    assert "'spatial_size': the model package says [96, 64], the run gives [128, 96]" in str(refusal)
    assert "net_width" not in str(refusal)  # given, but equal to the package's
    assert not (tmp_path / "out").exists()


def test_verify_metadata_and_network_shapes(tmp_path):
    if not SCHEMA.is_file():
        pytest.fail(f"bundle schema not found at {SCHEMA}: the tests need ../shared/schema beside the repository",
                    pytrace=False)
    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(SCHEMA))
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=str(CONFIGS / "inference.json"),
        ckpt_dir=str(tmp_path / "no_model"),  # weights without a package: the tiny settings describe them
        unpackaged_settings={"net_width": 8},
    )


def test_references_name_the_papers_authors():
    references = json.loads((CONFIGS / "metadata.json").read_text())["references"]
    # Qing Liu, Haotian Liu and Yixiong Liang (IEEE JBHI 2022)
    assert references[0].startswith("Liu Q, Liu H, Liang Y. Dual-Branch Network with Dual-Sampling Modulated Dice")


def test_ckpt_export_matches_eager(trained, tmp_path):
    from monai.bundle import ConfigParser

    ts_path = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts_path),
        ckpt_file=str(Path(trained["ckpt_dir"]) / "model.pt"),
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=str(CONFIGS / "inference.json"),
        ckpt_dir=trained["ckpt_dir"],  # its package, not that of a model trained in the bundle's own models/
        use_trace=True,
        input_shape=[1, 3, 96, 64],
    )
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.update({"ckpt_dir": trained["ckpt_dir"], "model_settings#net_width": 8})
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(Path(trained["ckpt_dir"]) / "model.pt", map_location="cpu", weights_only=False))
    net.eval()
    x = torch.randn(1, 3, 96, 64)
    exported = torch.jit.load(str(ts_path))
    with torch.no_grad():
        torch.testing.assert_close(exported(x), net(x), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("config", ["train.json", "inference.json"])
def test_idrid_overlay_resizes_without_fov_crop(config, tmp_path):
    """IDRiD is resized whole (the paper's preprocessing); the FOV crop stays for the default and DDR."""
    from monai.bundle import ConfigParser

    from monai_exudate.data.transforms import FieldOfViewCropd

    key = "train#preprocessing" if config == "train.json" else "preprocessing"
    found = {}
    for overlay in (None, "idrid.json", "ddr.json"):
        parser = ConfigParser()
        parser.read_config(str(CONFIGS / config))
        parser.update({"ckpt_dir": str(tmp_path)})  # no model trained in the bundle's own models/ (its package) counts
        if overlay:  # inference of weights without a package takes the overlay's settings as unpackaged_settings
            settings = json.loads((CONFIGS / overlay).read_text())
            fov_crop = settings.get("model_settings#fov_crop", True)
            given = {"model_settings#fov_crop": fov_crop}
            parser.update(given if config == "train.json" else {"unpackaged_settings": {"fov_crop": fov_crop}})
        found[overlay] = any(isinstance(t, FieldOfViewCropd) for t in parser.get_parsed_content(key).transforms)
    assert found == {None: True, "idrid.json": False, "ddr.json": True}


def _chain(err: BaseException) -> str:
    text = []
    while err is not None:
        text.append(f"{type(err).__name__}: {err}")
        err = err.__cause__ or err.__context__
    return "\n".join(text)


@pytest.mark.parametrize("broken", ["nan_weights", "overflowing_weights"])
def test_evaluate_fails_loudly_on_nonfinite_weights_or_output(trained, tmp_path, broken):
    state = torch.load(Path(trained["ckpt_dir"]) / "model.pt", map_location="cpu", weights_only=True)
    for key, value in state.items():
        if value.is_floating_point() and key.endswith(("weight", "bias")):
            value.mul_(float("nan") if broken == "nan_weights" else 1e30)  # finite, but the output overflows
    (tmp_path / "models").mkdir()
    torch.save(state, tmp_path / "models" / "model.pt")
    dirs = {"dataset_dir": trained["dataset_dir"], "output_dir": str(tmp_path / "out"),
            "ckpt_dir": str(tmp_path / "models")}  # fmt: skip
    with pytest.raises(Exception) as info:
        run("evaluating", config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "evaluate.json")],
            meta_file=str(CONFIGS / "metadata.json"), **TINY, **dirs)  # fmt: skip
    said = _chain(info.value)
    if broken == "nan_weights":
        assert "NonFiniteWeightsError" in said and "model.pt" in said
    else:
        assert "NonFiniteOutputError" in said and "IDRiD_" in said
    assert not (tmp_path / "out" / "eval" / "metrics.json").exists()


def test_calibration_is_fitted_shipped_in_the_package_and_applied(trained, tmp_path):
    """``python -m monai_exudate calibrate`` fits on a section, writes the package and threshold; evaluation and
    inference then end in the calibrated map, and ``--score-only`` measures it again."""
    import shutil

    from monai.bundle import ConfigParser

    from monai_exudate.__main__ import main
    from monai_exudate.data.indexers import build_datalist, write_datalist
    from monai_exudate.inference import CalibratedSigmoidd

    models = tmp_path / "models"
    models.mkdir()
    for name in ("model.pt", "model_package.json", "threshold.json"):
        shutil.copy(Path(trained["ckpt_dir"]) / name, models / name)
    datalist = write_datalist(build_datalist("idrid", trained["dataset_dir"]), tmp_path / "dl.json")
    args = ["calibrate", "--bundle-root", str(BUNDLE), "--ckpt-dir", str(models), "--datalist", str(datalist),
            "--dataset-dir", trained["dataset_dir"], "--section", "testing"]  # fmt: skip
    assert main([*args, "--score-only"]) == 2  # nothing to score yet: a clear error, nothing written
    assert "calibration" not in json.loads((models / "model_package.json").read_text())
    assert main([*args, "--report-dir", str(tmp_path / "report")]) == 0

    package = json.loads((models / "model_package.json").read_text())
    entry = package["calibration"]
    assert entry["fitted_on"]["section"] == "testing" and len(entry["fitted_on"]["image_ids"]) > 0
    knots = entry["lesions"]["EX"]
    assert all(b > a for a, b in zip(knots["logits"], knots["logits"][1:]))
    figures = entry["validation_figures"]["EX"]
    assert figures["calibrated"]["ece"] <= figures["sigmoid"]["ece"] + 1e-9
    before = json.loads((Path(trained["ckpt_dir"]) / "threshold.json").read_text())
    assert before["map_settings"]["calibrated"] is False
    threshold = json.loads((models / "threshold.json").read_text())
    assert threshold["map_settings"]["calibrated"] is True and 0.0 < threshold["thresholds"]["EX"] < 1.0
    # the uncalibrated map's level is kept: a fit again starts from it, not from the calibrated one
    assert threshold["sigmoid_thresholds"] == before["thresholds"]
    assert threshold["map_settings"]["tta_flip_axes"] == before["map_settings"]["tta_flip_axes"]
    assert (tmp_path / "report" / "reliability_EX_testing.png").is_file()
    report = json.loads((tmp_path / "report" / "calibration_testing.json").read_text())
    assert report["lesions"]["EX"]["calibrated"]["ap"] == pytest.approx(figures["calibrated"]["ap"])

    assert main([*args, "--score-only", "--report-dir", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "calibration_testing.json").read_text())
    assert again["lesions"]["EX"]["calibrated"]["ap"] == pytest.approx(figures["calibrated"]["ap"])
    assert json.loads((models / "model_package.json").read_text()) == package  # scoring writes nothing

    for config, key in (("inference.json", "postprocessing"), ("evaluate.json", "validate#postprocessing")):
        parser = ConfigParser()
        parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / config)] if config == "evaluate.json"
                           else str(CONFIGS / config))  # fmt: skip
        parser.update({"ckpt_dir": str(models), **{k: trained[k] for k in ("dataset_dir", "output_dir")}})
        steps = [t for t in parser.get_parsed_content(key).transforms if isinstance(t, CalibratedSigmoidd)]
        assert len(steps) == 1 and steps[0].knots[0] is not None
        assert parser.get_parsed_content("threshold_map_settings")["calibrated"] is True

    out = tmp_path / "inferred"
    images = Path(trained["dataset_dir"]) / "A. Segmentation" / "1. Original Images"
    photos = sorted((images / "b. Testing Set").iterdir())
    run(config_file=str(CONFIGS / "inference.json"), meta_file=str(CONFIGS / "metadata.json"),
        ckpt_dir=str(models), dataset_dir=str(photos[0].parent), output_dir=str(out), progress=False)  # fmt: skip
    assert len(list(out.glob("**/*_EX_prob.png"))) == len(photos)
    import csv

    with open(out / "summary.csv", newline="") as f:
        used = {float(row["threshold"]) for row in csv.DictReader(f)}
    assert len(used) == 1 and used.pop() == pytest.approx(threshold["thresholds"]["EX"])  # chosen on calibrated maps
    identity = json.loads((out / "manifest.json").read_text())["settings"]["settings"]
    assert identity["calibration"]["lesions"]["EX"]["logits"][0] == knots["logits"][0]  # its knots made the maps
