"""Small helpers shared by the handlers: iterate decollated samples, hand them to a metric, name them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


def iter_samples(output: Any) -> Iterator[dict[str, Any]]:
    """Yield per-sample dicts from an engine output (a decollated list of dicts, or one batched dict)."""
    if isinstance(output, Mapping):
        batch = output.get("pred")
        size = len(batch) if batch is not None else 0
        for i in range(size):
            yield {k: v[i] for k, v in output.items() if hasattr(v, "__len__") and len(v) == size}
    else:
        yield from output


def pred_label_present(output: Any) -> tuple:
    """``(pred, label[, present])`` lists from an evaluator's output, the input of the handlers' own histogram metric.

    ``pred`` is clamped to [0, 1]: bilinear inversion to the photograph can overshoot by a rounding error.
    ``present`` (each sample's ``label_present`` flags) is given when every sample has it.
    """
    samples = list(iter_samples(output))
    preds = [sample["pred"].detach().float().clamp(0, 1) for sample in samples]
    labels = [sample["label"].detach().float() for sample in samples]
    if samples and all(sample.get("label_present") is not None for sample in samples):
        return preds, labels, [sample["label_present"] for sample in samples]
    return preds, labels


def sample_name(sample: Mapping[str, Any], index: int) -> str:
    """A file-name stem for a sample: the source image's stem, else its position."""
    meta = getattr(sample.get("image"), "meta", {}) or {}
    source = meta.get("filename_or_obj")
    if isinstance(source, (list, tuple)):
        source = source[0] if source else None
    return Path(str(source)).stem if source else f"sample_{index:04d}"
