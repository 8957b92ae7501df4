"""Run the rows of a paper table with the bundle's own training and evaluation, seed by seed, each in a process."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from monai_exudate.bundle.paths import find_bundle_root
from monai_exudate.reproduction.rows import BUNDLE_METRICS, TableRow, published_values

__all__ = ["RowResult", "mean_std", "run_row", "run_table"]


class RowResult(dict):
    """One row's outcome: ``name``, ``seeds``, per-seed ``metrics`` (fractions), ``seconds``, ``peak_mib``,
    and the ``published`` values (in %)."""


def _bundle_configs(bundle: str, overlays: Sequence[str]) -> tuple[Path, list[str]]:
    folder = Path(find_bundle_root(bundle)) / "configs"
    resolved = []
    for overlay in overlays:
        path = Path(overlay) if Path(overlay).is_file() else folder / overlay
        if not path.is_file():
            raise FileNotFoundError(f"overlay {overlay!r} not found (as a path or in {folder})")
        resolved.append(str(path))
    return folder, resolved


def _child_run(kwargs: Mapping[str, Any], workdir: Path, name: str) -> tuple[float, float]:
    """Run one bundle workflow in a child process; returns its wall seconds and peak resident memory (MiB)."""
    args_file = workdir / f"{name}.json"
    args_file.write_text(json.dumps(kwargs, indent=1))
    start = time.perf_counter()
    with open(workdir / f"{name}.log", "w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "monai_exudate.reproduction.child", str(args_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        # wait4, not wait: the child's own resource usage, so each run's peak memory is its own
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    if process.returncode != 0:
        tail = (workdir / f"{name}.log").read_text()[-2000:]
        raise RuntimeError(f"{name} failed (exit code {process.returncode}); log {workdir / (name + '.log')}:\n{tail}")
    return seconds, usage.ru_maxrss / 1024  # Linux reports kilobytes


def run_row(
    bundle: str,
    row: TableRow,
    seeds: Sequence[int],
    workdir: Path,
    overlays: Sequence[str] = (),
    overrides: Mapping[str, Any] | None = None,
    experiment: str = "reproduction",
    tracking_uri: str | None = None,
    dataset: str | None = None,
    log: Callable[[str], None] = print,
) -> RowResult:
    """Train and evaluate ``row`` once per seed; each training is an MLflow run ``<row>_seed<N>`` in ``experiment``."""
    folder, overlay_files = _bundle_configs(bundle, overlays)
    train_configs = [str(folder / "train.json"), *overlay_files]
    eval_configs = [str(folder / "train.json"), str(folder / "evaluate.json"), *overlay_files]
    tracking_uri = tracking_uri or f"sqlite:///{workdir / 'mlflow.db'}"
    result = RowResult(name=row.name, seeds=list(seeds), metrics=[], seconds=[], peak_mib=[])
    for seed in seeds:
        run_dir = workdir / row.name / f"seed{seed}"
        run_dir.mkdir(parents=True, exist_ok=True)
        common = {
            **dict(overrides or {}), **row.overrides, "seed": int(seed),
            "output_dir": str(run_dir / "outputs"), "ckpt_dir": str(run_dir / "models"),
            "tracking_uri": tracking_uri, "experiment_name": experiment, "run_name": f"{row.name}_seed{seed}",
            "meta_file": str(folder / "metadata.json"),
        }  # fmt: skip
        train_s, train_mib = _child_run(
            {"run_id": "training", "config_file": train_configs, **common}, run_dir, "train"
        )
        eval_s, eval_mib = _child_run({"run_id": "evaluating", "config_file": eval_configs, **common}, run_dir, "eval")
        metrics = json.loads((run_dir / "outputs" / "eval" / "metrics.json").read_text())
        scores = {name: float(metrics[key]) for key, name in BUNDLE_METRICS[bundle].items()}
        result["metrics"].append(scores)
        result["seconds"].append(train_s + eval_s)
        result["peak_mib"].append(max(train_mib, eval_mib))
        log(f"{row.name} seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    result["published"] = published_values(bundle, dataset, row.published_key)
    return result


def run_table(
    bundle: str, rows: Sequence[TableRow], seeds: Sequence[int], workdir: Path, **kwargs: Any
) -> list[RowResult]:
    """Every row of the table (see :func:`run_row`)."""
    return [run_row(bundle, row, seeds, workdir, **kwargs) for row in rows]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value)."""
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0
