"""Fault handling of a bundle run: kill and resume, seeded reproducibility, MLflow against a real server."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "exudate_dsm" / "configs"
TINY = [
    "--synthetic_num", "5", "--synthetic_size", "[160,112]", "--spatial_size", "[96,64]",
    "--net_width", "8", "--val_interval", "10",
]  # fmt: skip


def _train_cmd(root: Path, max_epochs: int, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", str(CONFIGS / "train.json"), "--meta_file", str(CONFIGS / "metadata.json"),
        "--dataset_dir", str(root / "data"), "--output_dir", str(root / "out"), "--ckpt_dir", str(root / "models"),
        "--max_epochs", str(max_epochs), *TINY, *extra,
    ]  # fmt: skip


def _epochs_done(checkpoint: Path) -> int:
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["trainer"]
    return state["iteration"] // state["epoch_length"]


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_number_of_epochs(tmp_path):
    models = tmp_path / "models"
    proc = subprocess.Popen(_train_cmd(tmp_path, 4), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while not list(models.glob("checkpoint_epoch=*.pt")) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, "training ended before it could be killed"
        proc.send_signal(signal.SIGKILL)  # no handler can run: only atomic writes protect the checkpoint
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = max(_epochs_done(p) for p in models.glob("checkpoint_epoch=*.pt"))
    assert 1 <= killed_at < 4
    for path in models.glob("*.pt"):  # every checkpoint left behind loads
        torch.load(path, map_location="cpu", weights_only=False)
    subprocess.run(_train_cmd(tmp_path, 4), cwd=REPO, check=True, capture_output=True)
    assert _epochs_done(models / "checkpoint_epoch=4.pt") == 4


@pytest.mark.slow
def test_same_seed_gives_the_same_loss_curve(tmp_path):
    import mlflow

    curves = []
    for name in ("a", "b"):
        root = tmp_path / name
        subprocess.run(_train_cmd(root, 2, "--dataset_dir", str(tmp_path / "data")), cwd=REPO, check=True,
                       capture_output=True)  # fmt: skip
        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'out' / 'mlflow.db'}")
        run = client.search_runs([client.get_experiment_by_name("exudate_dsm").experiment_id])[0]
        curves.append([m.value for m in client.get_metric_history(run.info.run_id, "train_loss")])
    assert len(curves[0]) >= 4
    assert curves[0] == pytest.approx(curves[1], rel=1e-6, abs=1e-7)
