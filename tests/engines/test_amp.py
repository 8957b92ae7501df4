"""CUDA AMP path of the dual-branch trainer (fp16 with a grad scaler); skipped where CUDA is absent."""

from __future__ import annotations

import pytest
import torch

from monai_exudate.engines import AlphaScheduleHandler, DualBranchTrainer
from monai_exudate.losses import ParabolicDecay, build_exudate_loss
from monai_exudate.networks import build_exudate_network

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA AMP needs a GPU")


def _loader(seed: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(3):
        label = (torch.rand(2, 1, 64, 48, generator=g) > 0.9).float()
        image = torch.randn(2, 3, 64, 48, generator=g) + 2 * label
        batches.append({"image": image, "label": label})
    return batches


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dual_branch_amp_step_updates_weights(dtype):
    device = torch.device("cuda:0")
    net = build_exudate_network("pspnet", dual=True, width=8, layers=(1, 1, 1, 1)).to(device)
    loss = build_exudate_loss("dsm", dual=True)
    before = [p.detach().clone() for p in net.parameters()]
    trainer = DualBranchTrainer(
        device=device,
        max_epochs=2,
        train_data_loader=_loader(0),
        small_branch_loader=_loader(1),
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9),
        loss_function=loss,
        amp=True,
        amp_kwargs={"dtype": dtype},
    )
    AlphaScheduleHandler(loss, ParabolicDecay(2)).attach(trainer)
    trainer.run()
    assert trainer.scaler is not None
    assert torch.isfinite(trainer.state.output["loss"]).all()
    assert any(not torch.equal(b, p.detach()) for b, p in zip(before, net.parameters()))
    net.eval()
    with torch.no_grad(), torch.autocast("cuda", dtype=dtype):
        logits = net(torch.randn(1, 3, 64, 48, device=device))
    assert logits.shape == (1, 2, 64, 48) and torch.isfinite(logits).all()  # both branches' logits
