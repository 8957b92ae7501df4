"""Cost of a dual-branch training step: dual vs single PSPNet, DSM loss vs MONAI Dice, trainer overhead.

Sections (``--sections``):
  step     time per iteration (forward + loss + backward + SGD step) and peak memory of the single PSPNet (Dice
           loss) and the dual PSPNet (DSM loss, one batch per branch), side by side with dual/single ratios. Peak
           memory is ``torch.cuda.max_memory_allocated`` on CUDA; on CPU every variant runs in its own subprocess
           and reports its peak resident set size (``ru_maxrss``) and the growth of that peak over its value after
           the imports (weights, gradients, optimizer state and activations).
  loss     forward + backward of MONAI ``DiceLoss(sigmoid=True)``, ``DSMLoss`` (sampled and expected) and the
           whole ``DualBranchLoss`` of the dual PSPNet (main + auxiliary output pairs) on ``(B, 1, H, W)`` logits,
           and each as a percentage of the dual step time (target: DSM <= 5%).
  trainer  the real ``DualBranchTrainer`` with ``AlphaScheduleHandler``, ``NonFiniteLossHandler`` and
           ``StatsHandler`` over a warm ``CacheDataset`` of synthetic images already at training size, against a
           bare loop running the same forward/backward/step on pre-collated tensors; overhead =
           (trainer - bare) / bare over the same iterations (target <= 5%). Each round times one trainer epoch and
           one bare pass, in alternating order; the trainer's per-run costs (engine start, loaders) count as overhead.
The trainer frees gradients between steps as the bare loop does (``optim_set_to_none=True``);
``--zero-grads-in-place`` keeps MONAI's default instead. Wall and process CPU time are both reported: on a busy
shared machine CPU time (best with ``--threads 1``) is the steadier measure.

Examples: CPU, full ResNet-50 at a reduced size (tens of seconds per dual step on two cores; at 1440x960 the dual
network needs about 30 GiB of RAM): ``python bench/train_step.py --size 720x480 --iters 2``;
GPU: ``python bench/train_step.py --device cuda --amp --iters 20``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import time

SECTIONS = ("step", "loss", "trainer")
VARIANTS = ("single", "dual")
EXUDATE_FRACTION = 1 / 111  # IDRiD: about 110 background pixels per exudate pixel
STATS_LOGGER = "train_step.stats"


def parse_size(text: str) -> tuple[int, int]:
    """``"WIDTHxHEIGHT"`` -> (width, height)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must look like 1440x960, got {text!r}") from None
    if width < 32 or height < 32:
        raise argparse.ArgumentTypeError(f"--size must be at least 32x32, got {text!r}")
    return width, height


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=(1440, 960), help="WIDTHxHEIGHT of the training images")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--iters", type=int, default=3, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations first")
    parser.add_argument("--rounds", type=int, default=2, help="alternating bare/trainer rounds (trainer section)")
    parser.add_argument("--loss-repeats", type=int, default=5, help="timed calls per loss")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--amp", action="store_true", help="autocast: fp16 + GradScaler on CUDA, bf16 on CPU")
    parser.add_argument("--width", type=int, default=64, help="ResNet stem width (64: ResNet-50)")
    parser.add_argument("--layers", default="3,4,6,3", help="bottleneck blocks per stage (3,4,6,3: ResNet-50)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch default)")
    parser.add_argument(
        "--zero-grads-in-place",
        action="store_true",
        help="trainer section: keep MONAI's default optim_set_to_none=False (the bare loop sets gradients to None)",
    )
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.layers = tuple(int(v) for v in args.layers.split(","))
    if len(args.layers) != 4 or min(args.layers) < 1:
        parser.error(f"--layers needs four positive counts, got {args.layers}")
    for name in ("batch", "iters", "rounds", "loss_repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        parser.error("--warmup must be non-negative")
    return args


def setup_torch(args: argparse.Namespace):
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device available")
    return torch


def sync(args: argparse.Namespace) -> None:
    if args.device == "cuda":
        import torch

        torch.cuda.synchronize()


def autocast(args: argparse.Namespace):
    import contextlib

    import torch

    if not args.amp:
        return contextlib.nullcontext()
    return torch.autocast(args.device, dtype=torch.float16 if args.device == "cuda" else torch.bfloat16)


def random_batch(args: argparse.Namespace, seed: int):
    """Normalised-looking images ``(B, 3, H, W)`` and binary exudate masks ``(B, 1, H, W)`` on the device."""
    import torch

    width, height = args.size
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(args.batch, 3, height, width, generator=g)
    label = (torch.rand(args.batch, 1, height, width, generator=g) < EXUDATE_FRACTION).float()
    return image.to(args.device), label.to(args.device)


def build_variant(variant: str, args: argparse.Namespace):
    """Network, loss, SGD optimizer and a step function ``step(x_l, y_l, x_s, y_s) -> loss`` for one variant."""
    import torch

    from monai_exudate.losses.factory import build_exudate_loss
    from monai_exudate.networks import build_exudate_network

    dual = variant == "dual"
    net = build_exudate_network("pspnet", dual=dual, width=args.width, layers=args.layers).to(args.device).train()
    loss_fn = build_exudate_loss("dsm" if dual else "dice", dual=dual)
    if dual:
        loss_fn.loss.alpha = 0.5  # both branch terms carry a gradient, as in the middle of training
    optimizer = torch.optim.SGD(net.parameters(), lr=0.03, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler("cuda") if args.amp and args.device == "cuda" else None

    def step(x_l, y_l, x_s, y_s):
        optimizer.zero_grad(set_to_none=True)
        with autocast(args):
            loss = (
                loss_fn(net.forward_with_aux(x_l, x_s), y_l, y_s) if dual else loss_fn(net.forward_with_aux(x_l), y_l)
            )
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        return loss

    return net, loss_fn, optimizer, step


def time_steps(step, batches, args: argparse.Namespace) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds of each timed iteration after the warm-up ones."""
    wall, cpu = [], []
    for i in range(args.warmup + args.iters):
        sync(args)
        start, start_cpu = time.perf_counter(), time.process_time()
        step(*batches[i % len(batches)])
        sync(args)
        if i >= args.warmup:
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def run_step_variant(variant: str, args: argparse.Namespace) -> dict[str, float]:
    """Time one variant in this process; peak memory in MiB (CUDA: allocated; CPU: resident set)."""
    torch = setup_torch(args)
    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        baseline_cuda = torch.cuda.memory_allocated()
    net, _, _, step = build_variant(variant, args)
    x_l, y_l = random_batch(args, 0)
    x_s, y_s = random_batch(args, 1)
    wall, cpu = time_steps(step, [(x_l, y_l, x_s, y_s)], args)
    result = {
        "variant": variant,
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
        "s_per_iter": statistics.median(wall),
        "cpu_s_per_iter": statistics.median(cpu),
        "times": wall,
    }
    if args.device == "cuda":
        result["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
        result["growth_mib"] = (torch.cuda.max_memory_allocated() - baseline_cuda) / 2**20
    else:  # Linux reports ru_maxrss in KiB
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result["peak_mib"] = peak_kib / 1024
        result["growth_mib"] = (peak_kib - baseline_kib) / 1024
    del net, step
    return result


def forward_args(args: argparse.Namespace) -> list[str]:
    out = [
        f"--size={args.size[0]}x{args.size[1]}",
        f"--batch={args.batch}",
        f"--iters={args.iters}",
        f"--warmup={args.warmup}",
        f"--device={args.device}",
        f"--width={args.width}",
        f"--layers={','.join(map(str, args.layers))}",
        f"--threads={args.threads}",
    ]
    return out + (["--amp"] if args.amp else [])


def step_section(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    results = {}
    for variant in VARIANTS:
        if args.device == "cuda":
            results[variant] = run_step_variant(variant, args)
            continue
        # a fresh process per variant: ru_maxrss only ever grows, so peaks must not share a process
        cmd = [sys.executable, __file__, *forward_args(args), f"--worker={variant}"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"{variant} worker failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        results[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    single, dual = results["single"], results["dual"]
    mem = "peak CUDA allocated" if args.device == "cuda" else "peak RSS"
    print(f"\n[step] forward + loss + backward + SGD, median of {args.iters} after {args.warmup} warm-up")
    header = f"{'variant':14s} {'params (M)':>11s} {'s/iter':>9s} {'CPU s/iter':>11s} {mem + ' (MiB)':>22s}"
    print(f"{header} {'growth (MiB)':>13s}")
    for name, r in (("single+Dice", single), ("dual+DSM", dual)):
        print(
            f"{name:14s} {r['params_m']:11.1f} {r['s_per_iter']:9.3f} {r['cpu_s_per_iter']:11.3f} "
            f"{r['peak_mib']:22.0f} {r['growth_mib']:13.0f}"
        )
    keys = ("params_m", "s_per_iter", "cpu_s_per_iter", "peak_mib", "growth_mib")
    ratios = [dual[k] / single[k] for k in keys]
    print(
        f"{'dual/single':14s} {ratios[0]:10.2f}x {ratios[1]:8.2f}x {ratios[2]:10.2f}x {ratios[3]:21.2f}x "
        f"{ratios[4]:12.2f}x"
    )
    return results


def loss_section(args: argparse.Namespace, dual_step_s: float | None) -> dict[str, float]:
    torch = setup_torch(args)
    from monai.losses import DiceLoss

    from monai_exudate.losses import DSMLoss
    from monai_exudate.losses.factory import build_exudate_loss

    width, height = args.size
    g = torch.Generator().manual_seed(0)

    def logits():
        return torch.randn(args.batch, 1, height, width, generator=g).to(args.device).requires_grad_(True)

    def mask():
        return (torch.rand(args.batch, 1, height, width, generator=g) < EXUDATE_FRACTION).float().to(args.device)

    out_l, aux_l, out_s, aux_s = logits(), logits(), logits(), logits()
    y_l, y_s = mask(), mask()
    leaves = (out_l, aux_l, out_s, aux_s)
    dice = DiceLoss(sigmoid=True)
    sampled = DSMLoss(mode="sampled", alpha=0.5)
    expected = DSMLoss(mode="expected", alpha=0.5)
    dual_loss = build_exudate_loss("dsm", dual=True)
    dual_loss.loss.alpha = 0.5
    outputs = {"large": {"out": out_l, "aux": aux_l}, "small": {"out": out_s, "aux": aux_s}}
    candidates = {
        "MONAI DiceLoss(sigmoid) 1 map": lambda: dice(out_l, y_l),
        "DSMLoss sampled (2 maps)": lambda: sampled(out_l, y_l, out_s, y_s),
        "DSMLoss expected (2 maps)": lambda: expected(out_l, y_l, out_s, y_s),
        "DualBranchLoss dsm out+aux": lambda: dual_loss(outputs, y_l, y_s),
    }

    def run(fn):
        for leaf in leaves:
            leaf.grad = None
        sync(args)
        start = time.perf_counter()
        fn().backward()
        sync(args)
        return time.perf_counter() - start

    for fn in candidates.values():  # warm-up
        run(fn)
    times = {name: [] for name in candidates}
    for _ in range(args.loss_repeats):  # interleaved, so machine load affects every loss alike
        for name, fn in candidates.items():
            times[name].append(run(fn))
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"\n[loss] forward + backward on ({args.batch}, 1, {height}, {width}) logits, median of {args.loss_repeats}")
    print(f"{'loss':30s} {'ms':>9s} {'x Dice':>8s} {'% of dual step':>15s}")
    for name, seconds in medians.items():
        share = f"{100 * seconds / dual_step_s:14.2f}%" if dual_step_s else f"{'n/a':>15s}"
        print(f"{name:30s} {seconds * 1e3:9.1f} {seconds / medians['MONAI DiceLoss(sigmoid) 1 map']:8.2f} {share}")
    return medians


def synthetic_items(num: int, args: argparse.Namespace) -> list[dict]:
    """Synthetic fundus images rendered at the training size, normalised like the bundle's preprocessing."""
    import numpy as np

    from monai_exudate.data.synthetic import generate_fundus
    from monai_exudate.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(3, 1, 1)
    std = np.asarray(IMAGENET_STD, np.float32).reshape(3, 1, 1)
    items = []
    for seed in range(num):
        image, masks = generate_fundus(args.size, seed=seed)
        items.append(
            {
                "image": (image.transpose(2, 0, 1).astype(np.float32) - mean) / std,
                "label": masks["EX"][None].astype(np.float32),
            }
        )
    return items


def trainer_section(args: argparse.Namespace) -> dict[str, float]:
    torch = setup_torch(args)
    from monai.data import CacheDataset, DataLoader
    from monai.data.utils import list_data_collate
    from monai.handlers import StatsHandler, from_engine
    from monai.transforms import EnsureTyped

    from monai_exudate.engines import AlphaScheduleHandler, DualBranchTrainer, NonFiniteLossHandler
    from monai_exudate.losses import ParabolicDecay

    num = args.batch * args.iters
    start = time.perf_counter()
    items = synthetic_items(num, args)
    render_s = time.perf_counter() - start
    dataset = CacheDataset(items, transform=EnsureTyped(("image", "label"), dtype=torch.float32), progress=False)
    net, loss_fn, optimizer, step = build_variant("dual", args)

    def loader(seed: int) -> DataLoader:
        return DataLoader(dataset, batch_size=args.batch, shuffle=True, generator=torch.Generator().manual_seed(seed))

    trainer = DualBranchTrainer(
        device=torch.device(args.device),
        max_epochs=1,
        train_data_loader=loader(0),
        network=net,
        optimizer=optimizer,
        loss_function=loss_fn,
        small_branch_loader=loader(1),
        # like the bare loop, free the gradients; MONAI's default zeroes them in place, a pass over every gradient
        optim_set_to_none=not args.zero_grads_in_place,
        amp=args.amp and args.device == "cuda",
        amp_kwargs={"dtype": torch.float16},
        train_handlers=[
            AlphaScheduleHandler(loss_fn, ParabolicDecay(40)),
            NonFiniteLossHandler("stop"),
            StatsHandler(name=STATS_LOGGER, tag_name="train_loss", output_transform=from_engine(["loss"], first=True)),
        ],
    )
    # the stats lines are formatted and written as in a real run, but to /dev/null so the tables stay readable
    stats_logger = logging.getLogger(STATS_LOGGER)
    stats_logger.handlers = [logging.FileHandler(os.devnull)]
    stats_logger.propagate = False
    if args.device == "cpu" and args.amp:
        print("[trainer] note: MONAI trainers autocast on CUDA only; the CPU trainer run is fp32")

    # pre-collated batches on the device, paired the way the two loaders would pair them
    order = torch.randperm(num, generator=torch.Generator().manual_seed(2)).tolist()
    batches = []
    for i in range(args.iters):
        ids_l = list(range(i * args.batch, (i + 1) * args.batch))
        ids_s = order[i * args.batch : (i + 1) * args.batch]
        big = list_data_collate([dataset[k] for k in ids_l])
        small = list_data_collate([dataset[k] for k in ids_s])
        batches.append(
            tuple(t.as_tensor().to(args.device) for t in (big["image"], big["label"], small["image"], small["label"]))
        )
    bare_step = step
    if args.device == "cpu" and args.amp:  # match the fp32 trainer run on CPU
        args_fp32 = argparse.Namespace(**{**vars(args), "amp": False})
        bare_step = build_variant("dual", args_fp32)[3]

    for i in range(args.warmup):  # the trainer shares this network: kernels and allocator are warm for both
        bare_step(*batches[i % len(batches)])

    def timed(fn) -> tuple[float, float]:
        sync(args)
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        sync(args)
        return time.perf_counter() - start, time.process_time() - start_cpu

    def bare_loop() -> None:
        for batch in batches:
            bare_step(*batch)

    bare, wrapped = [], []
    for r in range(args.rounds):  # the order flips every round so slow drifts in machine load cancel out
        if r % 2:
            wrapped.append(timed(trainer.run))
            bare.append(timed(bare_loop))
        else:
            bare.append(timed(bare_loop))
            wrapped.append(timed(trainer.run))
    n = args.rounds * args.iters
    bare_s, trainer_s = (sum(t[0] for t in bare), sum(t[0] for t in wrapped))
    bare_cpu, trainer_cpu = (sum(t[1] for t in bare), sum(t[1] for t in wrapped))
    overhead = 100 * (trainer_s - bare_s) / bare_s
    overhead_cpu = 100 * (trainer_cpu - bare_cpu) / bare_cpu
    per_round = ", ".join(f"{100 * (w[0] - b[0]) / b[0]:+.1f}%" for b, w in zip(bare, wrapped))
    print(
        f"\n[trainer] DualBranchTrainer (alpha, non-finite, stats handlers; CacheDataset of {num} synthetic images, "
        f"rendered in {render_s:.1f} s) vs bare loop, {args.rounds} rounds x {args.iters} iterations"
    )
    print(f"{'run':20s} {'s total':>9s} {'s/iter':>9s} {'CPU s total':>12s} {'CPU s/iter':>11s}")
    for name, wall_s, cpu_s in (("bare loop", bare_s, bare_cpu), ("DualBranchTrainer", trainer_s, trainer_cpu)):
        print(f"{name:20s} {wall_s:9.2f} {wall_s / n:9.3f} {cpu_s:12.2f} {cpu_s / n:11.3f}")
    print(
        f"overhead {overhead:+.2f}% wall (per round: {per_round}), {overhead_cpu:+.2f}% CPU time, "
        f"{(trainer_s - bare_s) / n * 1e3:+.1f} ms/iter wall; target <= 5%"
    )
    return {"bare_s": bare_s, "trainer_s": trainer_s, "overhead_pct": overhead, "overhead_cpu_pct": overhead_cpu}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(run_step_variant(args.worker, args)))
        return
    torch = setup_torch(args)
    width, height = args.size
    print(
        f"PSPNet width {args.width} layers {args.layers}, {width}x{height}, batch {args.batch}, {args.device}, "
        f"{'AMP' if args.amp else 'fp32'}, {torch.get_num_threads()} CPU threads"
    )
    dual_step_s = None
    if "step" in args.sections:
        dual_step_s = step_section(args)["dual"]["s_per_iter"]
    if "loss" in args.sections:
        loss_section(args, dual_step_s)
    if "trainer" in args.sections:
        trainer_section(args)


if __name__ == "__main__":
    main()
