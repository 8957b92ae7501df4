"""ResumeState: random states (global and per transform) and the evaluator's best metric survive a checkpoint."""

from __future__ import annotations

import random

import numpy as np
import torch
from ignite.engine import Engine
from monai.transforms import Compose, RandFlipd, RandZoomd

from monai_exudate.data.transforms import RandFlipRotate90d
from monai_exudate.engines import ResumeState
from monai_exudate.engines.resume_state import randomizable_objects


def _pipeline() -> Compose:
    return Compose([RandZoomd(keys="image", prob=1.0), RandFlipd(keys="image", prob=0.5),
                    RandFlipRotate90d(keys="image", prob=1.0)])  # fmt: skip


def _draws(pipeline: Compose) -> list:
    found = randomizable_objects(pipeline)
    return [torch.rand(3).tolist(), np.random.rand(3).tolist(), [random.random() for _ in range(3)],
            [obj.R.rand() for obj in found]]  # fmt: skip


def test_every_random_transform_is_found_nested_ones_too():
    pipeline = _pipeline()
    found = randomizable_objects(pipeline)
    zoom = pipeline.transforms[0]
    assert zoom in found and zoom.rand_zoom in found  # RandZoomd draws through its own RandZoom
    assert pipeline.transforms[1] in found and pipeline.transforms[2] in found


def test_random_states_round_trip_through_a_saved_checkpoint(tmp_path):
    pipeline = _pipeline()
    pipeline.set_random_state(seed=3)
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    state = ResumeState(transforms=pipeline)
    torch.save(state.state_dict(), tmp_path / "state.pt")
    expected = _draws(pipeline)

    other = _pipeline()  # a fresh process: other seeds everywhere
    other.set_random_state(seed=99)
    torch.manual_seed(5), np.random.seed(5), random.seed(5)
    ResumeState(transforms=other).load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    assert _draws(other) == expected


def test_best_metric_of_the_evaluator_is_restored():
    evaluator = Engine(lambda e, b: None)
    evaluator.state.best_metric, evaluator.state.best_metric_epoch = 0.625, 3
    saved = ResumeState(evaluator=evaluator).state_dict()
    fresh = Engine(lambda e, b: None)
    fresh.state.best_metric, fresh.state.best_metric_epoch = -1, -1
    ResumeState(evaluator=fresh).load_state_dict(saved)
    assert (fresh.state.best_metric, fresh.state.best_metric_epoch) == (0.625, 3)
