"""The trained model in MLflow: logged and registered by training, loaded as a pyfunc model, served over HTTP."""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from monai.bundle import run
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "exudate_dsm" / "configs"
TINY = {
    "synthetic_num": 5,
    "synthetic_size": [160, 112],
    "model_settings#spatial_size": [96, 64],
    "model_settings#net_width": 8,
    "training_recipe#max_epochs": 1,
    "val_interval": 1,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(command: list[str], url: str, log: Path, env: dict | None = None, timeout: float = 180.0):
    """Start a server in its own process group; wait until ``url`` answers."""
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True, env=env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[:4]} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return process
        except OSError:
            time.sleep(0.5)
    _stop(process)
    raise RuntimeError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real MLflow tracking server on 127.0.0.1 with a SQLite store and proxied artifacts."""
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--backend-store-uri", f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "art")]
    command += ["--workers", "1"]
    process = _start(command, f"http://127.0.0.1:{port}/health", root / "server.log")
    yield f"http://127.0.0.1:{port}"
    _stop(process)


@pytest.fixture(scope="module")
def trained(server, tmp_path_factory):
    root = tmp_path_factory.mktemp("dsm_mlflow")
    dirs = {"dataset_dir": str(root / "data"), "output_dir": str(root / "out"), "ckpt_dir": str(root / "models")}
    run(
        "training",
        config_file=str(CONFIGS / "train.json"),
        meta_file=str(CONFIGS / "metadata.json"),
        tracking_uri=server,
        **TINY,
        **dirs,
    )
    photo = sorted(Path(dirs["dataset_dir"]).rglob("b. Testing Set/IDRiD_*.jpg"))[0]
    return {**dirs, "root": root, "photo": photo}


def test_training_registers_a_model_that_says_where_it_came_from(server, trained):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=server)
    (version,) = client.search_model_versions("name='exudate_dsm'")
    package = json.loads((Path(trained["ckpt_dir"]) / "model_package.json").read_text())
    assert float(version.tags["val_aupr"]) == pytest.approx(package["validation"]["metrics"]["val_aupr"])
    assert version.tags["synthetic"] == "True" and version.tags["validation_epoch"] == "1"
    run_ = client.get_run(version.run_id)
    # the training run reached the server: parameters, the loss per iteration and alpha per epoch
    assert run_.data.params["arch"] == "pspnet" and {"train_loss", "alpha"} <= set(run_.data.metrics)
    assert run_.data.tags["synthetic"] == "True" and run_.data.tags["bundle"] == "exudate_dsm"
    assert run_.data.tags["datalist_sha256"] == package["provenance"]["datalist_sha256"]
    experiment = client.get_experiment(run_.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"  # opens on the runs view
    artifacts = {a.path for a in client.list_artifacts(version.run_id, "model")}
    assert {"model/MLmodel", "model/artifacts", "model/code", "model/input_example.json"} <= artifacts


def test_registered_model_predicts_what_bundle_inference_writes(server, trained, monkeypatch):
    import mlflow.pyfunc

    (trained["root"] / "pyfunc").mkdir()
    # where models:/ URIs are looked up (mlflow.set_tracking_uri would also set it for every later test)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    model = mlflow.pyfunc.load_model("models:/exudate_dsm/1", dst_path=str(trained["root"] / "pyfunc"))
    assert [c.name for c in model.metadata.get_input_schema().inputs] == ["image"]
    assert [c.name for c in model.metadata.get_output_schema().inputs] == ["EX"]
    photo = trained["photo"]
    maps = model.predict({"image": [str(photo)]})
    as_array = model.predict({"image": [np.asarray(Image.open(photo).convert("RGB"))]})
    prob = maps["EX"].iloc[0]
    assert prob.shape == Image.open(photo).size[::-1] and prob.dtype == np.float32
    np.testing.assert_array_equal(as_array["EX"].iloc[0], prob)
    out = trained["root"] / "infer"
    run(
        config_file=str(CONFIGS / "inference.json"),
        meta_file=str(CONFIGS / "metadata.json"),
        dataset_dir=str(photo.parent),
        ckpt_dir=trained["ckpt_dir"],
        output_dir=str(out),
        formats=["prob"],
    )
    levels = np.asarray(Image.open(out / f"{photo.stem}_EX_prob.png")).astype(int)
    # the same chain and inversion: the bundle's 8-bit map is the MLflow model's map in levels
    assert np.abs(levels - np.round(prob * 255).astype(int)).max() <= 1


def test_served_model_answers_a_request_carrying_a_photograph(server, trained):
    port = _free_port()
    command = [sys.executable, "-m", "mlflow", "models", "serve", "-m", "models:/exudate_dsm/1"]
    command += ["--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)]
    env = {**os.environ, "MLFLOW_TRACKING_URI": server}
    process = _start(command, f"http://127.0.0.1:{port}/ping", trained["root"] / "serve.log", env=env)
    try:
        photo = base64.b64encode(trained["photo"].read_bytes()).decode("ascii")
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/invocations",
            data=json.dumps({"dataframe_records": [{"image": photo}]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            predictions = json.loads(response.read())["predictions"]
    finally:
        _stop(process)
    width, height = Image.open(trained["photo"]).size
    prob = np.asarray(predictions[0]["EX"], dtype=np.float32)
    assert prob.shape == (height, width) and 0.0 <= prob.min() <= prob.max() <= 1.0
