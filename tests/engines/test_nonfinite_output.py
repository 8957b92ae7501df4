"""A NaN/inf network output at evaluation fails naming the image; a checkpoint with NaN/inf is refused at load."""

from __future__ import annotations

import pytest
import torch
from monai.data import DataLoader, MetaTensor
from monai.engines import SupervisedEvaluator
from torch import nn

from monai_exudate.engines import (
    FiniteCheckpointLoader,
    NonFiniteOutputError,
    NonFiniteOutputHandler,
    NonFiniteWeightsError,
)
from monai_exudate.metrics import PixelMetric


class BreakOn(nn.Module):
    """A 1x1 conv whose output is NaN (or inf) for inputs whose first pixel is marked with ``bad``."""

    def __init__(self, bad: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1)
        self.bad = bad

    def forward(self, x):
        out = torch.sigmoid(self.conv(x))
        marked = x[:, :1, :1, :1] == 7.0
        return torch.where(marked, out + self.bad, out)


def _data(marked: set[int]) -> list[dict]:
    items = []
    for i in range(3):
        image = torch.zeros(3, 8, 8)
        if i in marked:
            image[0, 0, 0] = 7.0
        items.append({"image": MetaTensor(image, meta={"filename_or_obj": f"/photos/img_{i}.jpg"}),
                      "label": torch.zeros(1, 8, 8)})  # fmt: skip
    return items


def _evaluator(net: nn.Module, data: list[dict], handlers: list) -> SupervisedEvaluator:
    return SupervisedEvaluator(
        device="cpu",
        val_data_loader=DataLoader(data, batch_size=1),
        network=net,
        key_val_metric={"aupr": PixelMetric(name="aupr", output_transform=lambda o: ([x["pred"] for x in o],
                                                                               [x["label"] for x in o]))},
        val_handlers=handlers,
    )  # fmt: skip


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_output_fails_naming_the_image(bad):
    evaluator = _evaluator(BreakOn(bad), _data({1}), [NonFiniteOutputHandler()])
    with pytest.raises(NonFiniteOutputError, match=r"img_1\.jpg"):
        evaluator.run()
    assert evaluator.state.iteration == 2  # the first image was fine; the second stopped the run


def test_finite_output_passes():
    evaluator = _evaluator(BreakOn(float("nan")), _data(set()), [NonFiniteOutputHandler()])
    evaluator.run()
    assert evaluator.state.iteration == 3


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_checkpoint_with_nonfinite_weights_is_refused_naming_the_file(bad, tmp_path):
    net = BreakOn(0.0)
    state = net.state_dict()
    state["conv.weight"][0, 0] = bad
    path = tmp_path / "model.pt"
    torch.save(state, path)
    target = BreakOn(0.0)
    before = target.conv.weight.detach().clone()
    loader = FiniteCheckpointLoader(load_path=str(path), load_dict={"model": target}, map_location="cpu")
    evaluator = _evaluator(target, _data(set()), [loader])
    with pytest.raises(NonFiniteWeightsError, match=r"model\.pt.*conv\.weight"):
        evaluator.run()
    assert torch.equal(target.conv.weight.detach(), before)  # nothing loaded


def test_finite_checkpoint_loads_and_missing_one_is_named(tmp_path):
    source, target = BreakOn(0.0), BreakOn(0.0)
    torch.save(source.state_dict(), tmp_path / "model.pt")
    _evaluator(target, _data(set()), [FiniteCheckpointLoader(load_path=str(tmp_path / "model.pt"),
                                                             load_dict={"model": target})]).run()  # fmt: skip
    assert torch.equal(target.conv.weight, source.conv.weight)
    missing = FiniteCheckpointLoader(load_path=str(tmp_path / "none.pt"), load_dict={"model": target})
    with pytest.raises(FileNotFoundError, match=r"none\.pt"):
        _evaluator(target, _data(set()), [missing]).run()
