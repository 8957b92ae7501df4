"""Throughput and peak memory of folder inference with FundusInferenceRunner, against the network alone.

End-to-end: ``FundusInferenceRunner.run`` over a folder of IDRiD-size photographs (4288x2848): reading,
preprocessing of the bundle's inference config, network, inversion to the original grid, PNG maps, masks, overlays
and summary.csv. Model-only: the same images preprocessed once beforehand, then fed to the network in batches of
the same size in a loop (host-to-device copy and synchronisation included). Both report images/s; their ratio is
the share of the network's rate the whole pipeline keeps (target >= 90%, reachable when the network, not the
per-image file work, is the bottleneck, e.g. a full-size network on a GPU with DataLoader workers).

Images: the real sample under /work/shared/data/idrid_sample when present (``--data`` to choose another folder),
else ``--num-images`` synthetic ones written by ``write_synthetic_dataset`` at 4288x2848. Peak memory: the
process's maximum resident set size (plus the largest DataLoader worker's) and, on CUDA,
``torch.cuda.max_memory_allocated``.

Example: ``python bench/inference.py --width 8 --layers 1 1 1 1``; on a GPU:
``python bench/inference.py --device cuda --amp --width 64 --layers 3 4 6 3 --num-workers 8``;
HRDecoder: ``python bench/inference.py --network hrdecoder --width 18 --spatial-size 960 960 --hr-scale 480``.
"""

from __future__ import annotations

