"""Throughput and peak memory of a bundle's folder inference, against the bundle's network alone.

The pipeline measured is the bundle's own ``configs/inference.json``: its preprocessing, inferer (sliding window for
HRDecoder) and ``FundusInferenceRunner``, with random network weights. The network and input size are the shipped
model's (its ``model_package.json``); ``--profile default`` takes those of ``train.json``, ``--profile cpu`` or
``--profile idrid`` those of the bundle's ``configs/cpu.json`` or ``configs/idrid.json`` (the configuration meant for
IDRiD-size photographs) over it; ``--set key=value`` overrides any other setting (value in JSON).

- end-to-end: ``runner.run`` over the folder: reading and checking files, preprocessing in DataLoader workers, the
  network, inversion to the original grid, PNG maps, masks, overlays and summary.csv in writer threads.
- model-only: the same images preprocessed once beforehand, then ``inferer(batch, network)`` in a loop with the
  same batch size, the host-to-device copy and the copy of the result back included.
- host work: the CPU seconds per image of reading + preprocessing and of mapping back + writing, each timed alone
  in one thread: the work the runner must hide behind the network (on a GPU the mapping back runs there).

The ratio end-to-end / model-only is the share of the network's rate the whole pipeline keeps (target >= 90%). It
can only get there when the network is the bottleneck and the host work runs beside it: on a GPU, or on a CPU when
the host work per image is small beside the network's (``--threads`` leaves cores to the workers and writers).

Images: the real sample under ../shared/data/idrid_sample when present (``--data`` to choose another folder), else
``--num-images`` synthetic ones written by ``write_synthetic_dataset`` at 4288x2848. Peak memory: the process's
maximum resident set size (and the largest DataLoader worker's) and, on CUDA, ``torch.cuda.max_memory_allocated``.

``--processes 1 2`` measures instead the throughput of the bundle's own inference command with its shipped model, in
one process and sharded over two (``torchrun``, ``multi_gpu_inference.json``), and the scaling efficiency.

Examples: ``python bench/inference.py --bundle exudate_dsm``;
``python bench/inference.py --bundle exudate_dsm --processes 1 2 --num-workers 0 --num-writers 1``;
``python bench/inference.py --bundle exudate_dsm --profile idrid --limit 4``;
``python bench/inference.py --bundle fundus_lesion_hrdecoder --device cuda --amp --profile idrid --num-workers 8``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "idrid_sample"
BUNDLES = ("exudate_dsm", "fundus_lesion_hrdecoder")
# settings of a training profile that describe data, not the network or its input: never copied into inference
DATA_KEYS = {"dataset_dir", "synthetic", "layout", "train_section", "val_section", "num_workers", "num_threads"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", choices=BUNDLES, default="exudate_dsm")
    parser.add_argument(
        "--profile", choices=("shipped", "default", "cpu", "idrid"), default="shipped",
        help="the network and input settings: the shipped model's package, train.json's defaults or a profile's",
    )  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="override a setting")
    parser.add_argument("--data", type=Path, help="folder of photographs (default: the IDRiD sample or synthetic)")
    parser.add_argument("--num-images", type=int, default=8, help="synthetic images when no real data is found")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images (0: all)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--num-workers", type=int, default=1, help="DataLoader worker processes")
    parser.add_argument("--num-writers", type=int, default=2, help="writer threads")
    parser.add_argument("--formats", nargs="+", default=("prob", "mask", "overlay"))
    parser.add_argument("--overlay-format", choices=("png", "jpeg"), help="default: the bundle's setting")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--amp", action="store_true", help="fp16 autocast (CUDA only)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--repeat", type=int, default=1, help="passes over the images of the model-only loop")
    parser.add_argument(
        "--processes", type=int, nargs="+", metavar="N",
        help="instead: the throughput of the bundle's own command with its shipped model for each number of processes "
        "(1: python -m monai.bundle run; N > 1: torchrun with multi_gpu_inference.json), --threads torch threads each",
    )  # fmt: skip
    parser.add_argument("--copies", type=int, default=1, help="with --processes: each photograph K times, renamed")
    return parser.parse_args(argv)


def find_images(args: argparse.Namespace, scratch: Path) -> list[dict]:
    from monai_exudate.data.synthetic import write_synthetic_dataset
    from monai_exudate.inference import list_inference_inputs

    if args.data is not None:
        items = list_inference_inputs(args.data)
    elif (SAMPLE / "A. Segmentation" / "1. Original Images").is_dir():
        items = list_inference_inputs(SAMPLE / "A. Segmentation" / "1. Original Images")
    else:
        root = write_synthetic_dataset(scratch / "synthetic", "idrid", num=args.num_images, size=(4288, 2848))
        items = list_inference_inputs(root / "A. Segmentation" / "1. Original Images")
    return items[: args.limit] if args.limit else items


def overrides(args: argparse.Namespace, inference: dict[str, Any]) -> dict[str, Any]:
    """Settings applied on top of the bundle's inference.json: profile, command line, and the bench's own."""
    values: dict[str, Any] = {}
    if args.profile != "shipped":
        values["model_description"] = training_model_settings(args)
        values["calibration"] = None
    if args.profile not in ("shipped", "default"):
        profile = json.loads((REPO / "bundles" / args.bundle / "configs" / f"{args.profile}.json").read_text())
        values.update({k: v for k, v in profile.items() if k in inference and k not in DATA_KEYS})
    for item in args.set:
        key, sep, text = item.partition("=")
        if not sep or key not in inference:
            raise SystemExit(f"--set {item!r}: expected KEY=JSON with a key of {args.bundle}'s inference.json")
        values[key] = json.loads(text)
    values.update(
        device=f"$torch.device({args.device!r})",
        amp=bool(args.amp),
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        num_writers=args.num_writers,
        formats=list(args.formats),
        overwrite=True,
        progress=False,
        # random weights: the rate does not depend on them
        network="$@network_def.to(@device).eval()",
    )
    if args.overlay_format is not None:
        values["overlay_format"] = args.overlay_format
    return values


def training_model_settings(args: argparse.Namespace) -> dict[str, Any]:
    """``model_settings`` as the bundle's training builds them with ``--profile`` (train.json and its overlay)."""
    from monai.bundle import ConfigParser

    configs = REPO / "bundles" / args.bundle / "configs"
    files = [configs / "train.json"] + ([configs / f"{args.profile}.json"] if args.profile != "default" else [])
    parser = ConfigParser()
    parser.read_config([str(f) for f in files])
    return parser.get_parsed_content("model_settings")


