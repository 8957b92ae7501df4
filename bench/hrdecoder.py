"""Memory and time of HRDecoder against its low- and high-resolution baselines, per training step and inference.

Variants (all HRNetV2 + FCN head):
  (a) LR-only network fed the crop down-scaled by ``--downscale`` (the low-resolution baseline);
  (b) HRDecoder fed the full crop (backbone on the down-scaled crop, HR fusion, ``--num-crops`` HR crops);
  (c) the LR-only network with ``downscale=1`` fed the full-resolution crop.
A training step is forward + HRDecoderLoss + backward + SGD step; inference is one eval forward. Time per image
is the median timed iteration divided by the batch size, as wall time and, on CPU, as process CPU time. Every
(variant, mode) runs in its own subprocess so peak figures do not leak between runs. Peak memory is
``torch.cuda.max_memory_allocated`` on CUDA (weights included) and, on CPU, the growth of the process's maximum
resident set size over its value after building the model and inputs (activations, gradients, optimizer state).

Example: ``python bench/hrdecoder.py --width 18 --size 384 --hr-scale 192 --iters 3``;
on a GPU: ``python bench/hrdecoder.py --device cuda --amp`` (IDRiD scale: 1920 crop, hr_scale 960, W48).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

VARIANTS = {
    "a": "(a) LR-only, down-scaled crop",
    "b": "(b) HRDecoder, full crop",
    "c": "(c) LR-only, full-res crop",
}
MODES = ("train", "infer")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1920, help="side of the square full-resolution crop")
    parser.add_argument("--hr-scale", type=int, default=960, help="HRDecoder window / crop side")
    parser.add_argument("--downscale", type=int, default=2, help="full-resolution to backbone-input factor")
    parser.add_argument("--width", type=int, default=48, help="HRNetV2 width (18 or 48)")
    parser.add_argument("--num-crops", type=int, default=2, help="HR crops per training step")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--iters", type=int, default=3, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--amp", action="store_true", help="autocast (fp16 + GradScaler on CUDA, bf16 on CPU)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=sorted(VARIANTS))
    parser.add_argument("--worker", nargs=2, metavar=("VARIANT", "MODE"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def input_size(variant: str, args: argparse.Namespace) -> int:
    return args.size // args.downscale if variant == "a" else args.size


def run_worker(variant: str, mode: str, args: argparse.Namespace) -> dict[str, float]:
    """Build one variant, run ``mode`` and return seconds per image and peak MiB."""
    import torch

    from monai_exudate.losses.hrdecoder_loss import HRDecoderLoss
    from monai_exudate.networks.hrdecoder import build_hrdecoder

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    amp_dtype = torch.float16 if cuda else torch.bfloat16
    torch.manual_seed(0)
    common = {"width": args.width, "hr_scale": args.hr_scale, "num_crops": args.num_crops}
    if variant == "b":
        net = build_hrdecoder(downscale=args.downscale, **common)
    else:
        net = build_hrdecoder(downscale=1, lr_only=True, **common)
    net = net.to(device).train(mode == "train")
    size = input_size(variant, args)
    x = torch.randn(args.batch, 3, size, size, device=device)
    label = (torch.rand(args.batch, 4, size, size, device=device) > 0.95).float()
    loss_fn = HRDecoderLoss(hr_weight=0.1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=args.amp and cuda)

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
            loss = loss_fn(net.forward_with_aux(x), label)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    def infer_step() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=amp_dtype, enabled=args.amp):
            net(x)

    step = train_step if mode == "train" else infer_step
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(args.warmup):
        step()
    if cuda:
        torch.cuda.synchronize(device)
    wall, cpu = [], []
    for _ in range(args.iters):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        if cuda:
            torch.cuda.synchronize(device)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    if cuda:
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        # ru_maxrss is in KiB on Linux.
        peak_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    # Medians resist interference from other processes on a shared machine; process CPU time (all threads)
    # measures the work itself when the machine is oversubscribed.
    return {
        "seconds": statistics.median(wall) / args.batch if wall else float("nan"),
        "cpu_seconds": statistics.median(cpu) / args.batch if cpu else float("nan"),
        "peak_mib": peak_mib,
    }


def forward_args(args: argparse.Namespace) -> list[str]:
    out = [
        f"--size={args.size}",
        f"--hr-scale={args.hr_scale}",
        f"--downscale={args.downscale}",
        f"--width={args.width}",
        f"--num-crops={args.num_crops}",
        f"--batch={args.batch}",
        f"--iters={args.iters}",
        f"--warmup={args.warmup}",
        f"--device={args.device}",
        f"--threads={args.threads}",
    ]
    return out + (["--amp"] if args.amp else [])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_worker(args.worker[0], args.worker[1], args)))
        return
    if args.size % (4 * args.downscale) or args.hr_scale % (4 * args.downscale):
        raise ValueError(f"--size and --hr-scale must be multiples of 4 * downscale = {4 * args.downscale}.")
    print(
        f"HRNetV2-W{args.width}, crop {args.size}, hr_scale {args.hr_scale}, downscale {args.downscale}, "
        f"batch {args.batch}, device {args.device}, amp {args.amp}, {args.iters} timed iterations"
    )
    results: dict[tuple[str, str], dict[str, float] | None] = {}
    for variant in args.variants:
        for mode in MODES:
            cmd = [sys.executable, __file__, "--worker", variant, mode, *forward_args(args)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"{VARIANTS[variant]} {mode} failed:\n{proc.stderr.strip()[-2000:]}", file=sys.stderr)
                results[(variant, mode)] = None
                continue
            results[(variant, mode)] = json.loads(proc.stdout.strip().splitlines()[-1])

    cuda = args.device.startswith("cuda")
    metrics = [("seconds", "s/img", "{:.3f}")]
    metrics += [] if cuda else [("cpu_seconds", "cpu s/img", "{:.3f}")]
    metrics += [("peak_mib", "peak alloc MiB" if cuda else "max RSS +MiB", "{:.0f}")]
    header = f"{'variant':32s} {'mode':>6s} {'input':>6s}" + "".join(f" {name:>15s}" for _, name, _ in metrics)
    print(header)
    print("-" * len(header))
    for variant in args.variants:
        for mode in MODES:
            r = results[(variant, mode)]
            cells = [("failed" if r is None else fmt.format(r[key])) for key, _, fmt in metrics]
            row = f"{VARIANTS[variant]:32s} {mode:>6s} {input_size(variant, args):6d}"
            print(row + "".join(f" {cell:>15s}" for cell in cells))
    for other in ("c", "a"):
        parts = []
        for mode in MODES:
            b, o = results.get(("b", mode)), results.get((other, mode))
            if b is not None and o is not None:
                ratios = [f"{name} {b[key] / o[key]:.2f}" for key, name, _ in metrics if o[key] > 0]
                parts.append(f"{mode}: " + ", ".join(ratios))
        if parts:
            print(f"(b)/({other})  " + "; ".join(parts))


if __name__ == "__main__":
    main()
