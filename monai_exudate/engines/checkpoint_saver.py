"""MONAI ``CheckpointSaver`` with atomic writes, no non-finite checkpoint, and retention that survives a restart."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint
from ignite.handlers.checkpoint import BaseSaveHandler
from monai.handlers import CheckpointSaver

from monai_exudate.engines.finite import NonFiniteWeightsError, describe, nonfinite_entries

logger = logging.getLogger(__name__)

_TEMPORARY = re.compile(r"tmp[a-z0-9_]{8}")  # tempfile.NamedTemporaryFile's names, as ignite's DiskSaver makes them


class _GuardedSaver(BaseSaveHandler):
    """Refuse a checkpoint holding NaN/inf; delete superseded files only after the new one is safely written."""

    def __init__(self, inner: BaseSaveHandler, folder: str) -> None:
        self.inner = inner
        self.folder = folder
        self.pending: list[str] = []

    def __call__(self, checkpoint: Any, filename: str, metadata: dict | None = None) -> None:
        target = getattr(self.inner, "filename", None) or filename
        bad = nonfinite_entries(checkpoint)
        if bad:
            self.pending.clear()
            raise NonFiniteWeightsError(
                f"refusing to write checkpoint {Path(self.folder) / target}: non-finite values in {describe(bad)}; "
                "the last finite checkpoint is kept"
            )
        self.inner(checkpoint, filename, metadata)
        for old in self.pending:
            if (getattr(self.inner, "filename", None) or old) != target:  # a fixed name is overwritten, not removed
                self.inner.remove(old)
        self.pending.clear()

    def remove(self, filename: str) -> None:
        self.pending.append(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """``CheckpointSaver`` that never leaves a half-written or a non-finite checkpoint, and whose bookkeeping holds
    across a resumed run.

    - Atomic: MONAI turns off ignite's atomic mode only to keep group/others read permission; ignite's atomic path
      (temporary file in the same folder, ``os.replace``, then group/others read added) keeps that too.
    - A checkpoint with a NaN or inf anywhere (weights, optimizer state) is refused with ``NonFiniteWeightsError``
      naming the file, so the run stops with the last finite checkpoint kept.
    - A file being replaced is deleted only after its successor is written, and a fixed file name (``model.pt``)
      is overwritten in place, so a kill while saving never leaves the folder without it.
    - Epoch-level interval files: at ``STARTED`` (after ``ResumeHandler``, so attach this one later) the files of
      earlier epochs already in ``save_dir`` become this saver's retained list, so ``n_saved`` still holds after a
      restart (extra ones beyond ``n_saved`` are deleted, as an uninterrupted run would have), and temporary files
      left by a save that was killed are removed.
    - Key-metric saving: when its list is empty at ``STARTED`` of the evaluator but the evaluator already has a best
      metric (restored by ``ResumeState`` on resume) and the file exists, that best is the score to beat, so the first
      validation after a resume replaces the file only when it is better.

    Every argument is ``CheckpointSaver``'s.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_sign = bool(kwargs.get("key_metric_negative_sign", False))
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler._atomic = True
                checkpoint.save_handler = _GuardedSaver(checkpoint.save_handler, self.save_dir)

    def attach(self, engine: Engine) -> None:
        """Register the saver's events, then its restart bookkeeping at ``STARTED``."""
        super().attach(engine)
        if self._interval_checkpoint is not None and self.epoch_level:
            engine.add_event_handler(Events.STARTED, self._adopt_interval_files)
        if self._key_metric_checkpoint is not None:
            engine.add_event_handler(Events.STARTED, self._adopt_best_metric)

    def _adopt_interval_files(self, engine: Engine) -> None:
        for leftover in Path(self.save_dir).glob("tmp*"):  # ignite's temporary files of a save that was killed
            if _TEMPORARY.fullmatch(leftover.name) and leftover.is_file():
                logger.info("removing %s, left by a save that was interrupted", leftover)
                leftover.unlink(missing_ok=True)
        checkpoint = self._interval_checkpoint
        if checkpoint._saved or not engine.state.epoch:
            return
        prefix = f"{checkpoint.filename_prefix}_" if checkpoint.filename_prefix else ""
        name = next(iter(self.save_dict)) if len(self.save_dict) == 1 else "checkpoint"  # ignite's naming
        pattern = re.compile(re.escape(f"{prefix}{name}_epoch=") + r"(\d+)\.pt")
        found = sorted(
            (int(m.group(1)), p.name) for p in Path(self.save_dir).glob("*.pt") if (m := pattern.fullmatch(p.name))
        )
        found = [(epoch, name) for epoch, name in found if epoch <= engine.state.epoch]
        limit = checkpoint.n_saved
        if limit is not None and len(found) > limit:
            for _, name in found[:-limit]:
                logger.info("removing %s: more than n_saved=%d epoch checkpoints", name, limit)
                (Path(self.save_dir) / name).unlink(missing_ok=True)
            found = found[-limit:]
        checkpoint._saved = [Checkpoint.Item(epoch, name) for epoch, name in found]

    def _adopt_best_metric(self, engine: Engine) -> None:
        checkpoint = self._key_metric_checkpoint
        name = getattr(checkpoint.save_handler.inner, "filename", None)
        best_epoch = getattr(engine.state, "best_metric_epoch", -1)
        if checkpoint._saved or name is None or best_epoch is None or best_epoch < 1:
            return
        if (Path(self.save_dir) / name).is_file():
            best = engine.state.best_metric
            checkpoint._saved = [Checkpoint.Item((-1 if self._negative_sign else 1) * best, name)]
