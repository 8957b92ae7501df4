"""The bundles' multi_gpu_inference.json and multi_gpu_evaluate.json under torchrun: two gloo processes on CPU give
the outputs, records and metrics of one process."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = {
    "exudate_dsm": ["--spatial_size", "[96,64]", "--net_width", "8"],
    "fundus_lesion_hrdecoder": [
        "--net_width", "4", "--stage1_channels", "8", "--stem_channels", "8", "--head_channels", "8",
        "--hr_scale", "32", "--resize_size", "[96,64]", "--crop_size", "[64,64]", "--warmup_iters", "1",
        "--batch_size", "2",
    ],
}  # fmt: skip
OUTPUT_SUFFIXES = ("_prob.png", "_mask.png", "_overlay.jpg")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bundle_run(bundle: str, configs: list[str], args: list[str], processes: int) -> None:
    """``monai.bundle run`` of ``configs`` in one process, or under torchrun with the multi-GPU overlay."""
    folder = REPO / "bundles" / bundle / "configs"
    files = [str(folder / name) for name in configs]
    if processes == 1:
        launcher = [sys.executable, "-m"]
    else:
        launcher = ["torchrun", f"--nproc_per_node={processes}", f"--master_port={_free_port()}", "-m"]
    command = [*launcher, "monai.bundle", "run", *args[:1], "--config_file", json.dumps(files).replace('"', "'"),
               "--meta_file", str(folder / "metadata.json"), *args[1:]]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # torchrun's default for its processes, also for the one process
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module", params=sorted(TINY))
def trained(request, tmp_path_factory) -> tuple[str, Path, list[str]]:
    """A tiny model of the bundle trained on 8 synthetic photographs; its folders as settings."""
    bundle = request.param
    root = tmp_path_factory.mktemp(bundle)
    data = ["--dataset_dir", str(root / "data"), "--ckpt_dir", str(root / "models"), "--synthetic_num", "8",
            "--synthetic_size", "[160,112]", *TINY[bundle]]  # fmt: skip
    train = ["training", *data, "--output_dir", str(root / "train"), "--max_epochs", "1", "--val_interval", "1"]
    _bundle_run(bundle, ["train.json"], train, 1)
    return bundle, root, data


def _rows(path: Path, drop: str) -> list[tuple]:
    with open(path, newline="") as f:
        return sorted(tuple(v for k, v in row.items() if k != drop) for row in csv.DictReader(f))


def test_sharded_inference_writes_what_one_process_writes(trained):
    bundle, root, data = trained
    photos = next(p.parent for p in (root / "data").rglob("b. Testing Set/*.jpg"))
    (photos.parent / "more").mkdir(exist_ok=True)
    for photo in sorted((root / "data").rglob("a. Training Set/*.jpg"))[:3]:  # 5 photographs in all, one bad
        shutil.copy(photo, photos.parent / "more" / photo.name)
    for photo in photos.glob("*.jpg"):
        shutil.copy(photo, photos.parent / "more" / photo.name)
    (photos.parent / "more" / "broken.jpg").write_text("not a photograph")
    model = ["--dataset_dir", str(photos.parent / "more"), "--ckpt_dir", data[3], "--device", "cpu", "--amp", "False",
             "--progress", "False", "--num_workers", "1"]  # fmt: skip
    outputs = {}
    for processes in (1, 2):
        out = root / f"inference-{processes}"
        configs = ["inference.json"] + (["multi_gpu_inference.json"] if processes > 1 else [])
        _bundle_run(bundle, configs, ["run", *model, "--output_dir", str(out)], processes)
        outputs[processes] = {p.name: p.read_bytes() for p in out.iterdir() if p.name.endswith(OUTPUT_SUFFIXES)}
    assert outputs[1] and outputs[2] == outputs[1]  # every map, mask and overlay byte for byte
    one, two = root / "inference-1", root / "inference-2"
    assert _rows(two / "summary.csv", "segmented_at") == _rows(one / "summary.csv", "segmented_at")
    assert _rows(two / "failures.csv", "run") == _rows(one / "failures.csv", "run")
    manifests = [json.loads((folder / "manifest.json").read_text()) for folder in (one, two)]
    assert manifests[0]["settings"] == manifests[1]["settings"]
    runs = [m["runs"][-1] for m in manifests]
    assert [(r["found"], r["processed"], r["failed"], r["processes"]) for r in runs] == [(6, 5, 1, 1), (6, 5, 1, 2)]


def test_sharded_evaluation_reduces_its_metrics_to_the_one_process_figures(trained):
    bundle, root, data = trained
    metrics = {}
    for processes in (1, 2):
        out = root / f"evaluation-{processes}"
        configs = ["train.json", "evaluate.json"] + (["multi_gpu_evaluate.json"] if processes > 1 else [])
        cpu = ["--device", "cpu", "--amp", "False"]  # gloo processes, also where a GPU is present
        _bundle_run(bundle, configs, ["evaluating", *data, *cpu, "--output_dir", str(out)], processes)
        metrics[processes] = json.loads((out / "eval" / "metrics.json").read_text())
    assert len(metrics[1]) > 10 and metrics[2] == pytest.approx(metrics[1], abs=1e-6)
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'evaluation-2' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(bundle).experiment_id])
    assert len(runs) == 1  # logged by rank 0 only
