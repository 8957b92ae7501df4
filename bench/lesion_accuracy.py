"""Four-lesion accuracy: fundus_lesion_hrdecoder's recipe, its LR-only ablation and a plain MONAI UNet at equal crops.

Usage (the IDRiD training split, choosing on IDRiD_45-54 and testing on IDRiD_55-58)::

    python bench/lesion_accuracy.py --dataset_dir ../shared/data/idrid_training \
        --datalist data_lists/idrid_training_split.json --test_dataset_dir ../shared/data/idrid_sample \
        --systems shipped monai_unet hrdecoder lr_only --seeds 0 1

Systems, each trained from scratch on the datalist's ``training`` section with the profile (``configs/train.json`` +
``configs/cpu.json`` by default) and scored on its ``validation`` section and on the test set's ``testing`` section:

- ``hrdecoder``: the profile run by the bundle's own trainer for ``--epochs`` (default: the profile's), last epoch;
  with ``--select_best``, the recipe as the shipped model was chosen: the profile's validations (every
  ``val_interval`` epochs, on the datalist's ``validation`` section) and its best checkpoint (``model.pt``);
- ``lr_only``: the same with ``lr_only=true``, HRDecoder's low-resolution branch alone (the paper's ablation);
- ``monai_unet``: MONAI's ``UNet`` (four sigmoid channels, MONAI's defaults) + ``DiceLoss(sigmoid=True)``, Adam 1e-3,
  on the profile's own training crops (lesion-biased, rescaled, flipped, rotated) in batches of the profile's size
  for the same number of optimiser steps: equal crops seen, equal pixels;
- ``shipped``: the bundle's shipped model (``--ckpt_dir`` for another package), not trained here, scored with its
  calibration as the bundle's evaluation scores it; ``shipped_sigmoid``: the same network's plain sigmoid maps, as
  the trained systems are scored (the calibration was fitted on the validation photographs).

Each network is scored at the photographs' own size through the bundle's evaluation pipeline (sliding windows of the
training crop on the resized photograph, predictions inverted to the original size): per lesion the authors'
11-threshold AUPR, average precision over all 256 levels (AP), IoU and F at 0.5, and at the F-maximising level of
the validation maps (the rule of the bundle's ``threshold.json``) on the test set, and the recall of lesion
components under 100 pixels (half their pixels found) at that level. The table (mean +/- std over seeds) is written
to ``--out`` after every run (default ``runs/lesion_accuracy.md``; the measured tables are kept in
``bench/accuracy_results.md``). Seeds run in separate sessions combine from their logs:
``--merge seed0.log seed1.log`` writes the same tables without running anything.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.losses import DiceLoss
from monai.networks.nets import UNet
from monai.utils import set_determinism

from monai_exudate.inference import package_settings
from monai_exudate.metrics import LesionMetricsReport
from monai_exudate.metrics.pixel import (
    average_precision_from_histograms,
    counts_at_threshold,
    f_maximising_threshold,
    pixel_histograms,
    pixel_scores,
    quantize,
)
from monai_exudate.metrics.size_recall import batch_size_counts, recall_by_size
from monai_exudate.recipes import hrdecoder

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench helpers, run as a script or loaded by a test
from accuracy import train_steps  # noqa: E402
from run_logs import add_merge_argument, mean_std, merged_table, parse_override  # noqa: E402
from scoring import inverted_predictions, shipped_network  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundles" / "fundus_lesion_hrdecoder"
SYSTEMS = ("shipped", "shipped_sigmoid", "monai_unet", "hrdecoder", "lr_only")
LABELS = {
    "shipped": "shipped model (bundle models/), calibrated",
    "shipped_sigmoid": "shipped model (bundle models/), its sigmoid maps",
    "monai_unet": "plain MONAI UNet (4 sigmoid channels) + DiceLoss, Adam 1e-3",
    "hrdecoder": "fundus_lesion_hrdecoder profile: HRDecoder",
    "lr_only": "fundus_lesion_hrdecoder profile: LR branch only",
}
SIZE_BINS = (0, 25, 100, math.inf)
# per lesion and set: the columns of the table
COLUMNS = ("aupr", "ap", "iou", "f", "iou_thr", "f_thr", "recall_lt100_thr")
SMOKE = {
    "synthetic": True, "dataset_dir": "$@bundle_root + '/data/synthetic_idrid'", "synthetic_num": 6,
    "synthetic_size": [160, 112],
    "model_settings#net_width": 4, "model_settings#stage1_channels": 8, "model_settings#stem_channels": 8,
    "model_settings#head_channels": 8, "model_settings#hr_scale": 32, "model_settings#resize_size": [96, 64],
    "model_settings#crop_size": [64, 64],
    "training_recipe#warmup_iters": 1, "training_recipe#max_epochs": 1,
}  # fmt: skip


def profile_parser(configs: Sequence[str | Path], overrides: Mapping) -> ConfigParser:
    """A parser over the bundle configs (relative names are looked up in the bundle's configs folder)."""
    parser = ConfigParser()
    parser.read_config([str(c if Path(c).is_absolute() else BUNDLE / "configs" / c) for c in configs])
    parser.update(dict(overrides))
    return parser


def evaluation_parser(configs: Sequence[str | Path], overrides: Mapping, settings: Mapping | None) -> ConfigParser:
    """The profile with ``evaluate.json``; ``settings``: the network's model settings and no calibration (a network
    trained here), or None to read both from the package in ``ckpt_dir`` (the shipped model)."""
    parser = profile_parser([*configs[:1], "evaluate.json", *configs[1:]], overrides)
    if settings is not None:
        parser["model_description"] = dict(settings)
        parser["calibration"] = None
        parser["tta_flip_axes"] = []
    return parser


def score_network(
    network: torch.nn.Module, parser: ConfigParser, device: torch.device, thresholds: Mapping[str, float] | None = None
) -> dict[str, dict[str, float]]:
    """Per lesion: AUPR, AP, IoU and F at 0.5, the F-maximising level (``best_thr``) and, given ``thresholds``,
    IoU, F and small-lesion recall at them; on ``validate#dataset`` at the photographs' own size."""
    lesions = list(parser.get_parsed_content("lesions"))
    report = LesionMetricsReport(lesions, sigmas=(0.5,), size_bins=SIZE_BINS, flat=False)
    # component counts by size at each lesion's threshold: the size-recall part of the report, without redoing its
    # histograms and region counts once per threshold
    sizes = torch.zeros(len(lesions), len(SIZE_BINS) - 1, 2, dtype=torch.int64)
    histograms = torch.zeros(len(lesions), 2, 256, dtype=torch.int64)
    for probs, label in inverted_predictions(network, parser, device):
        report.update((probs, label))
        histograms += pixel_histograms(probs, label)
        if thresholds:  # the metrics' rule q / 255 > t, each lesion at its own t
            cut = torch.tensor([thresholds[name] for name in lesions], dtype=torch.float64).reshape(1, -1, 1, 1)
            sizes += batch_size_counts(quantize(probs).double() / 255.0 > cut, label > 0.5, SIZE_BINS)
    scores = report.compute()["lesions"]
    out = {}
    for c, name in enumerate(lesions):
        neg, pos = histograms[c].numpy()
        row = {k: scores[name][k] for k in ("aupr", "iou", "f")}
        row["ap"] = average_precision_from_histograms(pos, neg)
        row["best_thr"] = f_maximising_threshold(pos, neg)[0]
        if thresholds:
            row.update(
                {f"{k}_thr": v for k, v in pixel_scores(*counts_at_threshold(pos, neg, thresholds[name])).items()}
            )
            size = recall_by_size(sizes[c].numpy(), SIZE_BINS)
            found = [size[b] for b in ("0-25", "25-100")]
            total = sum(b["total"] for b in found)
            row["recall_lt100_thr"] = sum(b["detected"] for b in found) / total if total else None
        out[name] = row
    return out


def train_profile(configs: Sequence[str | Path], overrides: Mapping) -> tuple[torch.nn.Module, int, int]:
    """Train with the bundle's own trainer; returns ``(network, optimiser steps, crops seen)``."""
    parser = profile_parser(configs, overrides)
    parser.get_parsed_content("initialize")
    trainer = parser.get_parsed_content("train#trainer")
    trainer.run()
    steps = int(trainer.state.iteration)
    return parser.get_parsed_content("network"), steps, steps * int(parser["training_recipe#batch_size"])


def train_monai_unet(
    parser: ConfigParser, steps: int, seed: int, device: torch.device
) -> tuple[torch.nn.Module, int, int]:
    """MONAI ``UNet`` (four sigmoid channels) + ``DiceLoss`` on the profile's training crops, Adam 1e-3, the
    profile's own data loader (full batches of its ``batch_size``); returns ``(network, steps, crops)``."""
    set_determinism(seed=seed)
    loader = parser.get_parsed_content("train#dataloader")  # the profile's own batches (its FullBatchSampler)
    lesions = len(parser.get_parsed_content("lesions"))
    unet = UNet(2, 3, lesions, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2).to(device)
    optimizer = torch.optim.Adam(unet.parameters(), 1e-3)
    done, crops = train_steps(unet, DiceLoss(sigmoid=True), optimizer, loader, steps, device)
    return unet, done, crops


def run_system(system: str, seed: int, args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    """Train (or load) one system, score it on validation and test; adds ``steps``, ``crops`` and ``seconds``."""
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    root = workdir / f"{system}_seed{seed}"
    overrides = {
        **(SMOKE if args.smoke else {"dataset_dir": str(args.dataset_dir)}), **dict(args.override),
        "seed": seed, "bundle_root": str(root), "tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}",
        "mlflow_log_model": False, "resume": False,
    }  # fmt: skip
    if args.datalist and not args.smoke:
        overrides.update(datalist_file=str(args.datalist), val_section="validation")
    if args.epochs:
        overrides["training_recipe#max_epochs"] = args.epochs
    base = profile_parser(args.configs, overrides)
    epochs = int(base["training_recipe#max_epochs"])
    # no validation during training, so the last epoch is scored, unless the recipe's selection is asked for
    overrides["val_interval"] = epochs + 1
    scored_epoch: int | None = epochs
    start = time.perf_counter()
    settings = base.get_parsed_content("model_settings")
    if system in ("shipped", "shipped_sigmoid"):
        network, steps, crops = shipped_network(args.ckpt_dir, device, BUNDLE.name, hrdecoder.network), 0, 0
        scored_epoch = None
        overrides["ckpt_dir"] = str(args.ckpt_dir)
        # None: the package's settings and calibration; the sigmoid row takes the settings without the calibration
        settings = package_settings(str(args.ckpt_dir / "model.pt"), BUNDLE.name) if system != "shipped" else None
    elif system in ("hrdecoder", "lr_only"):
        extra: dict[str, object] = {"model_settings#lr_only": system == "lr_only"}
        if args.select_best:
            extra["val_interval"] = int(base["val_interval"])
        network, steps, crops = train_profile(args.configs, {**overrides, **extra})
        if args.select_best:
            network, scored_epoch = best_checkpoint(Path(base.get_parsed_content("ckpt_dir")), device)
        settings = {**settings, "lr_only": system == "lr_only"}
    else:
        steps = epochs * math.ceil(
            len(base.get_parsed_content("train#datalist")) / int(base["training_recipe#batch_size"])
        )
        network, steps, crops = train_monai_unet(base, steps, seed, device)
    validation = score_network(network, evaluation_parser(args.configs, overrides, settings), device)
    result: dict[str, object] = {"validation": validation}
    if args.test_dataset_dir is not None or args.smoke:
        test_dir = str(args.test_dataset_dir or root / "test_set")
        test = {**overrides, "dataset_dir": test_dir, "datalist_file": None, "val_section": "testing"}
        if args.smoke:  # other synthetic photographs than the validation ones, so a leak would show
            test["synthetic_size"] = [176, 120]
        thresholds = {name: row["best_thr"] for name, row in validation.items()}
        result["test"] = score_network(network, evaluation_parser(args.configs, test, settings), device, thresholds)
    result.update(steps=steps, crops=crops, epoch=scored_epoch, seconds=time.perf_counter() - start)
    return result


def best_checkpoint(ckpt_dir: Path, device: torch.device) -> tuple[torch.nn.Module, int]:
    """The network a training run kept as its best (``model.pt``) and the epoch its package records for it."""
    package = ckpt_dir / "model_package.json"
    validation = json.loads(package.read_text()).get("validation") if package.is_file() else None
    if not validation or not (ckpt_dir / "model.pt").is_file():
        raise RuntimeError(
            f"{ckpt_dir}: no validated checkpoint; --select_best needs at least one validation (val_interval <= epochs)"
        )
    return shipped_network(ckpt_dir, device, BUNDLE.name, hrdecoder.network), int(validation["epoch"])


def markdown_tables(results: Mapping[str, Sequence[Mapping]]) -> str:
    """One table per scored set: a row per system and lesion, mean (+/- std over seeds) of each column."""
    blocks = []
    for split in ("validation", "test"):
        runs = {s: [r for r in rs if split in r] for s, rs in results.items()}
        if not any(runs.values()):
            continue
        columns = [c for c in COLUMNS if any(c in row for rs in runs.values() for r in rs for row in r[split].values())]
        head = ["system", "lesion", "seeds", *columns]
        lines = [f"### {split}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for system, rs in runs.items():
            for name in rs[0][split] if rs else ():
                cells = [LABELS.get(system, system), name, str(len(rs))]
                cells += [mean_std([r[split][name].get(c) for r in rs]) for c in columns]
                lines.append("| " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    cost = ["| system | steps | crops seen | epoch scored, per seed | wall time per run (s) |", "|---|---|---|---|---|"]
    for system, rs in results.items():
        if rs:
            epochs = ", ".join(str(r.get("epoch") or "-") for r in rs)
            cost.append(f"| {LABELS.get(system, system)} | {rs[0]['steps']} | {rs[0]['crops']} | {epochs} | "
                        f"{statistics.mean(r['seconds'] for r in rs):.0f} |")  # fmt: skip
    blocks.append("\n".join(cost))
    return "\n\n".join(blocks)


def main(argv: Sequence[str] | None = None, log: Callable[[str], None] = print) -> str:
    """Run the benchmark; returns the markdown tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_dir", type=Path, default=REPO.parent / "shared" / "data" / "idrid_training")
    parser.add_argument("--datalist", type=Path, default=REPO / "data_lists" / "idrid_training_split.json")
    parser.add_argument("--test_dataset_dir", type=Path, default=None, help="score on its testing section too")
    parser.add_argument("--configs", nargs="+", default=["train.json", "cpu.json"])
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--epochs", type=int, default=None, help="default: the profile's max_epochs")
    parser.add_argument("--ckpt_dir", type=Path, default=BUNDLE / "models", help="the 'shipped' system's package")
    parser.add_argument("--override", type=parse_override, nargs="*", default=[], help="config overrides key=json")
    select_help = "hrdecoder, lr_only: validate as the profile does and score the best checkpoint, not the last epoch"
    parser.add_argument("--select_best", action="store_true", help=select_help)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic run (checks the pipeline only)")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "lesion_accuracy.md")
    add_merge_argument(parser)
    args = parser.parse_args(argv)
    if args.merge:
        table = merged_table(markdown_tables, args.merge, SYSTEMS, args.out)
        log(table)
        return table
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.smoke and not args.dataset_dir.is_dir():
        parser.error(f"--dataset_dir {args.dataset_dir} is not a folder")
    if dict(args.override).get("training_recipe#missing_masks", "negative") != "negative":
        parser.error(
            "--override training_recipe#missing_masks: the scoring counts a missing mask as no lesion (negative) only"
        )
    if {"shipped", "shipped_sigmoid"} & set(args.systems) and not (args.ckpt_dir / "model.pt").is_file():
        parser.error(f"--ckpt_dir {args.ckpt_dir} holds no model.pt")
    results: dict[str, list[dict]] = {s: [] for s in args.systems}
    command = "python bench/lesion_accuracy.py " + " ".join(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="lesion_accuracy_") as tmp:
        workdir = args.workdir or Path(tmp)
        for seed in args.seeds:
            for system in args.systems:
                if system.startswith("shipped") and results[system]:
                    continue  # not trained here: one score whatever the seeds
                results[system].append(run_system(system, seed, args, workdir))
                log(f"{system} seed {seed}: {results[system][-1]}")
                table = markdown_tables(results) + f"\n\nCommand: `{command}`\n"
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(table)  # after every run: an interrupted benchmark keeps its rows
    log(table)
    return table


if __name__ == "__main__":
    main()
