"""Command line: ``python -m monai_exudate {datalist,check-data,synth}``."""

from __future__ import annotations

import argparse
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
    return parser


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
            datalist = build_datalist(args.layout, args.dataset_dir, **kwargs)
            path = write_datalist(datalist, args.out)
            counts = ", ".join(f"{k}: {len(v)}" for k, v in datalist.items())
            print(f"wrote {path} ({counts})")
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
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
