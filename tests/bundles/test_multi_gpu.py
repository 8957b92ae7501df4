"""Multi-process runs with torchrun over gloo on CPU, two processes: DDP training (a short run of the bundle), and
inference and evaluation sharded by multi_gpu_inference.json and multi_gpu_evaluate.json, which give the outputs,
records and metrics of one process."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from monai_exudate.data.batch_sampler import FullBatchSampler

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "bundles" / "exudate_dsm" / "configs"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SAMPLER_SET_SIZES = (12, 7)  # full batches on both ranks; one image padded and a batch topped up


def _sampler_orders(rank: int, world: int, init_file: str, out_dir: str, batch: int) -> None:
    """One gloo process: the two training samplers of ``train.json``, built as the bundle builds them (no
    ``num_replicas``/``rank``: the process group supplies them), and their orders for epochs 0-2 written as JSON."""
    import torch.distributed as dist
    from monai.bundle import ConfigParser

    import monai_exudate.recipes.exudate_dsm

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        config = json.loads((CONFIGS / "train.json").read_text())
        orders = {}
        for size in SAMPLER_SET_SIZES:
            parser = ConfigParser({
                "seed": 0, "batch_size": batch, "training_recipe": {"batch_size": batch}, "num_workers": 0,
                "data": list(range(size)),
                "loader": {**config["train"]["dataloader"], "dataset": "@data"},
                "sampler": "$@loader.sampler",
                # the small branch's loader as train.json builds it (train#small_branch_loader)
                "small_branch_sampler": "$monai_exudate.recipes.exudate_dsm.small_branch_loader("
                "@data, True, @batch_size, @seed).sampler",
            }, globals={"monai_exudate": monai_exudate})  # fmt: skip
            orders[size] = {}
            for name in ("sampler", "small_branch_sampler"):
                sampler = parser.get_parsed_content(name)
                found = orders[size][name] = {"type": type(sampler).__name__, "replicas": sampler.num_replicas}
                found["epochs"] = []
                for epoch in range(3):
                    sampler.set_epoch(epoch)
                    found["epochs"].append(list(sampler))
        (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(orders))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_rank_orders(tmp_path_factory) -> dict[int, list[dict]]:
    """Each set size's sampler orders on rank 0 and rank 1 of one 2-process gloo group (batch 2)."""
    import torch.multiprocessing as mp

    folder = tmp_path_factory.mktemp("ranks")
    mp.spawn(_sampler_orders, args=(2, str(folder / "init"), str(folder), 2), nprocs=2, join=True)
    ranks = [json.loads((folder / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    return {size: [r[str(size)] for r in ranks] for size in SAMPLER_SET_SIZES}


@pytest.mark.parametrize("size", SAMPLER_SET_SIZES)
def test_branch_samplers_split_every_epoch_over_two_gloo_ranks(size, two_rank_orders):
    """The bundle's training samplers under a real 2-rank process group: each epoch every image is seen by the ranks
    (exactly once when the set divides into full batches on both), both ranks run the same number of full batches,
    the order follows (seed, epoch) only, and the two branches' loaders of one rank are shuffled differently."""
    batch = 2
    ranks = two_rank_orders[size]
    per_rank = math.ceil(math.ceil(size / 2) / batch) * batch
    for name in ("sampler", "small_branch_sampler"):
        assert [r[name]["type"] for r in ranks] == ["FullBatchSampler"] * 2
        assert [r[name]["replicas"] for r in ranks] == [2, 2]  # taken from the process group
        for epoch in range(3):
            shards = [r[name]["epochs"][epoch] for r in ranks]
            assert len(shards[0]) == len(shards[1]) == per_rank
            if size % (2 * batch) == 0:
                assert sorted(shards[0] + shards[1]) == list(range(size))
            else:
                assert set(shards[0]) | set(shards[1]) == set(range(size))
        assert ranks[0][name]["epochs"][1] != ranks[0][name]["epochs"][2]
    for rank, orders in enumerate(ranks):
        assert orders["sampler"]["epochs"] != orders["small_branch_sampler"]["epochs"]
        # the same seed and rank outside a process group give the same order: nothing but (seed, epoch) decides it
        for name, seed in (("sampler", 0), ("small_branch_sampler", 1)):
            alone = FullBatchSampler(list(range(size)), batch_size=batch, seed=seed, num_replicas=2, rank=rank)
            for epoch in range(3):
                alone.set_epoch(epoch)
                assert list(alone) == orders[name]["epochs"][epoch]


TINY = {
    "exudate_dsm": ["--model_settings#spatial_size", "[96,64]", "--model_settings#net_width", "8"],
    "fundus_lesion_hrdecoder": [
        "--model_settings#net_width", "4", "--model_settings#stage1_channels", "8",
        "--model_settings#stem_channels", "8", "--model_settings#head_channels", "8",
        "--model_settings#hr_scale", "32", "--model_settings#resize_size", "[96,64]",
        "--model_settings#crop_size", "[64,64]", "--training_recipe#warmup_iters", "1",
        "--training_recipe#batch_size", "2",
    ],
}  # fmt: skip


OUTPUT_SUFFIXES = ("_prob.png", "_mask.png", "_overlay.jpg")
TORCHRUN = pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")


def _bundle_run(bundle: str, configs: list[str], args: list[str], processes: int) -> None:
    """``monai.bundle run ARGS[0]`` of the bundle's ``configs``: one process, or ``processes`` under torchrun (the
    overlay for them among ``configs``), one torch thread each."""
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


@pytest.mark.slow
@TORCHRUN
@pytest.mark.parametrize("bundle", sorted(TINY))
def test_torchrun_two_processes_gloo(bundle, tmp_path):
    args = [
        "training", "--dataset_dir", str(tmp_path / "data"), "--output_dir", str(tmp_path / "out"),
        "--ckpt_dir", str(tmp_path / "models"), "--synthetic_num", "6", "--synthetic_size", "[160,112]",
        "--training_recipe#max_epochs", "2", "--val_interval", "1", *TINY[bundle],
    ]  # fmt: skip
    _bundle_run(bundle, ["train.json", "multi_gpu_train.json"], args, processes=2)
    state = torch.load(tmp_path / "models" / "checkpoint_epoch=2.pt", map_location="cpu", weights_only=False)
    assert not any(k.startswith("module.") for k in state["model"])  # saved unwrapped, loadable without DDP
    # one train epoch of 4 images on 2 ranks with batch 2: one iteration per rank and epoch
    assert state["trainer"]["epoch_length"] == 1 and state["trainer"]["iteration"] == 2
    # the best-model saver, attached on every rank in both bundles (recipes.common.validation_handlers), writes
    # model.pt once, from rank 0, with the unwrapped weights: the run neither hangs nor leaves a second copy
    best = torch.load(tmp_path / "models" / "model.pt", map_location="cpu", weights_only=True)
    assert best.keys() == state["model"].keys()
    assert sorted(p.name for p in (tmp_path / "models").glob("model*.pt")) == ["model.pt"]

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(bundle).experiment_id])
    assert len(runs) == 1  # logged by rank 0 only
    assert any(k.startswith("val_") for k in runs[0].data.metrics)


@pytest.mark.parametrize("bundle", sorted(TINY))
def test_main_rank_handlers_are_chosen_by_id_not_by_list_index(bundle, monkeypatch):
    """Rank-0-only handlers live in their own list and disable themselves off the main rank; no config of the bundle
    reaches a handler by its position, so reordering a list cannot switch off the wrong one."""
    from monai.bundle import ConfigParser

    configs = REPO / "bundles" / bundle / "configs"
    for path in configs.glob("*.json"):
        assert not re.search(r"handlers#\d", path.read_text()), path
    parser = ConfigParser()
    parser.read_config([str(configs / "train.json"), str(configs / "multi_gpu_train.json")])
    glue = "$monai_exudate.recipes.common.handlers_for_rank(@{0}#handlers, @{0}#handlers_main_rank, @is_main_rank)"
    assert parser["train#trainer#train_handlers"] == glue.format("train")
    assert parser["validate#evaluator#val_handlers"] == glue.format("validate")
    # the MLflow run handler and the package writer are built by one factory, the same in both bundles
    assert parser["train#handlers_main_rank"]["run_params"] == "@run_params"
    # train#handlers stays a list of components: MONAI's property check reads its ValidationHandler
    assert "ValidationHandler" in {h["_target_"] for h in parser["train#handlers"]}
    factories = {parser[f"{name}"]["_target_"].split(".")[-1] for name in (
        "train#handlers_main_rank", "validate#handlers", "validate#handlers_main_rank")}
    assert factories == {"training_main_rank_handlers", "validation_handlers", "validation_main_rank_handlers"}
    # what opens the MLflow store or writes the package is not even built off the main rank
    main_rank = ("train#handlers_main_rank", "validate#handlers_main_rank")
    for name in main_rank:
        assert parser[name]["_disabled_"] == "$not @is_main_rank", name
    for rank, expected in (("1", False), ("0", True)):
        monkeypatch.setenv("RANK", rank)
        parser.parse()
        assert parser.get_parsed_content("is_main_rank") is expected


@pytest.mark.parametrize("bundle", ["exudate_dsm", "fundus_lesion_hrdecoder"])
def test_every_rank_resumes_and_only_the_main_rank_saves_checkpoints(bundle, monkeypatch, checkpoint_stand_ins):
    """Both bundles pick the rank-0-only checkpoint saver by its id, not by a list index."""
    from monai.bundle import ConfigParser

    names = {}
    for rank in ("0", "1"):
        monkeypatch.setenv("RANK", rank)
        parser = ConfigParser()
        parser.read_config(str(REPO / "bundles" / bundle / "configs" / "train.json"))
        parser["resume_handler_probe"] = "$[type(h).__name__ for h in @train#checkpoint_handlers]"
        # the handlers alone, without building the trainer: a one-layer network, its optimizer and schedule
        parser.update(checkpoint_stand_ins)
        names[rank] = parser.get_parsed_content("resume_handler_probe")
    assert names == {"0": ["ResumeHandler", "AtomicCheckpointSaver"], "1": ["ResumeHandler"]}
    for config in (REPO / "bundles" / bundle / "configs").glob("*.json"):
        assert not re.search(r"handlers#\d|handlers_all\[\d", config.read_text()), config


@pytest.mark.parametrize("bundle", sorted(TINY))
def test_batch_norm_is_synchronised_across_gpus_on_request(bundle, monkeypatch):
    """The DSM authors synchronise BatchNorm over their GPUs (InPlaceABNSync), HRDecoder's mmseg configs use SyncBN:
    ``sync_batchnorm`` (on by default with CUDA; SyncBatchNorm needs it) converts every BatchNorm of the network."""
    from monai.bundle import ConfigParser

    monkeypatch.setenv("LOCAL_RANK", "0")
    configs = REPO / "bundles" / bundle / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "train.json"), str(configs / "multi_gpu_train.json")])
    assert parser["sync_batchnorm"] == "$torch.cuda.is_available()"
    parser.update({"sync_batchnorm": True})
    module = parser.get_parsed_content("network#module")
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and all(isinstance(m, torch.nn.SyncBatchNorm) for m in norms)


