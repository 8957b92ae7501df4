"""MONAI ``CheckpointSaver`` whose files are written atomically: a temporary file, then a rename."""

from __future__ import annotations

from typing import Any

from monai.handlers import CheckpointSaver


class AtomicCheckpointSaver(CheckpointSaver):
    """``CheckpointSaver`` that never leaves a half-written checkpoint, even when the process is killed mid-save.

    MONAI's saver turns off ignite's atomic mode only to keep group/others read permission on the files; ignite's
    atomic path (temporary file in the same folder, ``os.replace``, then group/others read added) keeps that too, so
    it is switched back on. Every argument is ``CheckpointSaver``'s.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                checkpoint.save_handler._atomic = True
