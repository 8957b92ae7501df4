"""Exudate accuracy at equal training pixels: the dual DSM U-Net, its single + Dice ablation, MONAI UNets, the shipped.

Usage: ``python bench/accuracy.py [--dataset_dir DIR] [--seeds 0 1 2] [--epochs 12 | --pixels P] [--out FILE]``.

Every system trains from scratch on the same lesion-biased crops (the profile's ``RandCropByPosNegLabeld``) at the
profile's training resolution, and sees the same number of training pixels in the same number of optimiser steps:
(a) the CPU profile (``configs/train.json`` + ``configs/cpu.json``: dual U-Net + DSM loss) run by the bundle's own
trainer for ``E`` epochs (each step one batch of ``B`` photographs x ``S`` crops per branch); (b) the same profile
with ``dual=false``, ``loss_name=dice``, batch ``2B`` for ``2E`` epochs (the profile's network settings, its
``head_prior`` included, apply to both); MONAI's ``UNet`` + ``DiceLoss``, Adam 1e-3, in a short MONAI-only loop with
batches of ``2B`` photographs for the same number of steps, left as plain as a user would write it (MONAI's default
instance norm), in its two usual forms: (c) one exudate channel through a sigmoid, and (d) the two-class form of
MONAI's tutorials (``out_channels=2``, ``DiceLoss(to_onehot_y=True, softmax=True)``, the background channel
included), scored on its exudate probability (the softmax of two classes is the sigmoid of their logit difference).
Two variants of (c) on request: (e) ``norm="batch"``, the normalisation of the profile's U-Net, and (f)
``DiceLoss(batch=True)``, the Dice of the whole batch rather than the mean of per-crop Dice. ``shipped``: the bundle's
shipped model (``--ckpt_dir`` for another package), not trained here and scored once whatever the seeds, with its
package's settings and calibration as the bundle's evaluation reads them (the trained systems: sigmoid maps).
All are scored on the ``val_section`` of ``--dataset_dir`` at the photographs' own size (the bundle's evaluation
pipeline: sliding window at the training resolution, the profile's test-time flips, predictions inverted to the
original size) with the project's metrics at threshold 0.5: pixel IoU, F, AUPR, region F at sigma 0.5 and recall by
lesion size, including all components under 100 pixels (counted when half their pixels are predicted, and when the
mask merely touches them).
On the IDRiD training split, choose on its validation part and test on IDRiD_55-58:
``--dataset_dir ../shared/data/idrid_training --override 'datalist_file="data_lists/idrid_training_split.json"'
'val_section="validation"' --test_dataset_dir ../shared/data/idrid_sample`` (the table then adds the test
columns, with IoU, F and small-lesion recall also at the F-maximising level of the validation maps, the rule of the
bundle's ``threshold.json``: ``*_thr``, and AUPR and AP of the maps through an isotonic calibration fitted on the
validation maps, as the bundle's ``calibrate`` fits the shipped model's: ``*_cal``). Average precision (``ap``, all 256
levels) is reported beside the 11-threshold AUPR, which flatters weak maps, and ``ap_float``, the AP of the maps before
their 8-bit quantisation (0.01-wide logit bins).
Results: a markdown table (mean +/- std over seeds, wall time per row) printed and written to ``--out`` (default
``runs/accuracy.md``; the measured tables are kept in ``bench/accuracy_results.md``). Each trained network's weights
are kept in ``--workdir`` (``<system>_seed<n>/network.pt``); ``--rescore WORKDIR`` scores them again without
training. Seeds run in separate sessions combine from their logs:
``--merge seed0.log seed1.log`` writes the same table without running anything.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from monai.bundle import ConfigParser
from monai.data import DataLoader
from monai.losses import DiceLoss
from monai.networks.nets import UNet
from monai.utils import set_determinism

from monai_exudate.bundle import as_bool

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the bench helpers, run as a script or loaded by a test
from run_logs import add_merge_argument, mean_count, mean_std, merged_table, parse_override  # noqa: E402
from scoring import (  # noqa: E402
    score_network,
    shipped_network,
    validation_calibration,
)

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundles" / "exudate_dsm" / "configs"
DEFAULT_DATASET = REPO.parent / "shared" / "data" / "idrid_sample"
SYSTEMS = (
    "dual_dsm", "single_dice", "monai_unet", "monai_unet_softmax", "monai_unet_batchnorm", "monai_unet_batchdice",
    "shipped",
)  # fmt: skip
# the four systems compared by default, both usual forms of the UNet among them: the sigmoid one marks most of the
# photograph at 0.5 on the IDRiD sample (288 steps, 3 seeds: IoU 0.071, AUPR 0.515), the two-class one does not
# (IoU 0.308, AUPR 0.585). The variants of the sigmoid UNet on request (--systems); at 192 steps neither did markedly
# better than it (AUPR 0.507 +/- 0.008, 3 seeds; seed 0 0.509): batch norm 0.483 +/- 0.015 (3 seeds), batch Dice
# 0.528 (seed 0)
DEFAULT_SYSTEMS = SYSTEMS[:4]
# each MONAI UNet system: its normalisation layers, whether DiceLoss reduces over the whole batch, and whether it
# predicts two classes (background, exudate) through a softmax instead of one through a sigmoid
UNET_RECIPES = {
    "monai_unet": {"norm": "instance", "dice_batch": False, "two_class": False},
    "monai_unet_batchnorm": {"norm": "batch", "dice_batch": False, "two_class": False},
    "monai_unet_batchdice": {"norm": "instance", "dice_batch": True, "two_class": False},
    "monai_unet_softmax": {"norm": "instance", "dice_batch": False, "two_class": True},
}
LABELS = {
    "dual_dsm": "exudate_dsm CPU profile: dual U-Net + DSM",
    "single_dice": "exudate_dsm CPU profile: single U-Net + Dice",
    "monai_unet": "plain MONAI UNet + DiceLoss (sigmoid), Adam 1e-3",
    "monai_unet_batchnorm": "plain MONAI UNet (norm batch) + DiceLoss, Adam 1e-3",
    "monai_unet_batchdice": "plain MONAI UNet + DiceLoss(batch=True), Adam 1e-3",
    "monai_unet_softmax": "plain MONAI UNet, 2 classes + DiceLoss(softmax), Adam 1e-3",
    "shipped": "shipped model (bundle models/), calibrated",
}
COLUMNS = (
    "iou", "f", "aupr", "ap", "ap_float", "region_f", "recall_lt100", "touched_lt100", "recall_0-25",
    "recall_25-100", "recall_100-400",
)  # fmt: skip
# scored again on --test_dataset_dir when it is given
TEST_COLUMNS = (
    "iou", "f", "aupr", "ap", "ap_float", "aupr_cal", "ap_cal", "recall_lt100", "iou_thr", "f_thr", "recall_lt100_thr",
)  # fmt: skip
SMOKE = {
    "synthetic": True, "dataset_dir": "$@bundle_root + '/data/synthetic_idrid'",
    "synthetic_num": 4, "synthetic_size": [96, 72], "sw_batch_size": 4,
    "model_settings#spatial_size": [64, 48], "model_settings#patch_size": [32, 32], "model_settings#net_width": 2,
    "training_recipe#patch_samples": 2,
}  # fmt: skip


def profile_parser(configs: Sequence[str | Path], overrides: dict) -> ConfigParser:
    """A parser over the bundle configs (relative names are looked up in the bundle's configs folder)."""
    parser = ConfigParser()
    parser.read_config([str(c if Path(c).is_absolute() else CONFIGS / c) for c in configs])
    parser.update(overrides)
    return parser


def evaluation_parser(configs: Sequence[str | Path], overrides: dict, packaged: bool = False) -> ConfigParser:
    """The profile's configs with ``evaluate.json``, described by the model settings that training with
    ``overrides`` records (the model package a bundle run writes), so the network in memory is scored with its own
    preprocessing, inferer and branch fusion, without calibration; ``packaged``: settings and calibration from the
    package in ``overrides["ckpt_dir"]``, as the bundle's evaluation reads them (the shipped model)."""
    parser = profile_parser([*configs[:1], "evaluate.json", *configs[1:]], overrides)
    if not packaged:
        parser["model_description"] = profile_parser(configs, overrides).get_parsed_content("model_settings")
        parser["calibration"] = None
    return parser


def _crops_seen(loader: DataLoader, epochs: int, per_item: int, branches: int) -> int:
    """Crops fed to the network: every photograph once per epoch and branch, ``per_item`` crops each."""
    return epochs * len(loader.dataset) * per_item * branches


def train_profile(configs: Sequence[str | Path], overrides: dict) -> tuple[torch.nn.Module, int, int]:
    """Train with the bundle's own trainer; returns ``(network, optimiser steps, crops seen)``."""
    parser = profile_parser(configs, overrides)
    parser.get_parsed_content("initialize")
    trainer = parser.get_parsed_content("train#trainer")
    trainer.run()
    dual = as_bool(parser["model_settings#dual"], "dual")
    loader = parser.get_parsed_content("train#dataloader")
    crops = _crops_seen(loader, trainer.state.max_epochs, parser["training_recipe#patch_samples"], 2 if dual else 1)
    return parser.get_parsed_content("network"), int(trainer.state.iteration), crops


class ForegroundLogit(torch.nn.Module):
    """The exudate logit of a two-class network: ``softmax([b, e])[1] == sigmoid(e - b)``, so the evaluation's sigmoid
    post-processing gives the network's own softmax probability."""

    def __init__(self, network: torch.nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.network(x)
        return logits[:, 1:2] - logits[:, 0:1]


def train_monai_unet(
    parser: ConfigParser,
    steps: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    norm: str = "instance",
    dice_batch: bool = False,
    two_class: bool = False,
) -> tuple[torch.nn.Module, int, int]:
    """MONAI ``UNet`` + ``DiceLoss`` on the profile's training crops, Adam 1e-3; returns ``(network, steps, crops)``.

    ``norm``: the UNet's normalisation layers (``instance``: MONAI's default; ``batch``). ``dice_batch``: passed to
    ``DiceLoss(batch=...)`` (``False``, MONAI's default: the mean of each crop's Dice). ``two_class``: background and
    exudate channels with ``DiceLoss(to_onehot_y=True, softmax=True)`` on the binary label (the form of MONAI's
    segmentation tutorials); the returned network gives the exudate logit (:class:`ForegroundLogit`).
    """
    set_determinism(seed=seed)
    dataset = parser.get_parsed_content("train#dataset")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=0)
    network = monai_unet(device, norm, two_class)
    unet = network.network if two_class else network
    optimizer = torch.optim.Adam(unet.parameters(), 1e-3)
    if two_class:
        loss_fn = DiceLoss(to_onehot_y=True, softmax=True, batch=dice_batch)
    else:
        loss_fn = DiceLoss(sigmoid=True, batch=dice_batch)
    done, crops = train_steps(unet, loss_fn, optimizer, loader, steps, device)
    return network, done, crops


def monai_unet(device: torch.device, norm: str = "instance", two_class: bool = False) -> torch.nn.Module:
    """The untrained MONAI ``UNet`` of a ``UNET_RECIPES`` entry; a two-class one wrapped in :class:`ForegroundLogit`."""
    classes = 2 if two_class else 1
    unet = UNet(2, 3, classes, channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2, norm=norm)
    return ForegroundLogit(unet.to(device)) if two_class else unet.to(device)


def train_steps(
    network: torch.nn.Module,
    loss_fn: Callable,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader,
    steps: int,
    device: torch.device,
) -> tuple[int, int]:
    """A plain training loop over ``loader``'s passes for ``steps`` optimiser steps (a sampler with ``set_epoch``
    draws a new order each pass, as MONAI's trainer has it); returns ``(steps, crops)``."""
    done, crops, epoch = 0, 0, 0
    network.train()
    while done < steps:
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        epoch += 1
        for batch in loader:
            image, label = batch["image"].to(device), batch["label"].to(device).float()
            optimizer.zero_grad(set_to_none=True)
            loss_fn(network(image), label).backward()
            optimizer.step()
            done, crops = done + 1, crops + image.shape[0]
            if done == steps:
                break
    return done, crops


def run_system(system: str, seed: int, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    """Train one system with one seed (or load it: the shipped package, a ``--rescore`` network) and score it; adds
    ``steps`` and ``crops`` (None for a rescored network) and ``seconds``. The shipped model's maps are calibrated
    already: its float AP (the calibrated maps' pooled ranking, not the network's) and a second calibration are not
    reported."""
    device = torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    root = workdir / f"{system}_seed{seed}"
    root.mkdir(parents=True, exist_ok=True)
    overrides = {
        **(SMOKE if args.smoke else {"dataset_dir": str(args.dataset_dir)}), **dict(args.override),
        "seed": seed, "bundle_root": str(root), "tracking_uri": f"sqlite:///{workdir / 'mlflow.db'}",
        # the runs are scored here; an MLflow model of each (it carries the bundle's configs) is not needed
        "mlflow_log_model": False,
    }  # fmt: skip
    base = profile_parser(args.configs, overrides)
    batch, epochs = int(base["training_recipe#batch_size"]), _epochs(args, base)
    # the dual trainer consumes one batch per branch per step; the others get both batches as one
    common = {**overrides, "val_interval": 10 * epochs + 10, "resume": False}
    # the single-branch systems' logits pass the evaluation post-processing without branch fusion
    single = {"model_settings#dual": False, "training_recipe#loss_name": "dice"}
    start = time.perf_counter()
    # the shipped model is loaded from its package in any case
    trained = None if args.rescore is None or system == "shipped" else args.rescore / root.name / "network.pt"
    if system == "shipped":
        network, steps, crops = shipped_network(args.ckpt_dir, device), 0, 0
        overrides["ckpt_dir"] = str(args.ckpt_dir)
    elif system in ("dual_dsm", "single_dice"):
        recipe = {"training_recipe#max_epochs": epochs}
        if system == "single_dice":
            recipe = {**single, "training_recipe#batch_size": 2 * batch, "training_recipe#max_epochs": 2 * epochs}
        if trained is None:
            network, steps, crops = train_profile(args.configs, {**common, **recipe})
        else:
            network, steps, crops = (
                profile_parser(args.configs, {**common, **recipe}).get_parsed_content("network"),
                None,
                None,
            )
    elif trained is None:
        dual_steps = epochs * math.ceil(_num_train(base) / batch)
        network, steps, crops = train_monai_unet(base, dual_steps, 2 * batch, seed, device, **UNET_RECIPES[system])
    else:
        recipe = UNET_RECIPES[system]
        network, steps, crops = monai_unet(device, recipe["norm"], recipe["two_class"]), None, None
    if trained is not None:
        if not trained.is_file():
            raise FileNotFoundError(
                f"--rescore: {trained} does not exist (a run of {system} with seed {seed} keeps it)"
            )
        network.load_state_dict(torch.load(trained, map_location=device, weights_only=True))
    elif system != "shipped":  # kept, so the scoring can be repeated without training again (--rescore)
        torch.save(network.state_dict(), root / "network.pt")
    scoring = overrides if system in ("dual_dsm", "shipped") else {**overrides, **single}
    evaluation = evaluation_parser(args.configs, scoring, packaged=system == "shipped")
    result = score_network(network, evaluation, device)
    validation_logits = result.pop("logit_histogram")
    if args.test_dataset_dir is not None:
        # the same network on a second, held-out set (e.g. IDRiD_55-58 after choosing on IDRiD_45-54), also at the
        # level chosen on the first and through a calibration fitted on the first
        test = {**scoring, "dataset_dir": str(args.test_dataset_dir), "datalist_file": None, "val_section": "testing"}
        evaluation = evaluation_parser(args.configs, test, packaged=system == "shipped")
        calibration = None if system == "shipped" else validation_calibration(validation_logits)
        test_scores = score_network(network, evaluation, device, result["best_thr"], calibration)
        # the test maps' own F-maximising level is a choice on the test set: not reported
        for key in ("logit_histogram", "best_thr"):
            test_scores.pop(key)
        result.update({f"test_{k}": v for k, v in test_scores.items()})
    if system == "shipped":
        result.pop("ap_float")
        result.pop("test_ap_float", None)
    result.update(steps=steps, crops=crops, seconds=time.perf_counter() - start)
    return result


def _num_train(parser: ConfigParser) -> int:
    return len(parser.get_parsed_content("train#datalist"))


def _epochs(args: argparse.Namespace, parser: ConfigParser) -> int:
    if args.pixels is None:
        return int(args.epochs)
    size = parser.get_parsed_content("model_settings#patch_size")
    per_epoch = 2 * _num_train(parser) * int(parser["training_recipe#patch_samples"]) * math.prod(size)
    return max(1, round(args.pixels / per_epoch))


def markdown_table(results: dict[str, list[dict[str, float]]]) -> str:
    """Markdown table, one row per system: mean +/- std over seeds of each metric, crops seen, wall time per run."""
    tested = all("test_aupr" in r for runs in results.values() for r in runs)
    columns = [*COLUMNS, *(f"test_{c}" for c in TEST_COLUMNS)] if tested else list(COLUMNS)
    head = ["system", "seeds", *columns, "steps", "crops seen", "wall time per run (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for system, runs in results.items():
        cells = [LABELS.get(system, system), str(len(runs))]
        cells += [mean_std([r.get(c) for r in runs]) for c in columns]  # a column an older run did not score: "-"
        seconds = [r["seconds"] for r in runs]
        # a rescored network (--rescore) did not train here: its steps and crops are in its training run's table
        cells += [mean_count([r[k] for r in runs]) for k in ("steps", "crops")]
        cells.append(f"{statistics.mean(seconds):.0f} +/- {statistics.stdev(seconds) if len(seconds) > 1 else 0:.0f}")
        lines.append("| " + " | ".join(cells) + " |")

    def counts(key: str) -> str:
        return ", ".join(
            str(n) for n in sorted({r[key] for runs in results.values() for r in runs if r.get(key) is not None})
        )

    held_out = f"; {counts('test_lesions_lt100')} in the test set" if tested else ""
    lines.append("")
    lines.append(
        f"recall_lt100: share of the components under 100 pixels ({counts('lesions_lt100')} in the scored set"
        f"{held_out}; 8-connectivity, at the photographs' own size) with at least half their pixels predicted, at 0.5 "
        "(`_thr`: at the validation maps' F-maximising level); touched_lt100: the same components counted once "
        "the mask at 0.5 touches them."
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, log: Callable[[str], None] = print) -> str:
    """Run the benchmark; returns the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset_dir", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--configs", nargs="+", default=["train.json", "cpu.json"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    systems_help = "default: %(default)s"
    parser.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(DEFAULT_SYSTEMS), help=systems_help)
    parser.add_argument("--epochs", type=int, default=12, help="epochs of the dual model (the others: equal pixels)")
    parser.add_argument("--pixels", type=float, default=None, help="training pixels per system (overrides --epochs)")
    parser.add_argument("--override", type=parse_override, nargs="*", default=[], help="config overrides key=json")
    test_help = "also score each network on this dataset's testing section (e.g. the IDRiD sample's IDRiD_55-58)"
    parser.add_argument("--test_dataset_dir", type=Path, default=None, help=test_help)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic run (checks the pipeline only)")
    parser.add_argument("--workdir", type=Path, default=None)
    # not bench/accuracy_results.md: that file keeps the tables of several runs, which a new run would overwrite
    out_help = "markdown table, rewritten after every run (default: %(default)s)"
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "accuracy.md", help=out_help)
    ckpt_help = "the 'shipped' system's package (default: %(default)s)"
    parser.add_argument("--ckpt_dir", type=Path, default=CONFIGS.parent / "models", help=ckpt_help)
    add_merge_argument(parser)
    rescore_help = "score the networks an earlier run kept in this --workdir (<system>_seed<n>/network.pt) again"
    parser.add_argument("--rescore", type=Path, default=None, metavar="WORKDIR", help=rescore_help)
    args = parser.parse_args(argv)
    if args.merge:
        table = merged_table(markdown_table, args.merge, SYSTEMS, args.out)
        log(table)
        return table
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.smoke and not Path(args.dataset_dir).is_dir():
        parser.error(f"--dataset_dir {args.dataset_dir} is not a folder")
    if "shipped" in args.systems and not (args.ckpt_dir / "model.pt").is_file():
        parser.error(f"--ckpt_dir {args.ckpt_dir} holds no model.pt")
    results: dict[str, list[dict[str, float]]] = {s: [] for s in args.systems}
    with tempfile.TemporaryDirectory(prefix="accuracy_") as tmp:
        workdir = args.workdir or Path(tmp)
        for seed in args.seeds:
            for system in args.systems:
                if system == "shipped" and results[system]:
                    continue  # not trained here: one score whatever the seeds
                result = run_system(system, seed, args, workdir)
                results[system].append(result)
                log(f"{system} seed {seed}: {result}")  # the line --merge reads back
                table = _write_table(results, args.out, argv)  # after every run: an interrupted run keeps its rows
    log(table)
    return table


def _write_table(results: dict[str, list[dict[str, float]]], out: Path, argv: Sequence[str] | None) -> str:
    command = "python bench/accuracy.py " + " ".join(sys.argv[1:] if argv is None else argv)
    table = markdown_table({s: runs for s, runs in results.items() if runs}) + f"\n\nCommand: `{command}`\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table)
    return table


if __name__ == "__main__":
    main()
