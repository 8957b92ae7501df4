"""The HRDecoder trainer's step pieces: batch preparation, the missing-mask loss call, the warm-up poly LR factor."""

from __future__ import annotations

import pytest
import torch

from monai_exudate.engines.hrdecoder_steps import (
    MaskPresencePrepareBatch,
    MissingMaskLoss,
    WarmupPolyFactor,
    step_loss,
    warmup_poly_scheduler,
)


def test_prepare_batch_returns_the_image_and_the_label_with_its_presence_flags():
    batch = {"image": torch.rand(2, 3, 8, 8), "label": torch.ones(2, 4, 8, 8), "label_present": torch.tensor([[1, 0]])}
    image, (label, present) = MaskPresencePrepareBatch()(batch, device=torch.device("cpu"))
    assert torch.equal(image, batch["image"]) and torch.equal(label, batch["label"])
    assert torch.equal(present, batch["label_present"])


@pytest.mark.parametrize(("rule", "passes_presence"), [("ignore", True), ("negative", False)])
def test_missing_mask_rule_decides_what_the_loss_sees(rule, passes_presence):
    seen = {}

    def loss(pred, label, present):
        seen["present"] = present
        return pred.sum()

    present = torch.tensor([[1.0, 0.0]])
    MissingMaskLoss(loss, rule)(torch.ones(1), (torch.zeros(1), present))
    assert (seen["present"] is present) is passes_presence and (seen["present"] is None) is not passes_presence
    with pytest.raises(ValueError, match="missing_masks must be one of"):
        MissingMaskLoss(loss, "drop")


def test_warmup_poly_factor_and_its_state_in_the_scheduler_checkpoint():
    factor = WarmupPolyFactor(total_iters=100, warmup_iters=10, warmup_ratio=1e-6, power=1.0, min_ratio=0.1)
    assert factor(0) == pytest.approx(1e-6)
    assert factor(10) == pytest.approx(0.9 * 0.9 + 0.1)
    assert factor(100) == pytest.approx(0.1) and factor(150) == pytest.approx(0.1)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.01)
    scheduler = warmup_poly_scheduler(optimizer, 100, 10, 1e-6, power=1.0, min_ratio=0.1)
    assert [scheduler.lr_lambdas[0](i) for i in (0, 10, 100)] == [factor(i) for i in (0, 10, 100)]
    state = scheduler.state_dict()
    assert state["lr_lambdas"][0]["total_iters"] == 100 and state["lr_lambdas"][0]["min_ratio"] == 0.1


def test_step_loss_is_a_number():
    assert step_loss({"loss": torch.tensor(0.25), "pred": None}) == 0.25
