"""One bundle run in its own process (``python -m monai_exudate.reproduction.child ARGS.json``), so that each row's
time and peak memory are its own."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``monai.bundle.run(**kwargs)`` with the keyword arguments of the JSON file ``argv[0]``."""
    from monai.bundle import run

    (path,) = list(sys.argv[1:] if argv is None else argv)
    with open(path) as f:
        kwargs = json.load(f)
    run(**kwargs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
