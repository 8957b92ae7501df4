"""AlphaScheduleHandler: alpha follows the epoch schedule in the loss and in the engine state."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Events
from torch.utils.data import DataLoader

from monai_exudate.engines import AlphaScheduleHandler, DualBranchTrainer
from monai_exudate.losses import DSMLoss, ParabolicDecay
from monai_exudate.losses.factory import build_exudate_loss
from monai_exudate.networks import build_exudate_network

MAX_EPOCHS = 4


def items(num: int = 2) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        {"image": torch.randn(3, 32, 32, generator=g), "label": (torch.rand(1, 32, 32, generator=g) < 0.1).float()}
        for _ in range(num)
    ]


def trainer_for(dual: bool, loss: torch.nn.Module, handler: AlphaScheduleHandler) -> DualBranchTrainer:
    torch.manual_seed(0)
    net = build_exudate_network("pspnet", dual=dual, width=8, layers=(1, 1, 1, 1))
    data = items()
    return DualBranchTrainer(
        device="cpu",
        max_epochs=MAX_EPOCHS,
        train_data_loader=DataLoader(data, batch_size=2, shuffle=True),
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.01),
        loss_function=loss,
        small_branch_loader=DataLoader(data, batch_size=2, shuffle=True) if dual else None,
        train_handlers=[handler],
    )


def test_alpha_follows_parabolic_decay():
    loss = build_exudate_loss("dsm", dual=True)
    dsm = loss.loss
    assert isinstance(dsm, DSMLoss)
    schedule = ParabolicDecay(MAX_EPOCHS)
    trainer = trainer_for(True, loss, AlphaScheduleHandler(loss, schedule))
    seen = {}

    def record(engine):  # during the epoch's iterations, after the handler has run
        seen[engine.state.epoch] = (engine.state.alpha, dsm.alpha)

    trainer.add_event_handler(Events.ITERATION_COMPLETED, record)
    trainer.run()

    assert sorted(seen) == list(range(1, MAX_EPOCHS + 1))
    for epoch, expected in ((1, 1.0), (MAX_EPOCHS // 2, 1.0 - 0.25**2), (MAX_EPOCHS, 1.0 - 0.75**2)):
        assert schedule(epoch) == pytest.approx(expected)
        assert seen[epoch] == (pytest.approx(expected), pytest.approx(expected))
    alphas = [seen[e][0] for e in sorted(seen)]
    assert alphas == sorted(alphas, reverse=True)  # large exudates first, then small


def test_not_required_with_single_branch_loss_is_a_noop():
    loss = build_exudate_loss("dice", dual=False)
    handler = AlphaScheduleHandler(loss, ParabolicDecay(MAX_EPOCHS), required=False)
    assert handler.owner is None
    trainer = trainer_for(False, loss, handler)
    trainer.run()
    assert trainer.state.epoch == MAX_EPOCHS
    assert not hasattr(trainer.state, "alpha")
    assert not any(hasattr(m, "alpha") for m in loss.modules())


def test_required_with_single_branch_loss_raises():
    loss = build_exudate_loss("cbce", dual=False)
    with pytest.raises(ValueError, match="alpha"):
        AlphaScheduleHandler(loss, ParabolicDecay(MAX_EPOCHS), required=True)
