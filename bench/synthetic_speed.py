"""Throughput of the synthetic fundus generator at 1440x960, with the EX statistics of the generated images."""

from __future__ import annotations

import argparse
import time

from monai_exudate.data.synthetic import generate_fundus, imbalance_statistics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num", type=int, default=10, help="images to generate")
    parser.add_argument("--size", default="1440x960", help="WIDTHxHEIGHT")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    generate_fundus((64, 64), seed=0)  # warm-up: imports and first-call allocations
    ex_masks = []
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(args.num):
        ex_masks.append(generate_fundus((width, height), seed=i)[1]["EX"])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    stats = imbalance_statistics(ex_masks)
    per_image = f"{wall / args.num:.3f} s/image wall, {cpu / args.num:.3f} s CPU"
    print(f"{width}x{height}: {args.num / wall:.2f} images/s ({per_image})")
    print(
        f"EX over {args.num} images: background/EX = {stats['background_to_lesion']:.1f}, "
        f"size spread (top/bottom 10% components) = {stats['size_spread']:.1f}, "
        f"components = {stats['num_components']:.0f}"
    )


if __name__ == "__main__":
    main()
