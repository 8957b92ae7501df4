"""End-to-end runs of the fundus_lesion_hrdecoder bundle on a tiny synthetic set: train, evaluate, infer, export."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, run, verify_metadata, verify_net_in_out

REPO = Path(__file__).resolve().parents[2]
BUNDLE = REPO / "bundles" / "fundus_lesion_hrdecoder"
CONFIGS = BUNDLE / "configs"
SCHEMA = REPO.parent / "shared" / "schema" / "meta_schema_20240725.json"
LESIONS = ("EX", "HE", "SE", "MA")

# A tiny HRNet and tiny images; the geometry keeps every size a multiple of 4 * downscale = 8.
NET = {
    "model_settings#net_width": 4,
    "model_settings#stage1_channels": 8,
    "model_settings#stem_channels": 8,
    "model_settings#head_channels": 8,
    "model_settings#hr_scale": 32,
    "model_settings#resize_size": [96, 64],
    "model_settings#crop_size": [64, 64],
}
TINY = {
    **NET,
    "synthetic_num": 8,
    "synthetic_size": [160, 112],
    "training_recipe#max_epochs": 2,
    "val_interval": 1,
    "training_recipe#warmup_iters": 2,
    "training_recipe#learning_rate": 0.01,
    "num_threads": 1,
}


def _dirs(trained: dict) -> dict:
    return {k: trained[k] for k in ("dataset_dir", "output_dir", "ckpt_dir")}


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Train the tiny configuration once for the module; return its folders."""
    root = tmp_path_factory.mktemp("hrd")
    dirs = {"dataset_dir": str(root / "data"), "output_dir": str(root / "out"), "ckpt_dir": str(root / "models")}
    run("training", config_file=str(CONFIGS / "train.json"), meta_file=str(CONFIGS / "metadata.json"), **TINY, **dirs)
    return {**dirs, "root": root}


def test_training_writes_checkpoints_and_mlflow_run(trained, run_artifacts):
    models = Path(trained["ckpt_dir"])
    assert (models / "model.pt").is_file()
    state = torch.load(models / "checkpoint_epoch=2.pt", map_location="cpu", weights_only=False)
    assert {"model", "optimizer", "lr_scheduler", "trainer"} <= set(state)
    assert state["trainer"]["iteration"] // state["trainer"]["epoch_length"] == 2
    # each lesion's operating threshold, chosen on the validation set beside the best model, in its package
    record = json.loads((models / "threshold.json").read_text())
    assert sorted(record["thresholds"]) == sorted(LESIONS) and all(0 <= t <= 1 for t in record["thresholds"].values())
    assert json.loads((models / "model_package.json").read_text())["threshold_file"] == "threshold.json"

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{trained['output_dir']}/mlflow.db")
    experiment = client.get_experiment_by_name("fundus_lesion_hrdecoder")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    data = runs[0].data
    assert data.params["num_crops"] == "2" and data.params["hr_scale"] == "32"
    assert {"train_loss", "val_maupr", "mIoU", "mAUPR"} <= set(data.metrics)
    for lesion in LESIONS:
        assert {f"{lesion}_iou", f"{lesion}_aupr", f"{lesion}_f_sigma0.5"} <= set(data.metrics)
    # 6 training images at batch 2: 6 iterations, 2 of them warm-up; the lr is logged after each step
    lr = [m.value for m in client.get_metric_history(runs[0].info.run_id, "lr_group_0")]
    warm = 1 - 0.5 * (1 - 1e-6)
    assert lr == pytest.approx([0.01 * (1 - i / 6) * (warm if i < 2 else 1.0) for i in range(1, 7)])
    artifacts = run_artifacts(client, runs[0].info.run_id)
    assert "model/artifacts/weights/model.pt" in artifacts and "model_package.json" in artifacts
    for lesion in LESIONS:
        assert any(a.startswith("pr_curves/epoch_") and a.endswith(f"pr_{lesion}.png") for a in artifacts)
        assert any(a.startswith("overlays/epoch_") and a.endswith(f"_{lesion}.png") for a in artifacts)


@pytest.mark.parametrize("synthetic", ["false", "0", False])
def test_synthetic_off_from_the_command_line_never_generates(tmp_path, synthetic):
    (tmp_path / "real").mkdir()
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser.update({"synthetic": synthetic, "dataset_dir": str(tmp_path / "real")})
    assert parser.get_parsed_content("checked_dataset_dir") == str(tmp_path / "real")
    assert not list((tmp_path / "real").iterdir())


def test_synthetic_generation_never_overwrites_another_dataset(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "IDRiD_01.jpg").write_bytes(b"not synthetic")
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser.update({"synthetic": "true", "dataset_dir": str(real)})
    with pytest.raises(RuntimeError) as info:
        parser.get_parsed_content("checked_dataset_dir")
    assert isinstance(info.value.__cause__, FileExistsError) and "refusing" in str(info.value.__cause__)
    assert [p.name for p in real.iterdir()] == ["IDRiD_01.jpg"]
    assert (real / "IDRiD_01.jpg").read_bytes() == b"not synthetic"


