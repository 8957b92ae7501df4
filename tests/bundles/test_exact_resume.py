"""Exact resume: a run SIGKILLed at several points and restarted ends like an uninterrupted one, bit for bit.

Both runs start from nothing with the same seed, so the comparison also pins seeded reproducibility: the same seed
gives the same weights, optimiser state and best epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from monai_exudate.data.indexers import build_datalist
from monai_exudate.data.synthetic import resolve_dataset_dir

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 4
TINY = {
    "exudate_dsm": ["--model_settings#spatial_size", "[96,64]", "--model_settings#net_width", "8"],
    "fundus_lesion_hrdecoder": [
        "--model_settings#net_width", "4", "--model_settings#stage1_channels", "8",
        "--model_settings#stem_channels", "8", "--model_settings#head_channels", "8",
        "--model_settings#hr_scale", "32", "--model_settings#resize_size", "[96,64]",
        "--model_settings#crop_size", "[64,64]", "--training_recipe#warmup_iters", "2", "--num_threads", "1",
    ],
}  # fmt: skip
# Where the interrupted run is killed, one restart after another (3 training images at batch 2: 2 iterations an
# epoch). "truncate" does not kill: it damages the newest checkpoint before the next restart.
KILLS = {
    "exudate_dsm": ["iteration:3", "validation:2", "after_model:3", "saving:3", "truncate"],
    "fundus_lesion_hrdecoder": ["iteration:3", "saving:3", "truncate"],
}

HOOK = """
import os, signal
import torch
from ignite.engine import Events


def _die(*_):
    os.kill(os.getpid(), signal.SIGKILL)


def install(trainer, evaluator, point):
    kind, _, arg = point.partition(":")
    at = int(arg or 0)
    if kind == "iteration":  # mid-epoch
        trainer.add_event_handler(Events.ITERATION_COMPLETED(once=at), _die)
    elif kind == "validation":  # inside the validation run after epoch `at`
        evaluator.add_event_handler(Events.ITERATION_COMPLETED, lambda e: trainer.state.epoch == at and _die())
    elif kind == "after_model":  # model.pt written, the epoch checkpoint not yet
        evaluator.add_event_handler(Events.COMPLETED, lambda e: trainer.state.epoch == at and _die())
    elif kind == "saving":  # half-way through writing the epoch checkpoint
        real = torch.save

        def save(obj, f, **kwargs):
            if isinstance(obj, dict) and "trainer" in obj and trainer.state.epoch == at:
                real(obj, f, **kwargs)
                f.truncate(64)
                f.flush()
                _die()
            return real(obj, f, **kwargs)

        torch.save = save
"""


def _cmd(bundle: str, root: Path, data: Path, datalist: Path, kill: str | None) -> list[str]:
    configs = REPO / "bundles" / bundle / "configs"
    files = [str(configs / "train.json")]
    if kill:
        base = json.loads((configs / "train.json").read_text())
        hook = f"$killhook.install(@train#trainer, @validate#evaluator, {kill!r})"
        root.mkdir(parents=True, exist_ok=True)
        overlay = root / f"kill_{kill.replace(':', '_')}.json"
        overlay.write_text(json.dumps({"imports": [*base["imports"], "$import killhook"],
                                       "initialize": [*base["initialize"], hook]}))  # fmt: skip
        files.append(str(overlay))
    return [
        sys.executable, "-m", "monai.bundle", "run", "training",
        "--config_file", json.dumps(files), "--meta_file", str(configs / "metadata.json"),
        "--synthetic", "false", "--dataset_dir", str(data), "--datalist_file", str(datalist),
        "--output_dir", str(root / "out"), "--ckpt_dir", str(root / "models"),
        "--training_recipe#max_epochs", str(EPOCHS), "--val_interval", "1",
        "--training_recipe#batch_size", "2", *TINY[bundle],
        "--mlflow_log_model", "false",  # the MLflow model is logged once, at the end: test_mlflow_model covers it
    ]  # fmt: skip


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _equal(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_equal, a, b))
    return a == b


@pytest.mark.slow
@pytest.mark.parametrize("bundle", sorted(KILLS))
def test_killed_and_restarted_run_ends_like_an_uninterrupted_one(bundle, tmp_path):
    data = Path(resolve_dataset_dir(tmp_path / "data", True, "idrid", 5, (160, 112)))
    full = build_datalist("idrid", data)
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": full["training"][:3], "testing": full["testing"][:1]}))
    (tmp_path / "killhook.py").write_text(HOOK)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", str(REPO))])}

    whole, broken = tmp_path / "whole", tmp_path / "broken"
    subprocess.run(_cmd(bundle, whole, data, datalist, None), cwd=REPO, env=env, check=True, capture_output=True)
    damaged = None
    for kill in [*KILLS[bundle], None]:  # None: the last restart, left to finish
        if kill == "truncate":  # the newest checkpoint is damaged: the restart falls back to the one before
            damaged = max(broken.glob("models/checkpoint_epoch=*.pt"), key=lambda p: int(p.stem.split("=")[1]))
            damaged.write_bytes(damaged.read_bytes()[:200])
            continue
        proc = subprocess.run(_cmd(bundle, broken, data, datalist, kill), cwd=REPO, env=env, capture_output=True,
                              text=True)  # fmt: skip
        assert proc.returncode == (-9 if kill else 0), f"{kill}: rc {proc.returncode}\n{proc.stderr[-3000:]}"
        if damaged is not None:  # the fall-back is said in the log, naming the damaged file
            assert f"checkpoint {damaged} is unreadable" in proc.stderr + proc.stdout
            damaged = None

    kept = sorted(p.name for p in (whole / "models").glob("*.pt"))
    assert kept == ["checkpoint_epoch=3.pt", "checkpoint_epoch=4.pt", "model.pt"]
    side_files = sorted(p.name for p in (whole / "models").iterdir() if p.suffix != ".pt")  # e.g. threshold.json
    # no temporary file of the killed save, and the same side files with the same contents
    assert sorted(p.name for p in (broken / "models").iterdir()) == sorted([*kept, *side_files])
    for name in side_files:
        assert (whole / "models" / name).read_bytes() == (broken / "models" / name).read_bytes(), name
    a, b = _load(whole / "models/checkpoint_epoch=4.pt"), _load(broken / "models/checkpoint_epoch=4.pt")
    for key in ("model", "optimizer", "lr_scheduler"):
        assert _equal(a[key], b[key]), key
    assert a["run_state"]["best_metric"] == b["run_state"]["best_metric"]
    assert a["run_state"]["best_metric_epoch"] == b["run_state"]["best_metric_epoch"]
    assert _equal(_load(whole / "models/model.pt"), _load(broken / "models/model.pt"))
