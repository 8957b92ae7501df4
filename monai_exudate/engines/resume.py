"""Ignite handler that resumes training from the newest checkpoint in a folder, when there is one."""

from __future__ import annotations

import logging
import os
import pickle
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader

logger = logging.getLogger(__name__)

_EPOCH = re.compile(r"epoch=(\d+)")


def latest_checkpoint(ckpt_dir: str | os.PathLike, prefix: str = "checkpoint") -> Path | None:
    """The ``<prefix>*epoch=N.pt`` file with the largest N in ``ckpt_dir`` (temporary files ignored), or None."""
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return None
    found = []
    for path in folder.glob(f"{prefix}*.pt"):
        match = _EPOCH.search(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


class ResumeHandler:
    """At ``STARTED``, load the newest epoch checkpoint of ``ckpt_dir`` into ``load_dict`` (model, optimizer, lr
    scheduler, grad scaler, trainer state) so the run continues where it stopped; nothing happens when ``enabled``
    is false or no checkpoint exists yet.

    Entries of ``load_dict`` that are ``None`` (e.g. no grad scaler without AMP) are left out.
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

    def attach(self, engine: Engine) -> None:
        """Register the handler on a trainer."""
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        if not self.enabled:
            return
        path = latest_checkpoint(self.ckpt_dir, self.prefix)
        if path is None:
            return
        try:
            CheckpointLoader(load_path=str(path), load_dict=self.load_dict, map_location=torch.device("cpu"))(engine)
        except (RuntimeError, KeyError, EOFError, pickle.UnpicklingError) as err:  # unpickling: not a torch file
            raise RuntimeError(f"cannot resume from checkpoint {path}: {err}") from err
        self.loaded = path
        logger.info("resumed from %s at epoch %d", path, engine.state.epoch)
