"""Inference sharded over a torch.distributed job: two gloo processes give one process's outputs and records, a
killed rank's finished photographs count on the re-run, and a folder held by one job refuses another."""

from __future__ import annotations

import csv
import datetime
import json
import os
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from monai.inferers import SimpleInferer
from monai.transforms import Activationsd, Compose, EnsureTyped, NormalizeIntensityd, Resized
from PIL import Image
from torch import nn
from torch.multiprocessing.spawn import ProcessException

from monai_exudate.data.transforms import IMAGENET_MEAN, IMAGENET_STD, FieldOfViewCropd, LoadFundusd, PadToSquared
from monai_exudate.inference import FolderInUseError, FundusInferenceRunner, InferenceReport, list_inference_inputs
from monai_exudate.inference.records import folder_lock
from monai_exudate.inference.sharding import JobRanks, merged_report
from monai_exudate.inference.summary import rank_table_path

SIZES = [(64, 96), (100, 72), (80, 80), (90, 120), (70, 70), (64, 64), (120, 90)]
OUTPUT_SUFFIXES = ("_EX_prob.png", "_EX_mask.png", "_overlay.jpg")


@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_every_item_goes_to_exactly_one_rank_in_order(world):
    items = list(range(11))
    shares = [JobRanks(rank, world).share(items) for rank in range(world)]
    assert sorted(i for share in shares for i in share) == items
    assert all(share == sorted(share) for share in shares)
    assert max(map(len, shares)) - min(map(len, shares)) <= 1


def test_a_job_of_one_needs_no_process_group():
    ranks = JobRanks()
    assert (ranks.rank, ranks.world_size, ranks.is_main, ranks.is_sharded) == (0, 1, True, False)
    assert ranks.from_main("x") == "x" and ranks.gather(3) == [3]


def test_merged_report_sums_the_ranks_and_keeps_every_failure():
    main = InferenceReport(processed=2, skipped=3, failed=[("a.jpg", "unreadable")], output_dir="o", run_id="r")
    other = InferenceReport(processed=4, failed=[("b.jpg", "non-finite")], output_dir="o", run_id="r")
    report = merged_report([main, other], found=10)
    assert (report.processed, report.skipped, report.found, report.run_id) == (6, 3, 10, "r")
    assert report.failed == [("a.jpg", "unreadable"), ("b.jpg", "non-finite")]


class _TinyNet(nn.Module):
    """A fixed random 3x3 convolution: deterministic logits that differ from pixel to pixel."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


def _dies_at_third_photograph(table: Path) -> _TinyNet:
    """The tiny network, dying (``os._exit``, as under a SIGKILL) at its third photograph once its first is recorded
    in ``table`` (a forward hook: the overlays' legend names the network's class, which stays the same)."""
    network, calls = _TinyNet(), []

    def hook(_module: nn.Module, _inputs: tuple) -> None:
        calls.append(1)
        if len(calls) == 3:
            deadline = time.monotonic() + 30
            while not table.is_file() and time.monotonic() < deadline:
                time.sleep(0.05)
            os._exit(1)

    network.register_forward_pre_hook(hook)
    return network


class _NonFinite(_TinyNet):
    """Logits that are NaN: every photograph fails (in strict mode the first stops the rank)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * float("nan")


class _WaitsForFile(_TinyNet):
    """Holds the job at its first photograph until ``release`` exists, announcing it in ``started``."""

    def __init__(self, started: Path, release: Path) -> None:
        super().__init__()
        self.started, self.release = started, release

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.started.touch()
        deadline = time.monotonic() + 60
        while not self.release.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        return super().forward(x)


def _runner(output_dir: Path, network: nn.Module, **kwargs) -> FundusInferenceRunner:
    preprocessing = Compose([
        LoadFundusd(lesions=[]), FieldOfViewCropd(keys=["image"]), PadToSquared(keys=["image"]),
        Resized(keys=["image"], spatial_size=(48, 48), mode="area"), EnsureTyped(keys="image", dtype=torch.float32),
        NormalizeIntensityd(keys="image", subtrahend=IMAGENET_MEAN, divisor=IMAGENET_STD, channel_wise=True),
    ])  # fmt: skip
    return FundusInferenceRunner(
        network, preprocessing, Compose([Activationsd(keys="pred", sigmoid=True)]), SimpleInferer(),
        output_dir=output_dir, progress=False, num_writers=1, overlay_format="jpeg", input_root=output_dir.parent,
        **kwargs,
    )  # fmt: skip