def test_lr_schedule_is_linear_warmup_then_poly():
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser.update({"train#total_iters": 100, "training_recipe#warmup_iters": 10, "training_recipe#learning_rate": 0.01})
    scheduler = parser.get_parsed_content("train#lr_scheduler")
    (factor,) = scheduler.lr_lambdas
    assert factor(0) == pytest.approx(1e-6)
    assert factor(5) == pytest.approx(0.95 * (1 - 0.5 * (1 - 1e-6)))
    assert factor(10) == pytest.approx(0.9)
    assert factor(55) == pytest.approx(0.45)
    assert factor(100) == 0.0


def test_rerun_resumes_and_ends_with_same_epochs(trained):
    path = Path(trained["ckpt_dir"]) / "checkpoint_epoch=2.pt"
    before = torch.load(path, map_location="cpu", weights_only=False)
    run("training", config_file=str(CONFIGS / "train.json"), **TINY, **_dirs(trained))
    after = torch.load(path, map_location="cpu", weights_only=False)
    assert after["trainer"]["iteration"] == before["trainer"]["iteration"]
    for key, value in before["model"].items():
        torch.testing.assert_close(after["model"][key], value)


def test_evaluate_reports_every_metric_at_original_size(trained):
    from PIL import Image

    run(
        "evaluating",
        config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "evaluate.json")],
        **TINY,
        **_dirs(trained),
    )
    eval_dir = Path(trained["output_dir"]) / "eval"
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    for lesion in LESIONS:
        for key in ("iou", "sn", "ppv", "f", "aupr", "mae"):
            assert 0.0 <= metrics[f"{lesion}_{key}"] <= 1.0
        assert {f"{lesion}_f_sigma{s}" for s in (0.2, 0.35, 0.5, 0.65, 0.8)} <= set(metrics)
    for key in ("mIoU", "mAUPR", "mF", "mMAE", "val_maupr"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["val_maupr"] == pytest.approx(metrics["mAUPR"])
    assert any(k.endswith("_recall_size0-25") for k in metrics)
    assert {p.name for p in (eval_dir / "pr_curves").rglob("pr_*.png")} == {f"pr_{x}.png" for x in LESIONS}
    # overlays are drawn on the inverted prediction: the photograph's own size
    photo = Path(trained["dataset_dir"]) / "A. Segmentation" / "1. Original Images" / "b. Testing Set" / "IDRiD_55.jpg"
    overlays = sorted((eval_dir / "overlays").rglob("IDRiD_55_*.png"))
    assert len(overlays) == len(LESIONS)
    assert all(Image.open(p).size == Image.open(photo).size for p in overlays)


def test_missing_mask_rule_changes_soft_exudate_counts(trained):
    import shutil

    import numpy as np
    from PIL import Image

    from monai_exudate.data.indexers import build_datalist

    # a copy of the tiny set whose test split holds photographs with and without an SE mask
    data = Path(trained["root"]) / "data_mixed_se"
    shutil.copytree(trained["dataset_dir"], data)
    testing = build_datalist("idrid", str(data))["testing"]
    first = testing[0]
    if all(item["SE"] is not None for item in testing):
        (data / first["SE"]).unlink()
    elif not any(item["SE"] is not None for item in testing):
        ex_mask = data / first["EX"]
        se_mask = Path(str(ex_mask).replace("3. Hard Exudates", "4. Soft Exudates").replace("_EX.tif", "_SE.tif"))
        se_mask.parent.mkdir(parents=True, exist_ok=True)
        width, height = Image.open(data / first["image"]).size
        blob = np.zeros((height, width), np.uint8)
        blob[height // 3 : height // 3 + 6, width // 3 : width // 3 + 8] = 255
        Image.fromarray(blob).save(se_mask)
    testing = build_datalist("idrid", str(data))["testing"]
    present = [item["SE"] is not None for item in testing]
    assert any(present) and not all(present), "the test split must hold images with and without an SE mask"
    results = {}
    for rule in ("negative", "ignore"):
        out = Path(trained["root"]) / f"eval_{rule}"
        run(
            "evaluating",
            config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "evaluate.json")],
            **TINY,
            **{**_dirs(trained), "dataset_dir": str(data)},
            eval_dir=str(out),
            **{"training_recipe#missing_masks": rule},
            run_name=f"rule_{rule}",
        )
        results[rule] = json.loads((out / "metrics.json").read_text())
    # images without an SE file count as SE-free under "negative" and leave SE's counts under "ignore"
    assert results["negative"]["SE_mae"] != pytest.approx(results["ignore"]["SE_mae"])
    for lesion in ("EX", "HE", "MA"):
        assert results["negative"][f"{lesion}_mae"] == pytest.approx(results["ignore"][f"{lesion}_mae"])


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
        progress=False,
        num_threads=1,
    )  # the trained model's package gives the network and geometry
    for photo in photos:
        size = Image.open(photo).size
        for lesion in LESIONS:
            for kind in ("prob", "mask"):
                written = out / f"{photo.stem}_{lesion}_{kind}.png"
                assert written.is_file(), f"missing {written.name}"
                assert Image.open(written).size == size
        assert Image.open(out / f"{photo.stem}_overlay.jpg").size == size


