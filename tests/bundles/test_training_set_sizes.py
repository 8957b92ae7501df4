"""Any training-set size trains: one, an odd number, fewer images than a batch; full batches, one LR schedule."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from monai.bundle import run

from monai_exudate.data.indexers import build_datalist
from monai_exudate.data.synthetic import resolve_dataset_root

REPO = Path(__file__).resolve().parents[2]
BATCH = 2
TINY = {
    "exudate_dsm": {"spatial_size": [96, 64], "net_width": 8},
    "fundus_lesion_hrdecoder": {
        "net_width": 4, "stage1_channels": 8, "stem_channels": 8, "head_channels": 8, "hr_scale": 32,
        "resize_size": [96, 64], "crop_size": [64, 64], "warmup_iters": 1, "num_threads": 1,
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def datalist(tmp_path_factory) -> dict:
    """Seven training and one testing record of a tiny synthetic IDRiD-layout set."""
    root = resolve_dataset_root(tmp_path_factory.mktemp("sizes") / "data", True, "idrid", 10, (160, 112))
    full = build_datalist("idrid", root)
    return {"root": root, "training": full["training"][:7], "testing": full["testing"][:1]}


@pytest.mark.parametrize("bundle", sorted(TINY))
@pytest.mark.parametrize("num_train", [1, 3, 7])
def test_set_of_any_size_trains_one_epoch(bundle, num_train, datalist, tmp_path):
    configs = REPO / "bundles" / bundle / "configs"
    run(
        "training",
        config_file=str(configs / "train.json"),
        meta_file=str(configs / "metadata.json"),
        synthetic=False,
        dataset_dir=datalist["root"],
        datalist={"training": datalist["training"][:num_train], "testing": datalist["testing"]},
        output_dir=str(tmp_path / "out"),
        ckpt_dir=str(tmp_path / "models"),
        batch_size=BATCH,
        max_epochs=1,
        val_interval=1,
        **TINY[bundle],
    )
    state = torch.load(tmp_path / "models" / "checkpoint_epoch=1.pt", map_location="cpu", weights_only=False)
    iterations = math.ceil(num_train / BATCH)  # every image once, the last batch topped up to a full one
    assert state["trainer"]["epoch_length"] == iterations and state["trainer"]["iteration"] == iterations
    # the poly schedule was built for exactly the iterations that ran: it has reached its end
    assert state["lr_scheduler"]["last_epoch"] == iterations
    if "total_iters" in state["lr_scheduler"]:
        assert state["lr_scheduler"]["total_iters"] == iterations
    assert (tmp_path / "models" / "model.pt").is_file()