def _photos(folder: Path) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i, (height, width) in enumerate(SIZES):
        image = np.zeros((height, width, 3), np.uint8)
        image[4:-4, 4:-4] = rng.integers(0, 256, (height - 8, width - 8, 3))
        Image.fromarray(image).save(folder / f"p{i}.{'jpg' if i % 2 else 'png'}")
    (folder / "broken.jpg").write_text("not a photograph")


def _job(rank: int, world: int, init_file: str, root: str, kind: str) -> None:
    """One process of a ``world``-process gloo job segmenting ``root/photos`` into ``root/<kind>``."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    timeout = datetime.timedelta(seconds=60)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world, timeout=timeout)
    root_path = Path(root)
    out = root_path / kind
    network = {
        "sharded": _TinyNet,
        "killed": lambda: _dies_at_third_photograph(rank_table_path(out, 1)) if rank == 1 else _TinyNet(),
        "held": lambda: _WaitsForFile(root_path / "started", root_path / "release"),
        "strict": lambda: _NonFinite() if rank == 1 else _TinyNet(),
    }[kind]()
    result = root_path / f"{kind}-rank{rank}.json"
    try:
        runner = _runner(out, network, distributed=True, strict=kind == "strict")
        report = runner.run(list_inference_inputs(root_path / "photos"))
        result.write_text(json.dumps([report.processed, report.found]))
    except FolderInUseError as err:
        result.write_text(json.dumps({"refused": str(err)}))
    except Exception as err:  # recorded for the test, which checks every rank stopped and how
        result.write_text(json.dumps({"error": f"{type(err).__name__}: {err}"}))
    finally:
        dist.destroy_process_group()


def _two_ranks(root: Path, kind: str) -> None:
    init = root / f"init-{kind}-{uuid.uuid4().hex}"  # one rendezvous file per job: a stale one could join two jobs
    mp.spawn(_job, args=(2, str(init), str(root), kind), nprocs=2, join=True)


def _rows(folder: Path, name: str, drop: tuple[str, ...]) -> list[tuple]:
    with open(folder / name, newline="") as f:
        return sorted(tuple(v for k, v in row.items() if k not in drop) for row in csv.DictReader(f))


def _outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name.endswith(OUTPUT_SUFFIXES)}


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory) -> tuple[Path, Path, Path]:
    """The same photographs segmented by one process and by a two-process gloo job."""
    root = tmp_path_factory.mktemp("sharding")
    _photos(root / "photos")
    torch.set_num_threads(1)
    _runner(root / "single", _TinyNet()).run(list_inference_inputs(root / "photos"))
    _two_ranks(root, "sharded")
    return root, root / "single", root / "sharded"


def test_two_gloo_processes_write_what_one_process_writes(one_and_two):
    root, single, sharded = one_and_two
    outputs = _outputs(single)
    assert len(outputs) == len(SIZES) * len(OUTPUT_SUFFIXES)
    assert _outputs(sharded) == outputs  # masks, probability maps and overlays byte for byte
    # the merged records equal one process's, row for row: the time and run id aside
    assert _rows(sharded, "summary.csv", ("segmented_at",)) == _rows(single, "summary.csv", ("segmented_at",))
    assert _rows(sharded, "failures.csv", ("run",)) == _rows(single, "failures.csv", ("run",))
    manifests = [json.loads((folder / "manifest.json").read_text()) for folder in (single, sharded)]
    assert manifests[0]["settings"] == manifests[1]["settings"]
    fields = ("found", "processed", "skipped", "failed", "completed")
    counts = [{k: m["runs"][-1][k] for k in fields} for m in manifests]
    assert counts[0] == counts[1] == {"found": 8, "processed": 7, "skipped": 0, "failed": 1, "completed": True}
    assert [m["runs"][-1]["processes"] for m in manifests] == [1, 2]
    assert not list(sharded.glob(".summary.rank*")) and not (sharded / ".inference.lock").exists()
    # both ranks return the job's report
    assert [json.loads((root / f"sharded-rank{r}.json").read_text()) for r in (0, 1)] == [[7, 8], [7, 8]]


def test_a_killed_rank_leaves_its_finished_photographs_and_the_rerun_does_the_rest(one_and_two):
    root, single, _ = one_and_two
    with pytest.raises(ProcessException):  # rank 1 exits; rank 0 is stopped or fails waiting for it
        _two_ranks(root, "killed")
    killed = root / "killed"
    left = rank_table_path(killed, 1)
    assert left.is_file()  # rank 1 recorded a photograph before it died; the merge never ran
    done = {row[0] for name in ("summary.csv", left.name) if (killed / name).is_file()
            for row in _rows(killed, name, ())}  # fmt: skip
    assert 0 < len(done) < len(SIZES)
    report = _runner(killed, _TinyNet()).run(list_inference_inputs(root / "photos"))
    # one process finishes the job: the photographs either rank finished are skipped, only the missing ones are done
    assert (report.skipped, report.processed, len(report.failed)) == (len(done), len(SIZES) - len(done), 1)
    assert _outputs(killed) == _outputs(single)
    assert _rows(killed, "summary.csv", ("segmented_at",)) == _rows(single, "summary.csv", ("segmented_at",))
    assert not left.exists()
    runs = json.loads((killed / "manifest.json").read_text())["runs"]
    assert [r.get("completed") for r in runs] == [None, True]  # the killed job's record never finished


def test_a_folder_held_by_a_job_refuses_a_second_job_on_every_rank(tmp_path):
    _photos(tmp_path / "photos")
    (tmp_path / "held").mkdir()
    with folder_lock(tmp_path / "held", "first-job"):
        _two_ranks(tmp_path, "held")  # (its network would wait for a release that never comes)
    refusals = [json.loads((tmp_path / f"held-rank{r}.json").read_text()) for r in (0, 1)]
    assert all("first-job" in refusal["refused"] for refusal in refusals)
    assert not (tmp_path / "started").exists()
    # and the other way round: while a two-process job holds the folder, a one-process job is refused
    import threading

    job = threading.Thread(target=_two_ranks, args=(tmp_path, "held"))
    job.start()
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(FolderInUseError, match="in use by another inference run"):
            _runner(tmp_path / "held", _TinyNet()).run(list_inference_inputs(tmp_path / "photos"))
    finally:
        (tmp_path / "release").touch()
        job.join(timeout=120)
    assert [json.loads((tmp_path / f"held-rank{r}.json").read_text()) for r in (0, 1)] == [[7, 8], [7, 8]]


def test_a_rank_that_stops_stops_the_job_on_every_rank_without_a_hang(tmp_path):
    """Strict mode: rank 1's first photograph has a non-finite output; rank 1 stops, rank 0 finishes its share, both
    meet at the merge and stop, the failure recorded and the run marked incomplete."""
    _photos(tmp_path / "photos")
    (tmp_path / "photos" / "broken.jpg").unlink()  # the failure must come from a rank's share, not the planning
    _two_ranks(tmp_path, "strict")
    results = [json.loads((tmp_path / f"strict-rank{r}.json").read_text()) for r in (0, 1)]
    assert results[1]["error"].startswith("ValueError") and "non-finite" in results[1]["error"]
    assert results[0]["error"].startswith("RuntimeError: rank 1 of the inference job stopped")
    run = json.loads((tmp_path / "strict" / "manifest.json").read_text())["runs"][-1]
    assert run["completed"] is False and run["failed"] == 1 and run["processed"] >= 1
    assert "non-finite" in (tmp_path / "strict" / "failures.csv").read_text()


def test_a_strict_failure_while_planning_stops_every_rank_before_segmenting(tmp_path):
    _photos(tmp_path / "photos")
    (tmp_path / "photos" / "p0.jpg").write_bytes((tmp_path / "photos" / "p0.png").read_bytes())  # stem p0 twice
    (tmp_path / "photos" / "broken.jpg").unlink()
    _two_ranks(tmp_path, "strict")
    results = [json.loads((tmp_path / f"strict-rank{r}.json").read_text()) for r in (0, 1)]
    assert "output name 'p0'" in results[0]["error"] and "main rank stopped before segmenting" in results[1]["error"]
    assert not list((tmp_path / "strict").glob("*_mask.png"))
    assert json.loads((tmp_path / "strict" / "manifest.json").read_text())["runs"][-1]["completed"] is False


def test_distributed_without_a_process_group_is_refused_clearly(tmp_path):
    _photos(tmp_path / "photos")
    with pytest.raises(RuntimeError, match="torchrun and the bundle's multi_gpu_inference.json"):
        _runner(tmp_path / "out", _TinyNet(), distributed=True).run(list_inference_inputs(tmp_path / "photos"))


def test_the_merge_keeps_the_rows_of_a_photograph_listed_twice(tmp_path):
    """The second entry fails ("listed twice"); the first one's rows stay, and a re-run skips the photograph."""
    _photos(tmp_path / "photos")
    photo = str(tmp_path / "photos" / "p0.png")
    report = _runner(tmp_path / "out", _TinyNet()).run([photo, photo])
    assert (report.processed, [reason for _, reason in report.failed]) == (1, ["listed twice"])
    assert [row[0] for row in _rows(tmp_path / "out", "summary.csv", ())] == ["photos/p0.png"]
    assert _runner(tmp_path / "out", _TinyNet()).run([photo]).skipped == 1
