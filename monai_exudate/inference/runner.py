"""Streaming inference over fundus photographs: preprocess, predict, invert to the original grid, write outputs."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor, decollate_batch
from monai.inferers import Inferer, SimpleInferer
from monai.transforms import Compose
from torch import nn
from tqdm import tqdm

from monai_exudate.inference.dataset import MAX_IMAGE_PIXELS, InferenceDataset, collate_inference, innermost_cause
from monai_exudate.inference.image_outputs import ImageOutputs, model_line
from monai_exudate.inference.inversion import levels_on_photograph
from monai_exudate.inference.legend import lesion_thresholds
from monai_exudate.inference.model_package import announce_if_demo_model
from monai_exudate.inference.postprocessing import check_logit_batch, to_probabilities
from monai_exudate.inference.quantify import summary_rows
from monai_exudate.inference.records import (
    RunManifest,
    folder_identity,
    new_run_id,
    utc_now,
)
from monai_exudate.inference.run_state import InferenceReport, RunState
from monai_exudate.inference.sharding import JobRanks, job_folder_lock, merged_report
from monai_exudate.inference.summary import SummaryTable, model_columns, rank_table_path
from monai_exudate.inference.writers import OUTPUT_FORMATS, PNG_ENCODING, OutputLayout
from monai_exudate.utils.atomic import remove_partial_files
from monai_exudate.utils.json_values import json_round_trip

logger = logging.getLogger(__name__)

SUMMARY_FILE = "summary.csv"
FAILURES_FILE = "failures.csv"


class FundusInferenceRunner:
    """Segment fundus photographs and write per-lesion maps, overlays and a lesion table at the original size.

    Images stream through a DataLoader (reading and preprocessing in ``num_workers`` processes), the network (eval
    mode, through ``inferer``, fp16 autocast on CUDA when ``amp``; ``batch_size`` photographs of one shape per call,
    so a sliding-window inferer batches the windows of several photographs), the ``postprocessing`` from logits to
    probabilities and the inversion of the preprocessing (``Compose.inverse``, on the network's device), then to
    ``num_writers`` writer threads; at most ``2 * num_writers`` images wait for writing, so memory does not grow with
    the number of images. Per image (``stem`` = the file's stem) and lesion: ``<stem>_<LESION>_prob.png`` (8-bit,
    round(p * 255)) and ``<stem>_<LESION>_mask.png`` (0/255 where round(p * 255) / 255 > threshold, the metrics'
    rule); ``<stem>_overlay.png`` (or ``.jpg``); ``<stem>_prob.nii.gz`` when ``nifti``. Per folder: ``summary.csv``
    (``quantify.SUMMARY_FIELDS``), ``failures.csv`` (``records.FAILURE_FIELDS``, earlier runs' rows kept) and
    ``manifest.json`` (the settings that made the folder and a record per run). Every file is written atomically.

    Unusable inputs (``dataset.check_image_file``) and non-finite predictions are reported and skipped, or raise
    ``ValueError`` naming the file when ``strict``. An image whose outputs look whole and have summary rows is skipped
    unless ``overwrite``; an output name (stem) taken by another input is reported, not written. A folder made with
    other settings is refused, saying which differ, unless ``overwrite`` (which redoes its photographs). One job at a
    time writes into a folder: a second is refused with ``records.FolderInUseError``. With ``distributed`` (under
    ``torchrun``) the job is sharded over the ranks, each on its own ``device``: every photograph is segmented by
    exactly one rank and the records are merged once by rank 0 (``inference.sharding``).

    Args:
        network: returns logits ``(B, K, *spatial)`` in eval mode (``K``: what ``postprocessing`` expects).
        preprocessing: the bundle's ``Compose``, starting with the transform that loads ``image_key`` from a path;
            every spatial transform must be invertible.
        postprocessing: maps one image's ``{"pred": logits (K, *spatial)}`` to ``{"pred": probabilities
            (len(lesion_names), *spatial)}``, e.g. ``Compose([FuseBranchLogitsd, Activationsd(sigmoid=True)])``.
        inferer: MONAI inferer (``SimpleInferer`` when None).
        lesion_names: one name per output channel, used in file names and the table.
        output_dir: folder for every output (created).
        device: where the network runs.
        threshold: probability threshold of the masks and the table: one for every lesion, or one per lesion.
        batch_size: images per network call (preprocessing must give them one shape to batch them).
        num_workers: DataLoader worker processes (0 reads in the main process); amp: fp16 autocast on CUDA only.
        formats: subset of ``("prob", "mask", "overlay")``; nifti: also write the NIfTI probabilities.
        overwrite: redo images whose outputs exist.
        strict: stop at the first failure.
        progress: show a tqdm progress bar.
        num_writers: writer threads (default: up to 4, one per CPU).
        overlay_alpha: opacity of the lesion colours in the overlay.
        overlay_format: "png" (lossless) or "jpeg" (quality 95, 4:4:4; about five times faster at 12 megapixels).
        overlay_legend: draw the legend (lesion colours, threshold, model) in a corner (``legend.draw_legend``).
        overlay_side_by_side: put the untouched photograph left of the painted one (an overlay twice as wide).
        image_key: the image key of the preprocessing.
        png_compress_level: zlib level of the PNGs (1: fast, 9: small).
        model_file: the checkpoint or exported model the network came from; its SHA-256 is part of the settings.
        provenance: JSON-able facts recorded with each run (bundle, version, ``"model"``: ``model_origin``; a
            synthetic-only model is announced as a demo model at the start and the end).
        output_settings: the resolved settings that change the outputs (the bundles: package settings, calibration,
            flips, window overlap), part of the folder's identity (``records.folder_identity``); None: the components
            are described instead (``records.describe_components``), which a library upgrade may change.
        max_image_pixels: photographs whose header declares more pixels are refused before decoding.
        input_root: ``summary.csv`` names images relative to this folder or file's folder; None: as given.
        distributed: run as one rank of the initialised ``torch.distributed`` job, every rank with the same items
            (the bundles' ``multi_gpu_inference.json`` sets it); False: a job of one process.
    """

    def __init__(
        self,
        network: nn.Module,
        preprocessing: Compose,
        postprocessing: Callable[[Mapping[str, Any]], Mapping[str, Any]],
        inferer: Inferer | None = None,
        lesion_names: Sequence[str] = ("EX",),
        output_dir: str | os.PathLike = "inference",
        device: str | torch.device = "cpu",
        threshold: float | Sequence[float] = 0.5,
        batch_size: int = 1,
        num_workers: int = 0,
        amp: bool = False,
        formats: Sequence[str] = OUTPUT_FORMATS,
        nifti: bool = False,
        overwrite: bool = False,
        strict: bool = False,
        progress: bool = True,
        num_writers: int | None = None,
        overlay_alpha: float = 0.5,
        overlay_format: str = "png",
        overlay_legend: bool = True,
        overlay_side_by_side: bool = False,
        image_key: str = "image",
        png_compress_level: int = 1,
        model_file: str | os.PathLike | None = None,
        provenance: Mapping[str, Any] | None = None,
        max_image_pixels: int = MAX_IMAGE_PIXELS,
        input_root: str | os.PathLike | None = None,
        output_settings: Mapping[str, Any] | None = None,
        distributed: bool = False,
    ) -> None:
        if not isinstance(preprocessing, Compose):
            raise ValueError(f"preprocessing must be a monai.transforms.Compose, got {type(preprocessing).__name__}")
        names = [str(n) for n in lesion_names]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"lesion_names must be non-empty and unique, got {names}")
        bad = [n for n in names if not n or any(not (c.isalnum() or c in "-_") for c in n)]
        if bad:
            raise ValueError(f"lesion_names are used in file names: letters, digits, '-' and '_' only, got {bad}")
        thresholds = lesion_thresholds(threshold, names)
        if batch_size < 1 or num_workers < 0 or (num_writers is not None and num_writers < 1):
            counts = f"{batch_size}, {num_workers} and {num_writers}"
            raise ValueError(f"batch_size and num_writers must be >= 1, num_workers >= 0, got {counts}")
        if not 0.0 <= overlay_alpha <= 1.0:
            raise ValueError(f"overlay_alpha must be in [0, 1], got {overlay_alpha}")
        if max_image_pixels < 1:
            raise ValueError(f"max_image_pixels must be >= 1, got {max_image_pixels}")
        if not callable(postprocessing):
            kind = type(postprocessing).__name__
            raise ValueError(f"postprocessing must be callable on {{'pred': logits}}, not {kind}")
        self.network = network
        self.preprocessing = preprocessing
        self.postprocessing = postprocessing
        self.inferer = inferer or SimpleInferer()
        self.lesion_names = names
        self.output_dir = Path(output_dir)
        self.layout = OutputLayout(self.output_dir, names, formats, nifti, overlay_format)
        self.device = torch.device(device)
        # one value when one was given, so the identity of folders made before per-lesion thresholds holds
        self.threshold = thresholds[0] if isinstance(threshold, (int, float)) else thresholds
        self._lesion_threshold = dict(zip(names, thresholds))
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.amp = bool(amp)
        self.formats = tuple(formats)
        self.nifti = bool(nifti)
        self.overwrite = bool(overwrite)
        self.strict = bool(strict)
        self.progress = bool(progress)
        self.num_writers = int(num_writers or min(4, os.cpu_count() or 1))
        self.image_key = image_key
        self.model_file = None if model_file is None else Path(model_file)
        self.provenance = dict(provenance or {})
        self.max_image_pixels = int(max_image_pixels)
        self.input_root = input_root
        self.output_settings = None if output_settings is None else json_round_trip(output_settings)
        self.distributed = bool(distributed)
        self._model_columns = model_columns(self.provenance, self.model_file)
        self.outputs = ImageOutputs(
            self.layout, names, thresholds, self.formats, overlay_alpha, overlay_format, overlay_legend,
            overlay_side_by_side, model_line(network, self.provenance), png_compress_level,
        )  # fmt: skip

    def settings(self) -> dict[str, Any]:
        """What decides the contents of the outputs, as recorded in the manifest and compared between runs."""
        out = self.outputs
        fixed = {
            "lesions": self.lesion_names, "threshold": self.threshold, "overlay_alpha": out.overlay_alpha,
            "overlay_legend": out.overlay_legend, "overlay_side_by_side": out.overlay_side_by_side,
            "legend_model": out.legend_model,
        }  # fmt: skip
        parts = {"network": self.network, "preprocessing": self.preprocessing, "postprocessing": self.postprocessing}
        return folder_identity(self.model_file, fixed, self.output_settings, {**parts, "inferer": self.inferer})

    def run(self, items: Sequence[Mapping[str, Any] | str | os.PathLike]) -> InferenceReport:
        """Segment ``items`` (dicts with ``image_key`` or paths) and return the report, which is also logged; in a
        sharded job every rank passes the same items, segments its share and returns the job's report."""
        items = list(items)
        ranks = JobRanks.of_process_group() if self.distributed else JobRanks()
        self.output_dir.mkdir(parents=True, exist_ok=True)
        run_id = ranks.from_main(new_run_id())
        announce_if_demo_model(self.provenance if ranks.is_main else {})
        try:
            with job_folder_lock(self.output_dir, run_id, ranks):
                return self._run_holding_folder(items, run_id, ranks)
        finally:
            announce_if_demo_model(self.provenance if ranks.is_main else {})

    def _begin(self, items: list[Mapping[str, Any] | str | os.PathLike], run_id: str, ranks: JobRanks) -> tuple:
        """The main rank's start of a run: the folder's settings check and manifest, and the plan of what to do."""
        remove_partial_files(self.output_dir)
        table = SummaryTable(self.output_dir / SUMMARY_FILE)
        table.absorb_rank_tables()  # rows a killed sharded job left: their photographs are done
        run_info = {
            "model_file": None if self.model_file is None else str(self.model_file), "formats": list(self.formats),
            "overlay_format": self.outputs.overlay_format, "nifti": self.nifti, "device": str(self.device),
            "processes": ranks.world_size, "amp": self.amp, "encoding": PNG_ENCODING,
            "provenance": json_round_trip(self.provenance),
        }  # fmt: skip
        manifest = RunManifest(self.output_dir, run_id, self.settings(), run_info)
        if manifest.check(table.images(), self.overwrite):
            for image in table.images():  # made with other settings: none of them is done
                table.remove(image)
            table.flush()
        manifest.begin(len(items))
        state = RunState(self.output_dir, table, self.strict, self.input_root)
        pending = state.plan(items, self.layout.complete, self.lesion_names, self.image_key, self.overwrite)
        if state.fatal is not None:  # strict: a failure found while planning stops the job before it segments
            table.flush()
            manifest.finish(self.output_dir / FAILURES_FILE, state.report, completed=False)
            state.raise_if_fatal()
        return manifest, state, pending

    def _run_holding_folder(
        self, items: list[Mapping[str, Any] | str | os.PathLike], run_id: str, ranks: JobRanks
    ) -> InferenceReport:
        started = time.monotonic()
        manifest, state, pending, refusal = None, None, None, None
        if ranks.is_main:
            try:
                manifest, state, pending = self._begin(items, run_id, ranks)
            except Exception as err:
                refusal = _describe(err)
                raise
            finally:
                ranks.from_main((refusal, pending))
        else:
            refusal, pending = ranks.from_main(None)
            if refusal is not None:
                raise RuntimeError(f"the inference job's main rank stopped before segmenting: {refusal}")
            table = SummaryTable(rank_table_path(self.output_dir, ranks.rank))
            state = RunState(self.output_dir, table, self.strict, self.input_root)
        state.report.run_id = run_id
        stopped: Exception | None = None
        try:
            share = ranks.share(pending)
            if share:
                self._stream(share, state)
            state.raise_if_fatal()
            state.table.flush()
        except Exception as err:  # the other ranks must still meet this one at the merge
            stopped = err
        except BaseException:  # an interrupt: a sharded job's ranks are stopped together by torchrun
            state.table.flush()
            if manifest is not None and not ranks.is_sharded:
                manifest.finish(self.output_dir / FAILURES_FILE, state.report, completed=False)
            raise
        outcomes = ranks.gather((state.report, None if stopped is None else _describe(stopped)))
        report = merged_report([r for r, _ in outcomes], found=len(items))
        if manifest is not None:  # the main rank merges: the other ranks' rows, less those of their failed photographs
            manifest.record["seconds"] = round(time.monotonic() - started, 3)
            state.table.absorb_rank_tables()
            for path, _ in (failure for other, _ in outcomes[1:] for failure in other.failed):
                state.table.remove(state.name(path))
            state.table.flush()
            manifest.finish(self.output_dir / FAILURES_FILE, report, completed=all(s is None for _, s in outcomes))
        if stopped is not None:
            raise stopped
        for rank, (_, reason) in enumerate(outcomes):
            if reason is not None:
                raise RuntimeError(f"rank {rank} of the inference job stopped: {reason}")
        if ranks.is_main:
            logger.info("%s", report)
        return report

    def _stream(self, pending: list[dict[str, str]], state: RunState) -> None:
        dataset = InferenceDataset(
            pending,
            self.preprocessing,
            self.image_key,
            keep_original="overlay" in self.formats,
            max_image_pixels=self.max_image_pixels,
        )
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=functools.partial(collate_inference, image_key=self.image_key),
        )
        batches = iter(loader)  # start the worker processes before any thread exists
        network = self.network.to(self.device).eval()
        autocast = (
            torch.autocast("cuda", dtype=torch.float16)
            if self.amp and self.device.type == "cuda"
            else contextlib.nullcontext()
        )
        bar = tqdm(total=len(pending), desc="inference", unit="img", disable=not self.progress)
        pool = ThreadPoolExecutor(self.num_writers, thread_name_prefix="inference-writer")
        slots = threading.BoundedSemaphore(2 * self.num_writers)

        def written(_future: Any) -> None:
            slots.release()
            bar.update(1)

        try:
            for info, image, logits in self._predictions(batches, network, autocast, state, bar):
                maps = self._maps_or_failure(logits, image, info, state)
                if maps is None:
                    bar.update(1)
                    continue
                slots.acquire()
                pool.submit(self._write, state, *maps, info).add_done_callback(written)
            pool.shutdown(wait=True)
        finally:
            # on an error or an interrupt, images not yet started are dropped: a re-run does them
            pool.shutdown(wait=True, cancel_futures=True)
            bar.close()

    def _predictions(
        self, batches: Any, network: nn.Module, autocast: Any, state: RunState, bar: tqdm
    ) -> Iterator[tuple[Mapping[str, Any], MetaTensor, torch.Tensor]]:
        """``(info, preprocessed image, logits)`` per readable image; unreadable ones are failed as they come."""
        for batch in batches:
            for path, reason in batch["errors"]:
                state.fail(path, reason)
                bar.update(1)
            state.raise_if_fatal()
            for group in batch["batches"]:
                images = group[self.image_key]
                with torch.no_grad(), autocast:
                    logits = self.inferer(images.as_tensor().to(self.device), network)
                logits = check_logit_batch(logits, images)
                samples = decollate_batch({self.image_key: images})
                for sample, info, image_logits in zip(samples, group["info"], logits):
                    yield info, sample[self.image_key], image_logits
            state.raise_if_fatal()

    def _maps_or_failure(
        self, logits: torch.Tensor, image: MetaTensor, info: Mapping[str, Any], state: RunState
    ) -> tuple[np.ndarray, np.ndarray | None] | None:
        """One image's 8-bit maps (and float maps) on the photograph's grid, or None once its failure is recorded."""
        bad = int(logits.numel() - torch.isfinite(logits).sum())
        if bad:
            reason = f"the network output has {bad} non-finite values (NaN or inf) of {logits.numel()}"
            state.fail(str(info["path"]), reason)
            return None
        prob = to_probabilities(self.postprocessing, logits, self.lesion_names)
        try:
            return self._map_back(prob, image, info)
        except Exception as err:  # one image's failure must not stop the others
            state.fail(str(info["path"]), f"could not map the prediction back ({_describe(err)})")
            return None

    def _map_back(
        self, prob: torch.Tensor, image: MetaTensor, info: Mapping[str, Any]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """8-bit levels (C, H, W) of one prediction on the photograph's grid, and the float maps when ``nifti``.

        Runs in the loop's thread, on the prediction's device: on a GPU only 8-bit levels cross to the host; on a CPU
        torch's thread pool is used once, not by every writer thread next to the network's."""
        original = info.get("original")
        size = tuple(original.shape[1:]) if original is not None else tuple(image.meta.get("spatial_shape", ()))
        return levels_on_photograph(self.preprocessing, prob, image, self.image_key, size, self.nifti)

    def _write(self, state: RunState, levels: np.ndarray, volume: np.ndarray | None, info: Mapping[str, Any]) -> None:
        """Writer thread: one image's files and summary rows from its 8-bit levels (C, H, W)."""
        path = str(info["path"])
        try:
            masks = self.outputs.write(Path(path).stem, levels, volume, info.get("original"))
            name = state.name(path)
            facts = {**self._model_columns, "segmented_at": utc_now()}
            rows = summary_rows(name, masks, self.lesion_names, int(info["fov_pixels"]))
            state.table.update(name, [{**r, "threshold": self._lesion_threshold[r["lesion"]], **facts} for r in rows])
            state.succeeded()
        except Exception as err:  # one image's failure must not stop the others
            state.fail(path, f"could not write outputs ({_describe(err)})")


def _describe(err: BaseException) -> str:
    cause = innermost_cause(err)
    return f"{type(cause).__name__}: {cause}"
