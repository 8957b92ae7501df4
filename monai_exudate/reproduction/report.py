"""The reproduction table: each metric as mean +/- std over seeds beside the published value, time and memory."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from monai_exudate.reproduction.rows import BUNDLE_METRICS
from monai_exudate.reproduction.runner import RowResult, mean_std
from monai_exudate.utils.atomic import atomic_write_bytes

__all__ = ["markdown_table", "write_reports"]


def _rows(bundle: str, results: Sequence[RowResult]) -> tuple[list[str], list[list[str]]]:
    metrics = list(BUNDLE_METRICS[bundle].values())
    head = ["row", "seeds"]
    for name in metrics:
        head += [f"{name} (%)", f"{name} published (%)"]
    head += ["time per seed (s)", "peak memory (MiB)"]
    table = []
    for result in results:
        cells = [result["name"], str(len(result["seeds"]))]
        for name in metrics:
            mean, std = mean_std([100.0 * m[name] for m in result["metrics"]])
            published = result["published"].get(name)
            cells += [f"{mean:.2f} +/- {std:.2f}", "-" if published is None else f"{published:.2f}"]
        seconds, _ = mean_std(result["seconds"])
        cells += [f"{seconds:.0f}", f"{max(result['peak_mib']):.0f}"]
        table.append(cells)
    return head, table


def markdown_table(bundle: str, results: Sequence[RowResult], source: str, command: str) -> str:
    """Markdown: one row per table row, then where the published values come from and the command."""
    head, table = _rows(bundle, results)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in table]
    lines += [
        "",
        f"Published values: {source}; '-' where the paper gives none for that row.",
        "",
        f"Command: `{command}`",
    ]
    return "\n".join(lines) + "\n"


def write_reports(bundle: str, results: Sequence[RowResult], out_dir: Path, source: str, command: str) -> str:
    """Write ``reproduction.md`` and ``reproduction.csv`` (raw numbers) to ``out_dir``; return the markdown."""
    text = markdown_table(bundle, results, source, command)
    atomic_write_bytes(Path(out_dir) / "reproduction.md", text.encode())
    head, table = _rows(bundle, results)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(head)
    writer.writerows(table)
    atomic_write_bytes(Path(out_dir) / "reproduction.csv", buffer.getvalue().encode())
    return text
