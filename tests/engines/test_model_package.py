"""The model package: written when training starts and after validation, read at inference; demo models announced."""

from __future__ import annotations

import json
import logging

import pytest
from ignite.engine import Engine, Events

from monai_exudate.bundle.overrides import RunSettings
from monai_exudate.engines import PACKAGE_FILE, ModelPackageWriter
from monai_exudate.engines.model_package import datalist_sha256, git_commit
from monai_exudate.inference import DEMO_MODEL_WARNING, model_origin, package_settings, read_model_package
from monai_exudate.inference.model_package import _run_values

DATALIST = {
    "training": [{"image": "a.jpg", "EX": "a_EX.tif"}, {"image": "b.jpg", "EX": "b_EX.tif"}],
    "testing": [{"image": "c.jpg", "EX": "c_EX.tif"}],
    "unused": [{"image": "d.jpg"}],
}


SETTINGS = {"arch": "unet", "spatial_size": [96, 64], "fov_crop": False}


def _writer(path, synthetic="true", sections=("training", "testing"), evaluator=None, seed=3) -> ModelPackageWriter:
    return ModelPackageWriter(
        path,
        "exudate_dsm",
        "0.6.0",
        "/data/IDRiD",
        synthetic,
        DATALIST,
        list(sections),
        seed,
        SETTINGS,
        recipe={"loss_name": "dsm"},
        evaluator=evaluator,
        threshold_file="threshold.json",
    )


def _train(path, seed=3, metric=0.25) -> None:
    evaluator = Engine(lambda engine, batch: None)
    metrics = {"val_aupr": metric, "per_image": [1, 2]}
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, lambda e: e.state.metrics.update(metrics))
    trainer = Engine(lambda engine, batch: None)
    _writer(path, evaluator=evaluator, seed=seed).attach(trainer)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: evaluator.run([0]))
    trainer.run([0], max_epochs=2)


def test_written_when_training_starts_and_read_back_beside_the_weights(tmp_path):
    engine = Engine(lambda engine, batch: None)
    _writer(tmp_path / PACKAGE_FILE).attach(engine)
    engine.run([0], max_epochs=1)
    package = json.loads((tmp_path / PACKAGE_FILE).read_text())
    provenance = package["provenance"]
    assert provenance["synthetic"] is True and provenance["images"] == {"training": 2, "testing": 1}
    assert package["settings"] == SETTINGS and provenance["seed"] == 3 and package["version"] == "0.6.0"
    assert package["recipe"] == {"loss_name": "dsm"} and package["validation"] is None
    assert provenance["datalist_sha256"] == datalist_sha256({k: DATALIST[k] for k in ("training", "testing")})
    assert provenance["packages"]["torch"] and "monai_exudate" in provenance["packages"]
    origin = model_origin(tmp_path / "model.pt")
    assert origin["known"] and origin["synthetic"] and origin["trained_on"] == "the synthetic demo set"
    _writer(tmp_path / PACKAGE_FILE, synthetic=False)()
    assert model_origin(tmp_path / "model.pt")["trained_on"] == "/data/IDRiD"


def test_validation_holds_the_best_checkpoints_figures_and_last_validation_the_latest(tmp_path):
    """The package describes model.pt, the best-model saver's checkpoint: a later, worse validation is recorded as
    last_validation only (as a MONAI evaluator tracks it, best_metric_epoch)."""
    path = tmp_path / PACKAGE_FILE
    evaluator = Engine(lambda engine, batch: None)
    scores = iter([0.3, 0.5, 0.4])

    def validated(engine: Engine) -> None:
        score = next(scores)
        engine.state.metrics.update({"val_aupr": score})
        if score > getattr(engine.state, "best_metric", -1.0):
            engine.state.best_metric, engine.state.best_metric_epoch = score, trainer.state.epoch

    evaluator.state.best_metric_epoch = -1
    evaluator.add_event_handler(Events.EPOCH_COMPLETED, validated)
    trainer = Engine(lambda engine, batch: None)
    _writer(path, evaluator=evaluator).attach(trainer)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: evaluator.run([0]))
    trainer.run([0], max_epochs=3)
    package = json.loads(path.read_text())
    assert package["validation"] == {"epoch": 2, "metrics": {"val_aupr": 0.5}}
    assert package["last_validation"] == {"epoch": 3, "metrics": {"val_aupr": 0.4}}


def test_validation_is_recorded_and_kept_by_a_restart_of_the_same_run_only(tmp_path):
    path = tmp_path / PACKAGE_FILE
    _train(path)
    package = json.loads(path.read_text())
    assert package["validation"] == {"epoch": 2, "metrics": {"val_aupr": 0.25}}  # numbers only
    written = path.read_bytes()
    _writer(path)()  # the same run restarting (a resume): the figures stay, byte for byte
    assert path.read_bytes() == written
    _writer(path, seed=4)()  # another run: the old figures do not describe it
    assert json.loads(path.read_text())["validation"] is None


