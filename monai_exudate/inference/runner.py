"""Streaming inference over fundus photographs: preprocess, predict, invert to the original grid, write outputs."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
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
from monai_exudate.inference.model_package import DEMO_MODEL_WARNING
from monai_exudate.inference.postprocessing import check_logit_batch, to_probabilities
from monai_exudate.inference.quantify import summary_rows
from monai_exudate.inference.records import (
    RunManifest,
    canonical,
    describe_components,
    folder_lock,
    new_run_id,
    utc_now,
)
from monai_exudate.inference.run_state import InferenceReport, RunState
from monai_exudate.inference.summary import SummaryTable, model_columns
from monai_exudate.inference.writers import OUTPUT_FORMATS, OutputLayout
from monai_exudate.utils.atomic import remove_partial_files
from monai_exudate.utils.hashing import file_sha256
from monai_exudate.utils.json_values import json_round_trip

logger = logging.getLogger(__name__)

# how to read the probability and mask PNGs back, as the manifest states it
PNG_ENCODING = {
    "prob": "8-bit grey level q = round(p * 255); the probability is q / 255",
    "mask": "255 where q / 255 > threshold (the metrics' rule), else 0",
}

SUMMARY_FILE = "summary.csv"
FAILURES_FILE = "failures.csv"


class FundusInferenceRunner:
    """Segment fundus photographs and write per-lesion maps, overlays and a lesion table at the original size.

    Images stream through a DataLoader (reading and preprocessing in ``num_workers`` processes), the network (eval
    mode, through ``inferer``, fp16 autocast on CUDA when ``amp``), the post-processing that turns each image's
    logits into probabilities (``postprocessing``: branch fusion, sigmoid) and the inversion of the preprocessing on
    each prediction (``Compose.inverse``, back to the photograph's pixel grid, on the network's device), then to a
    pool of ``num_writers`` threads that write the files; at most ``2 * num_writers`` images wait for writing, so memory
    does not grow with the number of images. Outputs in ``output_dir`` per image (``stem`` = the image file's
    stem), for each lesion:
    ``<stem>_<LESION>_prob.png`` (8-bit, round(p * 255)) and ``<stem>_<LESION>_mask.png`` (0/255, set where
    round(p * 255) / 255 > threshold, the rule of the project's metrics); ``<stem>_overlay.png`` (masks blended
    in a fixed colour per lesion over the photograph; ``.jpg`` with ``overlay_format="jpeg"``);
    ``<stem>_prob.nii.gz`` when ``nifti`` (float32, width x height x lesion). Per folder: ``summary.csv``
    (``quantify.SUMMARY_FIELDS``, one row per image and lesion), ``failures.csv`` (``records.FAILURE_FIELDS``:
    run id, image, reason; earlier runs' rows kept) and ``manifest.json`` records what made the folder
    (``settings``: model file hash, threshold, lesions, preprocessing, inferer, network flags, ``provenance``) and
    each run (id, times, counts, formats). Every file is written atomically, with the photograph's width and height.

    Inputs that cannot be used (see ``dataset.check_image_file``) and predictions that are not finite are reported
    and skipped, or raise ``ValueError`` naming the file when ``strict``. An image whose outputs exist, look whole
    (``writers.output_size``) and have summary rows is skipped unless ``overwrite``. A folder made with other
    settings is refused, saying which differ, unless ``overwrite``, which redoes its photographs (the earlier rows
    of summary.csv are dropped first, so none of the earlier outputs counts as done). One run at a time writes into
    a folder (``records.folder_lock``): a second one is refused with ``records.FolderInUseError``.

    Outputs are named by stem, so an input whose stem is taken by an earlier input of the run,
    or by another image of an earlier run in ``summary.csv`` (unless ``overwrite``), is reported, not written.

    Args:
        network: returns logits ``(B, K, *spatial)`` in eval mode (``K``: what ``postprocessing`` expects).
        preprocessing: the bundle's ``Compose``, starting with the transform that loads ``image_key`` from a path;
            every spatial transform must be invertible.
        postprocessing: maps ``{"pred": logits (K, *spatial)}`` of one image to ``{"pred": probabilities
            (len(lesion_names), *spatial)}`` on the network's grid, e.g. ``Compose([FuseBranchLogitsd,
            Activationsd(sigmoid=True)])``; recorded in the settings.
        inferer: MONAI inferer (``SimpleInferer`` when None).
        lesion_names: one name per output channel, used in file names and the table.
        output_dir: folder for every output (created).
        device: where the network runs.
        threshold: probability threshold of the masks and the table.
        batch_size: images per network call (preprocessing must give them one shape to batch them).
        num_workers: DataLoader worker processes (0 reads in the main process).
        amp: fp16 autocast on CUDA (ignored on CPU).
        formats: subset of ``("prob", "mask", "overlay")``.
        nifti: also write the multi-channel NIfTI probabilities.
        overwrite: redo images whose outputs exist.
        strict: stop at the first failure.
        progress: show a tqdm progress bar.
        num_writers: writer threads (default: up to 4, one per CPU).
        overlay_alpha: opacity of the lesion colours in the overlay.
        overlay_format: "png" (lossless) or "jpeg" (quality 95, 4:4:4; about five times faster to write at 12
            megapixels, and the photographs are usually JPEGs themselves).
        overlay_legend: draw a legend in the overlay's bottom-left corner (mostly outside the field of view): each
            lesion's colour and name, the threshold, the model and its origin (``inference.legend.draw_legend``).
        overlay_side_by_side: put the untouched photograph left of the painted one (an overlay twice as wide).
        image_key: the image key of the preprocessing.
        png_compress_level: zlib level of the PNGs (1: fast, 9: small).
        model_file: the checkpoint or exported model the network came from; its SHA-256 is part of the settings.
        provenance: JSON-able facts recorded with each run in the manifest (the bundles give their name and
            version, and under ``"model"`` the model's origin, :func:`~monai_exudate.inference.model_origin`; a
            model trained only on the synthetic set is announced as a demo model at the start and the end).
        output_settings: the resolved settings that change the outputs (the bundles: the package's settings and
            calibration, test-time flips, window overlap); with the model hash, threshold, lesions and overlay options
            the folder's identity, which a library upgrade leaves unchanged. None: the components are described
            (``records.describe_components``), which a new attribute of a MONAI class changes.
        max_image_pixels: photographs whose header declares more pixels are refused before decoding.
        input_root: ``summary.csv`` names images relative to this folder (the bundles give the folder or file they
            read); None: by the paths as given.
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
        threshold: float = 0.5,
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
    ) -> None:
        if not isinstance(preprocessing, Compose):
            raise ValueError(f"preprocessing must be a monai.transforms.Compose, got {type(preprocessing).__name__}")
        names = [str(n) for n in lesion_names]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"lesion_names must be non-empty and unique, got {names}")
        bad = [n for n in names if not n or any(not (c.isalnum() or c in "-_") for c in n)]
        if bad:
            raise ValueError(f"lesion_names are used in file names: letters, digits, '-' and '_' only, got {bad}")
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size} and {num_workers}")
        if num_writers is not None and num_writers < 1:
            raise ValueError(f"num_writers must be >= 1, got {num_writers}")
        if not 0.0 <= overlay_alpha <= 1.0:
            raise ValueError(f"overlay_alpha must be in [0, 1], got {overlay_alpha}")
        if max_image_pixels < 1:
            raise ValueError(f"max_image_pixels must be >= 1, got {max_image_pixels}")
        self.network = network
        self.preprocessing = preprocessing
        if not callable(postprocessing):
            kind = type(postprocessing).__name__
            raise ValueError(f"postprocessing must be callable on {{'pred': logits}}, not {kind}")
        self.postprocessing = postprocessing
        self.inferer = inferer or SimpleInferer()
        self.lesion_names = names
        self.output_dir = Path(output_dir)
        self.layout = OutputLayout(self.output_dir, names, formats, nifti, overlay_format)
        self.device = torch.device(device)
        self.threshold = float(threshold)
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
        self._model_columns = model_columns(self.threshold, self.provenance, self.model_file)
        self.outputs = ImageOutputs(
            self.layout, names, self.threshold, self.formats, overlay_alpha, overlay_format, overlay_legend,
            overlay_side_by_side, model_line(network, self.provenance), png_compress_level,
        )  # fmt: skip

    def settings(self) -> dict[str, Any]:
        """What decides the contents of the outputs, as recorded in the manifest and compared between runs."""
        model = None
        if self.model_file is not None:
            if not self.model_file.is_file():
                raise FileNotFoundError(f"model_file not found: {self.model_file}")
            model = {"sha256": file_sha256(self.model_file)}  # the path is in the run record: moving it is no change
        out = self.outputs
        identity: dict[str, Any] = {
            "model": model, "lesions": self.lesion_names, "threshold": self.threshold,
            "overlay_alpha": out.overlay_alpha, "overlay_legend": out.overlay_legend,
            "overlay_side_by_side": out.overlay_side_by_side, "legend_model": out.legend_model,
        }  # fmt: skip
        if self.output_settings is not None:
            identity["settings"] = self.output_settings
        else:
            identity.update(
                network=describe_components(self.network),
                preprocessing=describe_components(self.preprocessing),
                postprocessing=describe_components(self.postprocessing),
                inferer=describe_components(self.inferer),
            )
        return canonical(identity)

    def run(self, items: Sequence[Mapping[str, Any] | str | os.PathLike]) -> InferenceReport:
        """Segment ``items`` (dicts with ``image_key`` or paths) and return the report, which is also logged."""
        items = list(items)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        run_id = new_run_id()
        self._warn_if_demo_model()
        try:
            with folder_lock(self.output_dir, run_id):
                return self._run_holding_folder(items, run_id)
        finally:
            self._warn_if_demo_model()

    def _warn_if_demo_model(self) -> None:
        """A model whose provenance (``provenance["model"]``) says synthetic-only is announced as a demo model."""
        origin = self.provenance.get("model")
        if isinstance(origin, Mapping) and origin.get("synthetic"):
            logger.warning("%s", DEMO_MODEL_WARNING)

    def _run_holding_folder(self, items: list[Mapping[str, Any] | str | os.PathLike], run_id: str) -> InferenceReport:
        remove_partial_files(self.output_dir)
        table = SummaryTable(self.output_dir / SUMMARY_FILE)
        run_info = {
            "model_file": None if self.model_file is None else str(self.model_file),
            "formats": list(self.formats),
            "overlay_format": self.outputs.overlay_format,
            "nifti": self.nifti,
            "device": str(self.device),
            "amp": self.amp,
            "encoding": PNG_ENCODING,
            "provenance": json_round_trip(self.provenance),
        }
        manifest = RunManifest(self.output_dir, run_id, self.settings(), run_info)
        if manifest.check(table.images(), self.overwrite):
            for image in table.images():  # made with other settings: none of them is done
                table.remove(image)
            table.flush()
        manifest.begin(len(items))
        state = RunState(self.output_dir, table, self.strict, self.input_root)
        state.report.found, state.report.run_id = len(items), run_id
        completed = False
        try:
            pending = state.plan(items, self.layout.complete, self.lesion_names, self.image_key, self.overwrite)
            state.raise_if_fatal()
            if pending:
                self._stream(pending, state)
            state.raise_if_fatal()
            completed = True
        finally:
            state.table.flush()
            manifest.finish(self.output_dir / FAILURES_FILE, state.report, completed)
        logger.info("%s", state.report)
        return state.report

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
        prob = self._probabilities(logits)
        try:
            return self._map_back(prob, image, info)
        except Exception as err:  # one image's failure must not stop the others
            state.fail(str(info["path"]), f"could not map the prediction back ({_describe(err)})")
            return None

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """One image's probabilities ``(len(lesion_names), *spatial)`` from its logits, by ``postprocessing``."""
        return to_probabilities(self.postprocessing, logits, self.lesion_names)

    def _map_back(
        self, prob: torch.Tensor, image: MetaTensor, info: Mapping[str, Any]
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """8-bit levels (C, H, W) of one prediction on the photograph's grid, and the float maps when ``nifti``.

        Runs in the loop's thread, on the prediction's device: on a GPU the inversion is a few kernels and only
        8-bit levels cross to the host; on a CPU it uses torch's thread pool once, instead of every writer thread
        starting its own next to the network's.
        """
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
            state.table.update(name, [{**row, **facts} for row in rows])
            state.succeeded()
        except Exception as err:  # one image's failure must not stop the others
            state.fail(path, f"could not write outputs ({_describe(err)})")


def _describe(err: BaseException) -> str:
    cause = innermost_cause(err)
    return f"{type(cause).__name__}: {cause}"
