"""Shared fixtures: the real IDRiD sample beside the repository (required: CI always has it) and torch settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

IDRID_SAMPLE = Path(
    os.environ.get("IDRID_SAMPLE_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "idrid_sample")
)

# Tests are CPU-sized; one thread avoids oversubscribing small CI machines, where two threads ran tiny steps slower.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def idrid_sample() -> Path:
    """Root of the 8-image IDRiD sample (official layout); the test fails when it is missing, so a checkout without
    ``../shared`` cannot pass by skipping every test on real photographs."""
    if not (IDRID_SAMPLE / "A. Segmentation").is_dir():
        pytest.fail(
            f"IDRiD sample not found at {IDRID_SAMPLE}: the tests need ../shared/data/idrid_sample beside the "
            "repository (or IDRID_SAMPLE_DIR pointing to an IDRiD folder with 'A. Segmentation')",
            pytrace=False,
        )
    return IDRID_SAMPLE


@pytest.fixture(scope="session")
def run_artifacts():
    """A function listing every artifact file of an MLflow run (``client``, ``run_id``), folders walked."""

    def walk(client, run_id: str, path: str | None = None) -> set[str]:
        files = set()
        for item in client.list_artifacts(run_id, path):
            files |= walk(client, run_id, item.path) if item.is_dir else {item.path}
        return files

    return walk


@pytest.fixture(scope="session")
def checkpoint_stand_ins() -> dict[str, object]:
    """Config overrides that build a bundle's ``train#checkpoint_handlers`` alone, without the trainer and its data:
    a one-layer network, its optimiser, schedule and an idle engine stand in for the real ones."""
    stand_ins = {
        "network": "$torch.nn.Linear(1, 1)",
        "optimizer": "$torch.optim.SGD(@train#checkpoint_handlers#network.parameters())",
        "lr_scheduler": "$torch.optim.lr_scheduler.StepLR(@train#checkpoint_handlers#optimizer, 1)",
        "trainer": "$__import__('ignite.engine').engine.Engine(lambda engine, batch: None)",
        "random_transforms": None,
        "evaluator": None,
    }
    return {f"train#checkpoint_handlers#{name}": value for name, value in stand_ins.items()}
