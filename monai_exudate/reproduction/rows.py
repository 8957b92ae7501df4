"""The rows of the papers' tables as bundle overrides, and the published values they are compared with."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["BUNDLE_METRICS", "TableRow", "published_values", "table_rows"]

PUBLISHED_FILE = Path(__file__).with_name("published.json")
# metric keys of evaluate.json's metrics.json reported per bundle, and their names in the published table
BUNDLE_METRICS = {
    "exudate_dsm": {"EX_iou": "iou", "EX_f": "f", "EX_aupr": "aupr"},
    "fundus_lesion_hrdecoder": {"mIoU": "miou", "mAUPR": "maupr"},
}


@dataclass(frozen=True)
class TableRow:
    """One row of a paper table: its name, the bundle settings that make it, and its published values' key."""

    name: str
    overrides: dict[str, Any] = field(default_factory=dict)
    published_key: str | None = None


def table_rows(bundle: str, arch: str = "pspnet", sample_rates: tuple[float, ...] = ()) -> list[TableRow]:
    """The rows of the bundle's paper table.

    ``exudate_dsm`` (Liu et al., Tables 3/4): single-branch + class-balanced BCE, single-branch + Dice, dual-branch
    + DSM for ``arch``; with ``sample_rates`` also the dual + DSM rows of Table 2 at those sample rates.
    ``fundus_lesion_hrdecoder``: the low-resolution baseline (``lr_only``), HRDecoder, and the baseline on the
    full-resolution input (``downscale 1``, ``lr_only``).
    """
    if bundle == "exudate_dsm":

        def row(dual: bool, loss: str, **extra: float) -> dict[str, object]:
            settings = {"model_settings#arch": arch, "model_settings#dual": dual}
            return {**settings, "training_recipe#loss_name": loss, **extra}

        rows = [
            TableRow(f"single_cbce_{arch}", row(False, "cbce")),
            TableRow(f"single_dice_{arch}", row(False, "dice")),
            TableRow(f"dual_dsm_{arch}", row(True, "dsm"), f"dual_dsm_{arch}"),
        ]
        for rate in sample_rates:
            rate_row = row(True, "dsm", **{"training_recipe#sample_rate": float(rate)})
            rows.append(TableRow(f"dual_dsm_{arch}_rate{rate:g}", rate_row))
        return rows
    if bundle == "fundus_lesion_hrdecoder":
        if sample_rates:
            raise ValueError("sample rates are rows of the exudate_dsm table only")
        return [
            TableRow("lr_only", {"model_settings#lr_only": True}),
            TableRow("hrdecoder", {"model_settings#lr_only": False}, "hrdecoder"),
            TableRow("lr_only_full_resolution", {"model_settings#lr_only": True, "model_settings#downscale": 1}),
        ]
    raise ValueError(f"bundle must be one of {sorted(BUNDLE_METRICS)}, got {bundle!r}")


def published_values(bundle: str, dataset: str | None, key: str | None) -> dict[str, float]:
    """Published values (in %) of one row on ``dataset`` ("idrid" or "ddr"), empty when the paper has none."""
    if dataset is None or key is None:
        return {}
    table = json.loads(PUBLISHED_FILE.read_text())
    return dict(table.get(bundle, {}).get(dataset, {}).get(key, {}))


def published_source(bundle: str) -> str:
    """Where the published values of ``bundle`` come from."""
    return json.loads(PUBLISHED_FILE.read_text())["source"][bundle]
