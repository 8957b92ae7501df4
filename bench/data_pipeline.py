"""Throughput of the IDRiD input pipeline (decode + preprocess), uncached vs cached, and of the synthetic generator.

Pipeline, the exudate_dsm bundle's own: ``monai_exudate.data.preprocessing.fundus_load_transforms`` (``LoadFundusd``:
JPEG image + EX mask -> ``FieldOfViewCropd`` -> ``SmoothInverseResized`` to the training size, area for the image,
nearest for the mask -> ``CastToTyped`` float32) -> ``NormalizeIntensityd`` (ImageNet statistics, channel-wise). Rows:
  uncached   a MONAI ``Dataset``, one pass over the images (every item decoded and preprocessed);
  cache fill building the ``CacheDataset`` (the same work, done once);
  cached     later epochs over the ``CacheDataset`` (median epoch of ``--epochs - 1``);
  cached+aug the bundle's training order: everything up to ``EnsureTyped`` cached, then ``RandFlipRotate90d`` and
             ``NormalizeIntensityd`` run per epoch on the cached tensors;
  generator  ``generate_fundus`` at the training size.
``--breakdown`` adds the seconds per image spent in each transform of the uncached pipeline.

Example: ``python bench/data_pipeline.py --root ../shared/data/idrid_sample --epochs 4``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

DEFAULT_ROOT = Path(
    os.environ.get("IDRID_SAMPLE_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "idrid_sample")
)
KEYS = ("image", "label")


def parse_size(text: str) -> tuple[int, int]:
    """``"WIDTHxHEIGHT"`` -> (width, height)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 1440x960, got {text!r}") from None
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError(f"--size must be at least 16x16, got {text!r}")
    return width, height


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="IDRiD folder (official layout)")
    parser.add_argument("--size", type=parse_size, default=(1440, 960), help="training WIDTHxHEIGHT")
    parser.add_argument("--epochs", type=int, default=4, help="epochs over the cache (the first one is not timed)")
    parser.add_argument("--generator-num", type=int, default=4, help="synthetic images to render (0: skip)")
    parser.add_argument("--breakdown", action="store_true", help="also time each transform (one more pass)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the first epoch over the cache is not timed)")
    if args.generator_num < 0:
        parser.error("--generator-num must be non-negative")
    if not (args.root / "A. Segmentation").is_dir():
        parser.error(f"--root {args.root} is not an IDRiD folder (no 'A. Segmentation' inside)")
    return args


def load_items(root: Path) -> list[dict]:
    """Every image of the IDRiD folder (training and testing) with its EX mask, paths absolute."""
    from monai_exudate.data.indexers import index_idrid, load_datalist

    datalist = index_idrid(root, lesions=("EX",))
    items = []
    for section in ("training", "testing"):
        items += [item for item in load_datalist(datalist, section, root, ("EX",)) if item["EX"] is not None]
    if not items:
        raise SystemExit(f"no image with an EX mask under {root}")
    return items


def pipelines(size: tuple[int, int]):
    """(deterministic part, per-epoch training part, full deterministic pipeline)."""
    from monai.transforms import Compose, NormalizeIntensityd

    from monai_exudate.data.preprocessing import fundus_load_transforms
    from monai_exudate.data.transforms import IMAGENET_MEAN, IMAGENET_STD, RandFlipRotate90d

    # MONAI's PIL reader orders space as (width, height), so the spatial size is given as (width, height)
    load = fundus_load_transforms(("EX",), size, labels="resize", resize_filter="area")
    normalize = NormalizeIntensityd(keys="image", subtrahend=IMAGENET_MEAN, divisor=IMAGENET_STD, channel_wise=True)
    augment = RandFlipRotate90d(keys=KEYS, prob=1.0)
    return Compose(load), Compose([augment, normalize]), Compose([*load, normalize])


def epoch_seconds(dataset) -> float:
    start = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    return time.perf_counter() - start


def stage_seconds(items: list[dict], pipeline) -> dict[str, float]:
    """Seconds spent in each transform of ``pipeline`` over ``items`` (applied one after another)."""
    totals: dict[str, float] = {}
    for item in items:
        data = dict(item)
        for transform in pipeline.transforms:
            start = time.perf_counter()
            data = transform(data)
            name = type(transform).__name__
            totals[name] = totals.get(name, 0.0) + time.perf_counter() - start
    return totals


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch
    from monai.data import CacheDataset, Dataset
    from monai.transforms import Compose

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    items = load_items(args.root)
    num = len(items)
    cached_part, epoch_part, full = pipelines(args.size)
    width, height = args.size
    rows: list[tuple[str, int, float]] = []

    rows.append(("uncached Dataset, one pass", num, epoch_seconds(Dataset(items, transform=full))))
    breakdown = stage_seconds(items, full) if args.breakdown else {}

    start = time.perf_counter()
    cache = CacheDataset(items, transform=full, num_workers=1, progress=False)
    rows.append(("cache fill (CacheDataset)", num, time.perf_counter() - start))
    times = [epoch_seconds(cache) for _ in range(args.epochs)][1:]
    rows.append((f"cached, median of epochs 2..{args.epochs}", num, statistics.median(times)))
    sample = cache[0]
    cache_mib = sum(sample[k].numel() * sample[k].element_size() for k in KEYS) / 2**20

    train_cache = CacheDataset(
        items, transform=Compose([*cached_part.transforms, *epoch_part.transforms]), num_workers=1, progress=False
    )
    times = [epoch_seconds(train_cache) for _ in range(args.epochs)][1:]
    rows.append((f"cached + flip/rot90 + normalize, epochs 2..{args.epochs}", num, statistics.median(times)))

    if args.generator_num:
        from monai_exudate.data.synthetic import generate_fundus

        generate_fundus((64, 64), seed=0)  # warm-up: first-call imports and allocations
        start = time.perf_counter()
        for seed in range(args.generator_num):
            generate_fundus(args.size, seed=seed)
        rows.append((f"synthetic generate_fundus {width}x{height}", args.generator_num, time.perf_counter() - start))

    from PIL import Image

    with Image.open(items[0]["image"]) as first:
        source = f"{first.size[0]}x{first.size[1]}"
    print(
        f"{num} images with EX masks under {args.root} (first: {Path(items[0]['image']).name}, {source}); "
        f"target {width}x{height}; {torch.get_num_threads()} torch threads; cached item {cache_mib:.1f} MiB"
    )
    print(f"{'pipeline':44s} {'images':>7s} {'s':>8s} {'images/s':>9s} {'ms/image':>9s}")
    for name, count, seconds in rows:
        rate = count / seconds if seconds > 0 else float("inf")
        print(f"{name:44s} {count:7d} {seconds:8.3f} {rate:9.4g} {1e3 * seconds / count:9.2f}")
    if breakdown:
        print(
            "per transform, uncached pass (s/image): " + ", ".join(f"{k} {v / num:.3f}" for k, v in breakdown.items())
        )


if __name__ == "__main__":
    main()