def build(args: argparse.Namespace, output_dir: Path):
    """The bundle's parsed config with the overrides, and a description of them."""
    from monai.bundle import ConfigParser

    config = REPO / "bundles" / args.bundle / "configs" / "inference.json"
    parser = ConfigParser()
    parser.read_config(str(config))
    parser.read_meta(str(config.with_name("metadata.json")))  # the runner's provenance names the bundle
    values = overrides(args, parser.get())
    for key, value in values.items():
        parser[key] = value
    parser["output_dir"] = str(output_dir)
    torch.manual_seed(0)
    hidden = ("network", "device", "progress", "overwrite", "model_description", "calibration")
    shown = {k: v for k, v in values.items() if k not in hidden}
    return parser, shown


def autocast(args: argparse.Namespace):
    if args.amp and torch.device(args.device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def preprocess(runner, items: list[dict]) -> tuple[list[dict], float]:
    """Samples as the runner's DataLoader gives them, and the CPU seconds per image it took in this thread."""
    from monai_exudate.inference.dataset import InferenceDataset

    dataset = InferenceDataset(items, runner.preprocessing, runner.image_key, keep_original="overlay" in runner.formats)
    start = time.thread_time()
    samples = [dataset[i] for i in range(len(dataset))]
    spent = time.thread_time() - start
    failed = [s for s in samples if "error" in s]
    if failed:
        raise SystemExit(f"bench images could not be read: {failed}")
    return samples, spent / len(samples)


def model_only_rate(runner, samples: list[dict], args: argparse.Namespace) -> tuple[float, list[torch.Tensor]]:
    """Images/s of the inferer and network alone on the preprocessed images, and the predictions."""
    key = runner.image_key
    batches = [
        torch.stack([s[key].as_tensor() for s in samples[i : i + args.batch_size]])
        for i in range(0, len(samples), args.batch_size)
    ]
    network = runner.network
    with torch.no_grad(), autocast(args):
        runner.inferer(batches[0].to(args.device), network)  # warm-up
        synchronize(args.device)
        start = time.perf_counter()
        for _ in range(args.repeat):
            preds = [runner.inferer(batch.to(args.device), network).float().cpu() for batch in batches]
        synchronize(args.device)
    rate = args.repeat * len(samples) / (time.perf_counter() - start)
    return rate, [p for batch in preds for p in batch]


def writing_seconds(runner, samples: list[dict], preds: list[torch.Tensor], scratch: Path) -> float:
    """CPU seconds per image of post-processing and inverting one prediction and writing its files, in this thread."""
    from monai_exudate.inference.postprocessing import to_probabilities
    from monai_exudate.inference.run_state import RunState
    from monai_exudate.inference.summary import SummaryTable

    state = RunState(scratch, SummaryTable(scratch / "summary.csv"), strict=True)
    start = time.thread_time()
    for sample, pred in zip(samples, preds):
        info = {k: v for k, v in sample.items() if k != runner.image_key}
        # branch fusion and sigmoid, as in the run
        prob = to_probabilities(runner.postprocessing, pred.to(runner.device), runner.lesion_names)
        levels, volume = runner._map_back(prob, sample[runner.image_key], info)
        runner._write(state, levels, volume, info)
    spent = time.thread_time() - start
    state.raise_if_fatal()
    return spent / len(samples)


def peak_memory_mib() -> tuple[float, float]:
    """Maximum resident set size of this process and of its largest finished child, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def sharded_throughput(args: argparse.Namespace) -> None:
    """Photographs per second of the bundle's inference command, with the model it ships, for each process count.

    Each command segments the same photographs into a fresh folder; its processes run ``--threads`` torch threads
    (default 1, ``OMP_NUM_THREADS``), ``--num-workers`` loader workers and ``--num-writers`` writer threads each. The
    job's rate is photographs / the run's own seconds in ``manifest.json`` (from taking the folder to the merged
    records, so start-up and model loading are left out; the command's rate with them is shown beside it). Scaling
    efficiency = rate(N) / (N x rate(first count)).
    """
    configs = REPO / "bundles" / args.bundle / "configs"
    threads = str(args.threads or 1)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        photos = scratch / "photos"
        photos.mkdir()
        for item in find_images(args, scratch):
            source = Path(item["image"]).resolve()
            for copy in range(args.copies):
                (photos / f"{source.stem}_{copy}{source.suffix}").symlink_to(source)
        count = len(list(photos.iterdir()))
        rows = []
        for processes in args.processes:
            files = [configs / "inference.json"] + ([configs / "multi_gpu_inference.json"] if processes > 1 else [])
            if processes == 1:
                launcher = [sys.executable, "-m"]
            else:
                launcher = ["torchrun", "--standalone", f"--nproc_per_node={processes}", "-m"]
            out = scratch / f"out-{processes}"
            command = [
                *launcher, "monai.bundle", "run", "--config_file", str([str(f) for f in files]),
                "--meta_file", str(configs / "metadata.json"), "--dataset_dir", str(photos), "--output_dir", str(out),
                "--amp", str(bool(args.amp)), "--progress", "False", "--batch_size", str(args.batch_size),
                "--num_workers", str(args.num_workers), "--num_writers", str(args.num_writers),
            ]  # fmt: skip
            start = time.perf_counter()
            result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env={**os.environ,
                                    "OMP_NUM_THREADS": threads})  # fmt: skip
            wall = time.perf_counter() - start
            if result.returncode != 0:
                raise SystemExit(f"{processes} processes: the command failed:\n{result.stderr[-3000:]}")
            record = json.loads((out / "manifest.json").read_text())["runs"][-1]
            if record["processed"] != count:
                raise SystemExit(f"{processes} processes: {record['processed']} of {count} photographs processed")
            rows.append((processes, count / record["seconds"], count / wall))
    print(f"bundle {args.bundle}, shipped model, {count} photographs, torch threads {threads} per process, "
          f"{args.num_workers} loader workers and {args.num_writers} writer threads per process")  # fmt: skip
    print("| processes | photographs/s (run) | photographs/s (command, start-up included) | speed-up | efficiency |")
    print("|---|---|---|---|---|")
    base_processes, base, _ = rows[0]
    for processes, rate, command_rate in rows:
        speedup = rate / base
        efficiency = speedup * base_processes / processes
        print(f"| {processes} | {rate:.4f} | {command_rate:.4f} | {speedup:.2f}x | {100 * efficiency:.0f}% |")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.processes:
        return sharded_throughput(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        items = find_images(args, scratch)
        parser, shown = build(args, scratch / "out")
        runner = parser.get_parsed_content("runner")
        network = runner.network
        before, _ = peak_memory_mib()
        start = time.perf_counter()
        report = runner.run(items)
        e2e = len(items) / (time.perf_counter() - start)
        if report.failed or report.processed != len(items):
            raise SystemExit(f"the run did not process every image: {report}")
        peak, worker_peak = peak_memory_mib()
        cuda_peak = torch.cuda.max_memory_allocated() / 2**20 if torch.device(args.device).type == "cuda" else None
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # host work timed in one thread, as a DataLoader worker runs
        samples, reading = preprocess(runner, items)
        torch.set_num_threads(threads)
        model, preds = model_only_rate(runner, samples, args)
        (scratch / "writes").mkdir()
        runner.output_dir = scratch / "writes"
        runner.layout.output_dir = runner.output_dir
        torch.set_num_threads(1)
        writing = writing_seconds(runner, samples, preds, runner.output_dir)
        torch.set_num_threads(threads)
    params = sum(p.numel() for p in network.parameters()) / 1e6
    print(
        f"bundle {args.bundle}, profile {args.profile}, {params:.2f}M parameters, input "
        f"{tuple(samples[0][runner.image_key].shape[1:])}, device {args.device}{' amp' if args.amp else ''}, "
        f"torch threads {torch.get_num_threads()}, {len(items)} images"
    )
    print(f"settings   : {json.dumps(shown)}, overlay {parser['overlay_format']}")
    print(f"end-to-end : {e2e:.4f} images/s")
    print(f"model-only : {model:.4f} images/s ({1 / model:.2f} s per image)")
    print(f"ratio      : {100 * e2e / model:.1f}% of model-only")
    print(f"host work  : {reading:.2f} CPU-s reading + {writing:.2f} CPU-s writing per image (one thread each)")
    print(f"peak RSS   : {peak:.0f} MiB (before the run {before:.0f} MiB), largest worker {worker_peak:.0f} MiB")
    if cuda_peak is not None:
        print(f"peak CUDA  : {cuda_peak:.0f} MiB allocated")


if __name__ == "__main__":
    sys.exit(main())