@pytest.fixture(scope="module", params=sorted(TINY))
def trained(request, tmp_path_factory) -> tuple[str, Path, list[str]]:
    """A tiny model of the bundle trained on 8 synthetic photographs; its folders as settings."""
    bundle = request.param
    root = tmp_path_factory.mktemp(bundle)
    data = ["--dataset_dir", str(root / "data"), "--ckpt_dir", str(root / "models"), "--synthetic_num", "8",
            "--synthetic_size", "[160,112]", *TINY[bundle]]  # fmt: skip
    epochs = ["--training_recipe#max_epochs", "1", "--val_interval", "1"]
    train = ["training", *data, "--output_dir", str(root / "train"), *epochs]
    _bundle_run(bundle, ["train.json"], train, 1)
    return bundle, root, data


def _rows(path: Path, drop: str) -> list[tuple]:
    with open(path, newline="") as f:
        return sorted(tuple(v for k, v in row.items() if k != drop) for row in csv.DictReader(f))


@pytest.mark.slow
@TORCHRUN
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


@pytest.mark.slow
@TORCHRUN
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
    # the set was split: rank 0, which alone draws the overlays, saw only its share of the photographs
    shown = [{p.name.split("_")[1] for p in (root / f"evaluation-{n}" / "eval" / "overlays").rglob("*.png")}
             for n in (1, 2)]  # fmt: skip
    assert len(shown[0]) >= 2 and shown[1] < shown[0] and len(shown[1]) == math.ceil(len(shown[0]) / 2)
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'evaluation-2' / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name(bundle).experiment_id])
    assert len(runs) == 1  # logged by rank 0 only
