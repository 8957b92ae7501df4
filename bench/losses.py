"""Time the DSM loss (sampled and expected modes) against MONAI's DiceLoss, forward + backward on CPU.

Usage: ``python bench/losses.py [--repeats 7] [--height 1440] [--width 960] [--threads N]``.
DSMLoss evaluates two branches (two logit/label pairs), so it is compared both with one MONAI DiceLoss call and
with two (one per branch). The script also reports how far the expected-mode loss lies from the mean of sampled
draws on the same tensors.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from monai.losses import DiceLoss

from monai_exudate.losses import DSMLoss


def _inputs(batch: int, height: int, width: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    # about 1 exudate pixel in 110, the IDRiD background/exudate ratio
    target = (torch.rand(batch, 1, height, width, generator=g) < 1 / 111).float()
    logits = torch.randn(batch, 1, height, width, generator=g)
    return logits, target


def _time_all(fns: dict, repeats: int) -> dict[str, float]:
    """Median seconds per call; the candidates take turns so that load changes on a shared machine hit all alike."""
    for fn in fns.values():
        fn()  # warm-up
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--height", type=int, default=1440)
    parser.add_argument("--width", type=int, default=960)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--draws", type=int, default=20, help="sampled draws for the expected-vs-sampled check")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave the default)")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    logits_l, target_l = _inputs(args.batch, args.height, args.width, 0)
    logits_s, target_s = _inputs(args.batch, args.height, args.width, 1)
    logits_l.requires_grad_(True)
    logits_s.requires_grad_(True)

    monai_dice = DiceLoss(sigmoid=True, batch=True, smooth_nr=1.0, smooth_dr=1.0)
    sampled = DSMLoss(sample_rate=0.5, mode="sampled", alpha=0.5, generator=torch.Generator().manual_seed(0))
    expected = DSMLoss(sample_rate=0.5, mode="expected", alpha=0.5)

    def step(loss_fn):
        def run():
            logits_l.grad = logits_s.grad = None
            loss_fn().backward()

        return run

    candidates = {
        "MONAI DiceLoss, one branch": step(lambda: monai_dice(logits_l, target_l)),
        "MONAI DiceLoss, both branches": step(lambda: monai_dice(logits_l, target_l) + monai_dice(logits_s, target_s)),
        "DSMLoss sampled": step(lambda: sampled(logits_l, target_l, logits_s, target_s)),
        "DSMLoss expected": step(lambda: expected(logits_l, target_l, logits_s, target_s)),
    }
    timings = _time_all(candidates, args.repeats)
    one = timings["MONAI DiceLoss, one branch"]
    both = timings["MONAI DiceLoss, both branches"]
    print(
        f"B={args.batch}, 1x{args.height}x{args.width} logits, forward+backward, CPU, "
        f"{torch.get_num_threads()} threads, median of {args.repeats} interleaved runs"
    )
    print(f"{'loss':32s} {'ms':>9s} {'x one-branch Dice':>18s} {'x two-branch Dice':>18s}")
    for name, seconds in timings.items():
        print(f"{name:32s} {seconds * 1e3:9.1f} {seconds / one:18.2f} {seconds / both:18.2f}")

    with torch.no_grad():
        sampled.alpha = expected.alpha = 0.0
        draws = torch.stack([sampled(logits_l, target_l, logits_s, target_s) for _ in range(args.draws)])
        exp_value = expected(logits_l, target_l, logits_s, target_s)
    print(
        f"small-branch loss: expected mode {exp_value.item():.6f}, mean of {args.draws} draws "
        f"{draws.mean().item():.6f} (std {draws.std().item():.6f}), difference {(exp_value - draws.mean()).item():+.2e}"
    )


if __name__ == "__main__":
    main()