@pytest.mark.parametrize(("overlay", "num_train", "iterations"), [("idrid", 54, 20000), ("ddr", 383, 40000)])
def test_dataset_overlays_follow_the_published_schedule(overlay, num_train, iterations):
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), str(CONFIGS / f"{overlay}.json")])
    recipe = parser["training_recipe"]
    epoch_length = math.ceil(num_train / recipe["batch_size"])
    total = recipe["max_epochs"] * epoch_length
    assert iterations <= total < 1.01 * iterations
    assert recipe["max_epochs"] % parser["val_interval"] == 0  # the last epoch is validated
    assert recipe["warmup_iters"] == 1500 and recipe["learning_rate"] == 0.01
    # the published geometry builds (with a narrow backbone, to keep the test light)
    narrow = {"net_width": 4, "net_blocks": 1, "net_modules": 1, "stage1_channels": 8, "stem_channels": 8}
    parser.update({f"model_settings#{name}": value for name, value in narrow.items()})
    net = parser.get_parsed_content("network_def")
    assert (net.hr_scale, net.num_crops) == ((960, 2) if overlay == "idrid" else (1024, 4))
    crop = parser["model_settings#crop_size"]
    assert all(side % net.stride == 0 for side in crop) and net.hr_scale * 2 == crop[0]


def test_verify_metadata_and_network_shapes(tmp_path):
    if not SCHEMA.is_file():
        pytest.fail(f"bundle schema not found at {SCHEMA}: the tests need ../shared/schema beside the repository",
                    pytrace=False)
    verify_metadata(meta_file=str(CONFIGS / "metadata.json"), filepath=str(SCHEMA))
    verify_net_in_out(
        net_id="network_def",
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=str(CONFIGS / "inference.json"),
        n=8,
        ckpt_dir=str(tmp_path / "no_model"),  # weights without a package: the tiny settings describe them
        unpackaged_settings=NET,
    )


def test_ckpt_export_matches_eager(trained, tmp_path):
    ts_path = tmp_path / "model.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(ts_path),
        ckpt_file=str(Path(trained["ckpt_dir"]) / "model.pt"),
        meta_file=str(CONFIGS / "metadata.json"),
        config_file=str(CONFIGS / "inference.json"),
        use_trace=True,
        input_shape=[1, 3, 64, 64],
        ckpt_dir=trained["ckpt_dir"],  # its package describes the network
    )
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "inference.json"))
    parser.update({"ckpt_dir": trained["ckpt_dir"]})
    net = parser.get_parsed_content("network_def")
    net.load_state_dict(torch.load(Path(trained["ckpt_dir"]) / "model.pt", map_location="cpu", weights_only=False))
    net.eval()
    x = torch.randn(1, 3, 64, 64)
    exported = torch.jit.load(str(ts_path))
    with torch.no_grad():
        torch.testing.assert_close(exported(x), net(x), atol=1e-5, rtol=1e-4)


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
    dirs = {**_dirs(trained), "output_dir": str(tmp_path / "out"), "ckpt_dir": str(tmp_path / "models")}
    with pytest.raises(Exception) as info:
        run("evaluating", config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "evaluate.json")], **TINY, **dirs)
    said = _chain(info.value)
    if broken == "nan_weights":
        assert "NonFiniteWeightsError" in said and "model.pt" in said
    else:
        assert "NonFiniteOutputError" in said and "IDRiD_" in said
    assert not (tmp_path / "out" / "eval" / "metrics.json").exists()


@pytest.mark.parametrize("biased", [False, True])
def test_lesion_biased_crops_switch(tmp_path, biased):
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser.update({**NET, "synthetic_num": 4, "synthetic_size": [160, 112], "bundle_root": str(tmp_path)})
    parser.update({"training_recipe#lesion_biased_crops": biased, "training_recipe#crop_neg": 0.0})
    names = [type(t).__name__ for t in parser.get_parsed_content("train#preprocessing").transforms]
    assert ("RandCropByPosNegLabeld" in names) is biased and ("RandSpatialCropd" in names) is not biased
    if biased:
        parser.get_parsed_content("initialize")
        batch = next(iter(parser.get_parsed_content("train#dataloader")))
        assert batch["image"].shape[-2:] == (64, 64) and batch["label"].shape[1:] == (4, 64, 64)
        # pos=1, neg=0: every crop holds a pixel of some lesion
        assert all(bool(label.any()) for label in batch["label"])