import argparse
import contextlib
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "idrid_sample"
CONFIG = REPO / "bundles" / "exudate_dsm" / "configs" / "inference.json"
HRDECODER_LESIONS = ("EX", "HE", "SE", "MA")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="folder of photographs (default: the IDRiD sample or synthetic)")
    parser.add_argument("--num-images", type=int, default=8, help="synthetic images when no real data is found")
    parser.add_argument("--network", choices=("exudate_dsm", "hrdecoder"), default="exudate_dsm")
    parser.add_argument("--arch", default="pspnet", help="exudate_dsm architecture")
    parser.add_argument("--width", type=int, default=16, help="ResNet stem / HRNet width")
    parser.add_argument("--layers", type=int, nargs=4, default=(1, 1, 1, 1), help="exudate_dsm ResNet blocks")
    parser.add_argument("--hr-scale", type=int, default=960, help="HRDecoder window side")
    parser.add_argument("--spatial-size", type=int, nargs=2, default=(384, 256), help="network input (W, H)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--num-workers", type=int, default=1, help="DataLoader worker processes")
    parser.add_argument("--num-writers", type=int, default=2, help="writer threads")
    parser.add_argument("--formats", nargs="+", default=("prob", "mask", "overlay"))
    parser.add_argument("--overlay-format", choices=("png", "jpeg"), default="png")
    parser.add_argument("--nifti", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--amp", action="store_true", help="fp16 autocast (CUDA only)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--repeat", type=int, default=2, help="passes over the images of the model-only loop")
    return parser.parse_args(argv)


def find_images(args: argparse.Namespace, scratch: Path) -> list[dict]:
    from monai_exudate.data.synthetic import write_synthetic_dataset
    from monai_exudate.inference import list_inference_inputs

    if args.data is not None:
        return list_inference_inputs(args.data)
    real = SAMPLE / "A. Segmentation" / "1. Original Images"
    if real.is_dir():
        return list_inference_inputs(real)
    root = write_synthetic_dataset(scratch / "synthetic", "idrid", num=args.num_images, size=(4288, 2848))
    return list_inference_inputs(root / "A. Segmentation" / "1. Original Images")


def build(args: argparse.Namespace) -> tuple[torch.nn.Module, object, list[str]]:
    """Network with random weights in eval mode, the bundle's preprocessing, and the lesion names."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(CONFIG))
    parser["spatial_size"] = list(args.spatial_size)
    preprocessing = parser.get_parsed_content("preprocessing")
    torch.manual_seed(0)
    if args.network == "hrdecoder":
        from monai_exudate.networks import hrdecoder

        if not hasattr(hrdecoder, "build_hrdecoder"):
            raise SystemExit("monai_exudate.networks.hrdecoder.build_hrdecoder is not available")
        lesions = list(HRDECODER_LESIONS)
        network = hrdecoder.build_hrdecoder(width=args.width, num_classes=len(lesions), hr_scale=args.hr_scale)
    else:
        from monai_exudate.networks import build_exudate_network

        lesions = ["EX"]
        network = build_exudate_network(args.arch, dual=True, out_channels=1, width=args.width, layers=args.layers)
    return network.to(args.device).eval(), preprocessing, lesions


def autocast(args: argparse.Namespace):
    if args.amp and torch.device(args.device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def model_only_rate(network, preprocessing, items: list[dict], args: argparse.Namespace) -> float:
    """Images/s of the network alone on the images preprocessed beforehand."""
    tensors = [preprocessing({"image": item["image"]})["image"].as_tensor() for item in items]
    batches = [torch.stack(tensors[i : i + args.batch_size]) for i in range(0, len(tensors), args.batch_size)]
    with torch.no_grad(), autocast(args):
        network(batches[0].to(args.device))  # warm-up
        synchronize(args.device)
        start = time.perf_counter()
        for _ in range(args.repeat):
            for batch in batches:
                network(batch.to(args.device)).float().cpu()
        synchronize(args.device)
    return args.repeat * len(tensors) / (time.perf_counter() - start)


def end_to_end_rate(network, preprocessing, lesions, items, output_dir: Path, args) -> float:
    """Images/s of the runner over the folder, every output written."""
    from monai.inferers import SimpleInferer

    from monai_exudate.inference import FundusInferenceRunner

    runner = FundusInferenceRunner(
        network,
        preprocessing,
        SimpleInferer(),
        lesions,
        output_dir,
        device=args.device,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        amp=args.amp,
        formats=args.formats,
        nifti=args.nifti,
        overlay_format=args.overlay_format,
        overwrite=True,
        progress=False,
        num_writers=args.num_writers,
    )
    start = time.perf_counter()
    report = runner.run(items)
    elapsed = time.perf_counter() - start
    if report.failed or report.processed != len(items):
        raise SystemExit(f"the run did not process every image: {report}")
    return len(items) / elapsed


def peak_memory_mib() -> tuple[float, float]:
    """Maximum resident set size of this process and of its largest finished child, in MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as scratch:
        items = find_images(args, Path(scratch))
        network, preprocessing, lesions = build(args)
        with torch.no_grad(), autocast(args):
            network(torch.zeros(1, 3, *args.spatial_size, device=args.device))  # one-time initialisation
        before, _ = peak_memory_mib()
        e2e = end_to_end_rate(network, preprocessing, lesions, items, Path(scratch) / "out", args)
        peak, worker_peak = peak_memory_mib()
        cuda_peak = torch.cuda.max_memory_allocated() / 2**20 if torch.device(args.device).type == "cuda" else None
        model = model_only_rate(network, preprocessing, items, args)
    params = sum(p.numel() for p in network.parameters()) / 1e6
    print(
        f"network {args.network} (width {args.width}, {params:.2f}M parameters), input {tuple(args.spatial_size)}, "
        f"batch {args.batch_size}, workers {args.num_workers}, writers {args.num_writers}, device {args.device}"
        f"{' amp' if args.amp else ''}, torch threads {torch.get_num_threads()}, formats {list(args.formats)}"
        f"{' + nifti' if args.nifti else ''}, overlay {args.overlay_format}, {len(items)} images"
    )
    print(f"end-to-end : {e2e:.3f} images/s")
    print(f"model-only : {model:.3f} images/s")
    print(f"ratio      : {100 * e2e / model:.1f}% of model-only")
    print(f"peak RSS   : {peak:.0f} MiB (before the run {before:.0f} MiB), largest worker {worker_peak:.0f} MiB")
    if cuda_peak is not None:
        print(f"peak CUDA  : {cuda_peak:.0f} MiB allocated")


if __name__ == "__main__":
    sys.exit(main())
