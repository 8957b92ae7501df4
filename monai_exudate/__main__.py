"""Command line: ``python -m monai_exudate {datalist,check-data,synth,reproduce}``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--size must look like 1440x960, got {text!r}") from err
    if width < 16 or height < 16:
        raise argparse.ArgumentTypeError(f"--size must be at least 16x16, got {text!r}")
    return width, height


def _mask_dir(text: str) -> tuple[str, str]:
    lesion, sep, folder = text.partition("=")
    if not sep or not lesion or not folder:
        raise argparse.ArgumentTypeError(f"--mask-dir must look like EX=masks/EX, got {text!r}")
    return lesion, folder


def _setting(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--set must look like KEY=JSON (training_recipe#max_epochs=4), got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value  # a plain string


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of the ``monai_exudate`` command line."""
    parser = argparse.ArgumentParser(prog="python -m monai_exudate", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("datalist", help="index a dataset folder into a MONAI datalist JSON")
    p.add_argument("--layout", required=True, choices=["idrid", "ddr", "folders"])
    p.add_argument("--dataset-dir", required=True)
    p.add_argument("--out", required=True, help="datalist JSON to write")
    p.add_argument("--image-dir", default="images", help="folders layout: image folder relative to the dataset")
    p.add_argument("--mask-dir", action="append", type=_mask_dir, help="folders layout: LESION=FOLDER (repeat)")
    p.add_argument("--validation-fraction", type=float, default=0.2, help="folders layout: share for validation")
    p.add_argument("--seed", type=int, default=0, help="folders layout: seed of the validation split")
    p.add_argument(
        "--validation-ids",
        nargs="+",
        default=[],
        help="idrid layout: training images held out for validation (e.g. IDRiD_45 ... IDRiD_54)",
    )

    p = sub.add_parser("check-data", help="open every file of a datalist and report every problem")
    p.add_argument("datalist")
    p.add_argument("--dataset-dir", required=True)
    p.add_argument("--lesions", nargs="*", default=None, help="lesion keys to check (default: all in the list)")

    p = sub.add_parser("synth", help="write a synthetic fundus dataset in a real dataset's layout")
    p.add_argument("--layout", default="idrid", choices=["idrid", "ddr"])
    p.add_argument("--out", required=True)
    p.add_argument("--num", type=int, default=12)
    p.add_argument("--size", type=_size, default=(1440, 960), help="WIDTHxHEIGHT")
    p.add_argument("--seed", type=int, default=0)

    p = sub.add_parser("reproduce", help="run the rows of a paper table over seeds, beside the published values")
    p.add_argument("--bundle", default="exudate_dsm", choices=["exudate_dsm", "fundus_lesion_hrdecoder"])
    p.add_argument("--dataset-dir", help="dataset folder (default: the bundle's synthetic set)")
    p.add_argument("--overlay", nargs="*", default=[], help="config overlays: idrid.json, ddr.json, cpu.json or paths")
    p.add_argument("--arch", default="pspnet", help="exudate_dsm: the architecture of the rows")
    p.add_argument("--rows", nargs="*", default=None, help="names of the rows to run (default: all)")
    p.add_argument("--sample-rates", nargs="*", type=float, default=[], help="exudate_dsm: Table 2 rows")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--set", nargs="*", type=_setting, default=[], help="KEY=JSON settings for every row (scale-down)")
    p.add_argument("--out", required=True, help="folder for the runs, reproduction.md and reproduction.csv")
    p.add_argument("--experiment", default=None, help="MLflow experiment (default: <bundle>_reproduction)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: a SQLite file in --out)")

    p = sub.add_parser(
        "calibrate",
        help="fit a trained model's probability calibration on a held-out section and ship it in its model package",
    )
    p.add_argument("--bundle-root", required=True, help="the bundle folder (its configs/inference.json runs the model)")
    p.add_argument(
        "--ckpt-dir", default=None, help="the model's folder (default: the bundle's outputs/models/, where it trains)"
    )
    p.add_argument("--datalist", required=True, help="datalist JSON holding the section")
    p.add_argument("--dataset-dir", required=True, help="dataset folder the datalist's paths are relative to")
    p.add_argument("--section", default="validation", help="section to fit on (never the test photographs)")
    p.add_argument("--score-only", action="store_true", help="only measure the shipped calibration on the section")
    p.add_argument("--report-dir", default=None, help="folder for calibration_<section>.json and reliability PNGs")

    p = sub.add_parser("release", help="write a bundle's large_files.yml for its trained model (addresses, SHA-256)")
    p.add_argument("--bundle-root", required=True, help="bundle folder whose models/ holds the trained model")
    p.add_argument("--base-url", required=True, help="address of the folder the model files are uploaded to")
    p.add_argument("--models-dir", default="models", help="model folder relative to the bundle (default: models)")
    p.add_argument("--allow-synthetic", action="store_true", help="publish a model of the synthetic demo set")
    return parser


def _calibrate(args: argparse.Namespace) -> None:
    from pathlib import Path

    from monai_exudate.inference.calibration_fit import calibrate_model

    bundle_root = Path(args.bundle_root).resolve()
    # the shipped model in models/ is calibrated already: by default the command works on a model trained here
    ckpt_dir = Path(args.ckpt_dir) if args.ckpt_dir else bundle_root / "outputs" / "models"
    overrides = {"bundle_root": str(bundle_root), "ckpt_dir": str(ckpt_dir.resolve())}
    report = calibrate_model(
        bundle_root / "configs" / "inference.json", args.datalist, args.dataset_dir, args.section,
        overrides=overrides, fit=not args.score_only, report_dir=args.report_dir,
    )  # fmt: skip
    print(f"{'scored' if args.score_only else 'fitted'} on {args.section} ({len(report['images'])} photographs)")
    print("lesion  map         AUPR   AP     ECE     IoU@0.5 F@0.5  threshold IoU@t  F@t")
    for lesion, figures in report["lesions"].items():
        print(f"{lesion:<7} float maps  AP {figures['float_ap']:.4f}")
        for name in ("sigmoid", "calibrated"):
            f = figures[name]
            print(
                f"{lesion:<7} {name:<11} {f['aupr']:.4f} {f['ap']:.4f} {f['ece']:.5f} {f['iou']:.4f}  {f['f']:.4f} "
                f"{f['threshold']:.4f}    {f['iou_at_threshold']:.4f} {f['f_at_threshold']:.4f}"
            )


def _reproduce(args: argparse.Namespace) -> None:
    from pathlib import Path

    from monai_exudate.reproduction import table_rows, write_reports
    from monai_exudate.reproduction.rows import published_source
    from monai_exudate.reproduction.runner import run_table

    rows = table_rows(args.bundle, args.arch, tuple(args.sample_rates))
    if args.rows:
        unknown = sorted(set(args.rows) - {r.name for r in rows})
        if unknown:
            raise ValueError(f"--rows {unknown} not in the table: {[r.name for r in rows]}")
        rows = [r for r in rows if r.name in args.rows]
    overrides = dict(args.set)
    if args.dataset_dir:
        overrides.update(dataset_dir=str(Path(args.dataset_dir).resolve()), synthetic=False)
    names = {Path(o).name for o in args.overlay}
    dataset = "idrid" if "idrid.json" in names else "ddr" if "ddr.json" in names else None
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = run_table(
        args.bundle, rows, args.seeds, out, overlays=args.overlay, overrides=overrides,
        experiment=args.experiment or f"{args.bundle}_reproduction", tracking_uri=args.tracking_uri, dataset=dataset,
    )  # fmt: skip
    command = "python -m monai_exudate " + " ".join(sys.argv[1:])
    print(write_reports(args.bundle, results, out, published_source(args.bundle), command))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "datalist":
            from monai_exudate.data.indexers import build_datalist, write_datalist

            kwargs = {}
            if args.layout == "folders":
                kwargs = {
                    "image_dir": args.image_dir,
                    "validation_fraction": args.validation_fraction,
                    "seed": args.seed,
                }
                if args.mask_dir:
                    kwargs["mask_dirs"] = dict(args.mask_dir)
            elif args.validation_ids:
                if args.layout != "idrid":
                    raise ValueError("--validation-ids applies to the idrid layout (folders: --validation-fraction)")
                kwargs = {"validation_ids": args.validation_ids}
            datalist = build_datalist(args.layout, args.dataset_dir, **kwargs)
            path = write_datalist(datalist, args.out)
            counts = ", ".join(f"{k}: {len(v)}" for k, v in datalist.items())
            print(f"wrote {path} ({counts})")
        elif args.command == "calibrate":
            _calibrate(args)
        elif args.command == "check-data":
            from monai_exudate.data.checks import check_datalist

            problems = check_datalist(args.datalist, args.dataset_dir, args.lesions)
            for problem in problems:
                print(problem)
            print(f"{len(problems)} problem(s) found" if problems else "no problems found")
            return 1 if problems else 0
        elif args.command == "synth":
            from monai_exudate.data.synthetic import write_synthetic_dataset

            root = write_synthetic_dataset(
                out_dir=args.out, layout=args.layout, num=args.num, size=args.size, seed=args.seed
            )
            print(f"wrote {args.num} synthetic images in the {args.layout} layout to {root}")
        elif args.command == "reproduce":
            _reproduce(args)
        elif args.command == "release":
            from monai_exudate.bundle.release import release_files, write_large_files

            path = write_large_files(args.bundle_root, args.base_url, args.models_dir, args.allow_synthetic)
            print(f"wrote {path}; upload to {args.base_url}:")
            for file in release_files(args.bundle_root, args.models_dir):
                print(f"  {file}")
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
