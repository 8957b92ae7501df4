"""The state an exact resume needs besides weights: random states and the evaluator's best metric."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine
from monai.transforms import Randomizable


def randomizable_objects(root: Any) -> list[Randomizable]:
    """Every MONAI ``Randomizable`` reachable from ``root`` (a Compose, a list, a transform), in a fixed order."""
    found: list[Randomizable] = []
    seen: set[int] = set()

    def walk(obj: Any) -> None:
        if id(obj) in seen or isinstance(obj, (str, bytes, int, float, torch.Tensor, np.ndarray)):
            return
        seen.add(id(obj))
        if isinstance(obj, Randomizable):
            found.append(obj)
        if isinstance(obj, (list, tuple)):
            items = list(obj)
        elif isinstance(obj, dict):
            items = list(obj.values())
        elif hasattr(obj, "__dict__") and obj.__class__.__module__.split(".")[0] in ("monai", "monai_exudate"):
            items = [v for k, v in vars(obj).items() if not k.startswith("__") and k != "R"]
        else:
            return
        for item in items:
            walk(item)

    walk(root)
    return found


def _numpy_state(rs: Any) -> dict[str, Any]:
    name, keys, pos, has_gauss, gauss = rs.get_state()
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "gauss": float(gauss)}  # fmt: skip


def _set_numpy_state(rs: Any, state: dict[str, Any]) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    rs.set_state((state["name"], keys, state["pos"], state["has_gauss"], state["gauss"]))


class ResumeState:
    """``state_dict``/``load_state_dict`` of what an exact resume needs beyond model, optimizer, scheduler and trainer:
    the global random states (torch, CUDA, numpy, Python), each random transform's own ``R`` in ``transforms``, and
    the ``evaluator``'s best metric and its epoch.

    Put it in the epoch checkpoint's ``save_dict`` (and the resume ``load_dict``): saved after the epoch's validation,
    it lets the epochs after a resume draw the same augmentations and model.pt be replaced only by a better metric.
    Stored as tensors and plain numbers, so the checkpoint loads with ``torch.load(weights_only=True)``.
    Why our own: neither MONAI nor Ignite checkpoints the random states or an evaluator's best metric.
    """

    def __init__(self, transforms: Any = None, evaluator: Engine | None = None) -> None:
        self.transforms = randomizable_objects(transforms) if transforms is not None else []
        self.evaluator = evaluator

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state(np.random),
            "python": [list(random.getstate()[1]), random.getstate()[0]],
            "transforms": [_numpy_state(t.R) for t in self.transforms],
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        if self.evaluator is not None:
            state["best_metric"] = float(self.evaluator.state.best_metric)
            state["best_metric_epoch"] = int(self.evaluator.state.best_metric_epoch)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if len(state["transforms"]) != len(self.transforms):
            raise ValueError(
                f"the checkpoint holds random states of {len(state['transforms'])} transforms, the training "
                f"pipeline has {len(self.transforms)}: it was written by another configuration"
            )
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        _set_numpy_state(np.random, state["numpy"])
        keys, version = state["python"]
        random.setstate((version, tuple(keys), None))
        for transform, saved in zip(self.transforms, state["transforms"]):
            _set_numpy_state(transform.R, saved)
        if self.evaluator is not None and "best_metric" in state:
            self.evaluator.state.best_metric = state["best_metric"]
            self.evaluator.state.best_metric_epoch = state["best_metric_epoch"]
