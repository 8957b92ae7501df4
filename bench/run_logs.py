"""The benchmarks' result lines: formatting, ``key=json`` overrides, and reading runs back from their logs (bench/)."""

from __future__ import annotations

import argparse
import ast
import json
import re
import statistics
from collections.abc import Callable, Sequence
from pathlib import Path


def mean_std(values: Sequence[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} +/- {std:.3f}"


def mean_count(values: Sequence[float | None]) -> str:
    values = [v for v in values if v is not None]
    return f"{statistics.mean(values):.0f}" if values else "-"


def parse_override(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


RESULT_LINE = re.compile(r"^(\w+) seed (\d+): (\{.*\})$")


def logged_results(logs: Sequence[Path], systems: Sequence[str]) -> dict[str, list[dict]]:
    """The results runs of a benchmark logged (``<system> seed <n>: {...}``, one line per system and seed), in the
    order of ``systems``; a shipped model (not trained, so the same whatever the seed) scores once."""
    results: dict[str, list[dict]] = {}
    for path in logs:
        for line in path.read_text().replace("\r", "\n").splitlines():
            found = RESULT_LINE.match(line)
            if found and found.group(1) in systems:
                results.setdefault(found.group(1), []).append(ast.literal_eval(found.group(3)))
    if not results:
        raise ValueError(f"no result line in {', '.join(map(str, logs))}")
    return {s: results[s][:1] if s.startswith("shipped") else results[s] for s in systems if s in results}


def merged_table(
    render: Callable[[dict[str, list[dict]]], str], logs: Sequence[Path], systems: Sequence[str], out: Path
) -> str:
    """``render`` of the results the ``logs`` hold (:func:`logged_results`), written to ``out`` and returned."""
    table = render(logged_results(logs, systems)) + "\n\nMerged from: " + ", ".join(map(str, logs))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n")
    return table


def add_merge_argument(parser: argparse.ArgumentParser) -> None:
    """``--merge LOG...``: a benchmark only combines the result lines of earlier runs' logs into its tables."""
    help_text = "only combine the result lines of earlier runs' logs (seeds run apart) into the tables"
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="LOG", help=help_text)
