"""Ignite handler that resumes training from the newest intact checkpoint in a folder, when there is one."""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from monai_exudate.engines.finite import NonFiniteWeightsError, describe, nonfinite_entries

logger = logging.getLogger(__name__)

_EPOCH = re.compile(r"epoch=(\d+)")


def epoch_checkpoints(ckpt_dir: str | os.PathLike, prefix: str = "checkpoint") -> list[Path]:
    """The ``<prefix>*epoch=N.pt`` files of ``ckpt_dir`` (temporary files ignored), newest epoch first."""
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob(f"{prefix}*.pt"):
        match = _EPOCH.search(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found, reverse=True)]


def latest_checkpoint(ckpt_dir: str | os.PathLike, prefix: str = "checkpoint") -> Path | None:
    """The ``<prefix>*epoch=N.pt`` file with the largest N in ``ckpt_dir`` (temporary files ignored), or None."""
    found = epoch_checkpoints(ckpt_dir, prefix)
    return found[0] if found else None


def read_checkpoint(path: Path, required: Any = ()) -> dict:
    """Load a checkpoint for resuming; raise ``ValueError`` naming the file when it is unreadable, lacks one of the
    ``required`` entries, or holds NaN/inf (``NonFiniteWeightsError``)."""
    try:
        state = torch.load(path, map_location=torch.device("cpu"), weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise ValueError(f"checkpoint {path} is unreadable (truncated or not a torch file): {err}") from err
    if not isinstance(state, Mapping):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, not a dict of states")
    missing = [k for k in required if k not in state]
    if missing:
        raise ValueError(f"checkpoint {path} lacks {missing}")
    bad = nonfinite_entries(state)
    if bad:
        raise NonFiniteWeightsError(f"checkpoint {path} holds non-finite values in {describe(bad)}; refused")
    return dict(state)


class ResumeHandler:
    """At ``STARTED``, load the newest intact epoch checkpoint of ``ckpt_dir`` into ``load_dict`` (model, optimizer,
    lr scheduler, grad scaler, trainer state, ``ResumeState``) so the run continues where it stopped; nothing happens
    when ``enabled`` is false or no checkpoint exists yet.

    A newer checkpoint that is truncated, unreadable, incomplete or holds NaN/inf is skipped with a warning naming it,
    and the next older one is tried; when none is usable the run stops, naming every file tried (nothing is
    deleted). Entries of ``load_dict`` that are ``None`` (e.g. no grad scaler without AMP) are left out. Why not
    MONAI's ``CheckpointLoader``: it loads one given file and cannot fall back or refuse non-finite weights.
    """

    def __init__(
        self,
        ckpt_dir: str | os.PathLike,
        load_dict: Mapping[str, Any],
        enabled: bool = True,
        prefix: str = "checkpoint",
    ) -> None:
        self.ckpt_dir = Path(ckpt_dir)
        self.load_dict = {k: v for k, v in load_dict.items() if v is not None}
        self.enabled = enabled
        self.prefix = prefix
        self.loaded: Path | None = None
        self.skipped: list[Path] = []

    def attach(self, engine: Engine) -> None:
        """Register the handler on a trainer."""
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        if not self.enabled:
            return
        candidates = epoch_checkpoints(self.ckpt_dir, self.prefix)
        reasons = []
        for path in candidates:
            try:
                state = read_checkpoint(path, self.load_dict)
            except (ValueError, NonFiniteWeightsError) as err:
                reasons.append(str(err))
            else:
                self._load(engine, path, state)
                if reasons:
                    logger.warning("resumed from %s, the newest intact checkpoint, after skipping: %s", path,
                                   "; ".join(reasons))  # fmt: skip
                return
            logger.warning("%s; trying an older checkpoint", reasons[-1])
            self.skipped.append(path)
        if reasons:
            raise RuntimeError(
                f"cannot resume from checkpoint in {self.ckpt_dir}: no intact checkpoint ({'; '.join(reasons)}). "
                "Move the bad files away, or set resume to false to start over."
            )

    def _load(self, engine: Engine, path: Path, state: dict) -> None:
        prior_max_epochs = engine.state.max_epochs
        try:
            Checkpoint.load_objects(to_load=self.load_dict, checkpoint=state, strict=True)
        except (RuntimeError, KeyError, ValueError) as err:
            raise RuntimeError(f"cannot resume from checkpoint {path}: {err}") from err
        if prior_max_epochs is not None and engine.state.epoch > prior_max_epochs:
            raise ValueError(
                f"checkpoint {path} is at epoch {engine.state.epoch}, beyond max_epochs={prior_max_epochs}; "
                "raise max_epochs to train further"
            )
        engine.state.max_epochs = prior_max_epochs
        self.loaded = path
        logger.info("resumed from %s at epoch %d", path, engine.state.epoch)