def test_inference_settings_come_from_the_package_or_the_bundle_defaults(tmp_path, caplog, monkeypatch):
    bundle = tmp_path / "bundles" / "tiny"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "metadata.json").write_text("{}")
    monkeypatch.chdir(tmp_path)  # find_bundle_root looks in ./bundles/<name>
    section = {"lesions": "@lesions", "arch": "pspnet", "spatial_size": [384, 256], "fov_crop": True}
    train = {"lesions": ["EX"], "model_settings": section}  # a reference in the section reads the top-level value
    (bundle / "configs" / "train.json").write_text(json.dumps(train))
    models = tmp_path / "models"
    models.mkdir()
    with caplog.at_level(logging.WARNING):
        assert package_settings(models / "model.pt", "tiny") == {
            "lesions": ["EX"],
            "arch": "pspnet",
            "spatial_size": [384, 256],
            "fov_crop": True,
        }
    assert "no model_package.json beside" in caplog.text
    _writer(models / PACKAGE_FILE)()
    assert package_settings(models / "model.pt", "tiny") == SETTINGS
    assert read_model_package(models / "model.ts")["settings"] == SETTINGS  # an export in the same folder
    # a package of bundle 0.6.0 names the dual switch "branches": read under its new name
    package = json.loads((models / PACKAGE_FILE).read_text())
    package["settings"]["branches"] = "single"
    (models / PACKAGE_FILE).write_text(json.dumps(package))
    # and what it did not record yet takes the value its weights were trained with
    expected = {**SETTINGS, "dual": False, "shared_aux_head": False, "pooling_norm": "batch"}
    assert package_settings(models / "model.pt", "exudate_dsm") == expected


def test_what_a_run_gives_is_its_command_line_and_the_configs_are_the_fallback(tmp_path):
    files = []
    for name, config in {
        "train.json": {"lesions": ["EX"], "model_settings": {"lesions": "@lesions", "arch": "pspnet", "net_width": 16}},
        "cpu.json": {"model_settings#arch": "unet", "training_recipe#learning_rate": 0.001},
        "evaluate.json": {"model_description": "$monai_exudate.inference.package_settings(@ckpt_path, 'exudate_dsm')"},
        "late.json": {"model_settings#net_width": 8},
    }.items():
        files.append(str(tmp_path / name))
        (tmp_path / name).write_text(json.dumps(config))
    overrides = {"model_settings#spatial_size": [96, 64], "network_def#arch": "x", "training_recipe#max_epochs": 2}
    given, configured = _run_values(RunSettings(config_files=files, overrides=overrides))
    # the package describes the model: only the command line contradicts it; the config files are the fallback
    assert given == {"spatial_size": [96, 64]}
    assert configured == {"arch": "unet", "net_width": 8, "spatial_size": [96, 64]}


def test_the_datalist_hash_follows_the_content_not_the_key_order():
    reordered = {"testing": DATALIST["testing"], "training": [dict(reversed(d.items())) for d in DATALIST["training"]]}
    assert datalist_sha256(reordered) == datalist_sha256({k: DATALIST[k] for k in ("training", "testing")})
    assert datalist_sha256(DATALIST) != datalist_sha256(reordered)


def test_unknown_and_unreadable_records(tmp_path):
    assert model_origin(None) == {"known": False}
    assert model_origin(tmp_path / "model.ts") == {"known": False}
    (tmp_path / PACKAGE_FILE).write_text("{half")
    with pytest.raises(ValueError, match=r"model_package\.json: the model package cannot be read"):
        model_origin(tmp_path / "model.pt")
    (tmp_path / PACKAGE_FILE).write_text("[]")
    with pytest.raises(ValueError, match=r"model_package\.json: not a model package"):
        read_model_package(tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"sections \['validation'\] not found"):
        _writer(tmp_path / "x.json", sections=("training", "validation"))


def test_git_commit_outside_a_checkout_is_none(tmp_path):
    assert git_commit(tmp_path) is None


def test_demo_model_is_announced_at_start_and_end(tmp_path, caplog):
    from monai.transforms import Compose

    from monai_exudate.data.transforms import LoadFundusd
    from monai_exudate.inference import FundusInferenceRunner

    runner = FundusInferenceRunner(
        lambda x: x,
        Compose([LoadFundusd(lesions=[])]),
        Compose([]),
        output_dir=tmp_path / "out",
        progress=False,
        provenance={"model": {"known": True, "synthetic": True}},
    )
    with caplog.at_level(logging.WARNING):
        runner.run([])
    assert caplog.text.count(DEMO_MODEL_WARNING) == 2
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["runs"][-1]["provenance"]["model"]["synthetic"] is True


def test_a_resuming_run_refuses_a_folder_holding_another_networks_weights(tmp_path):
    path = tmp_path / PACKAGE_FILE
    engine = Engine(lambda engine, batch: None)
    _writer(path).attach(engine)
    engine.run([0], max_epochs=1)
    (tmp_path / "model.pt").write_bytes(b"weights of the unet")
    before = path.read_bytes()

    other = ModelPackageWriter(path, "exudate_dsm", "0.6.0", "/data/IDRiD", "true", DATALIST, ["training", "testing"],
                               3, {**SETTINGS, "arch": "pspnet"}, resume=True)  # fmt: skip
    with pytest.raises(ValueError, match=r"holds the weights .*arch 'unet' -> 'pspnet'.*--resume false"):
        other()
    assert path.read_bytes() == before  # the package still describes the weights beside it

    same = _writer(path)
    same.resume = True
    same()  # the same network resumes
    other.resume = False
    other()  # starting over is the user's choice
    assert json.loads(path.read_text())["settings"]["arch"] == "pspnet"

    # without weights beside it, the package describes nothing this run could lose
    (tmp_path / "model.pt").unlink()
    ModelPackageWriter(path, "exudate_dsm", "0.6.0", "/data/IDRiD", "true", DATALIST, ["training", "testing"], 3,
                       SETTINGS, resume=True)()  # fmt: skip
    assert json.loads(path.read_text())["settings"]["arch"] == "unet"
