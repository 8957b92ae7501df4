"""ForwardWithAuxInferer: the trainers' call of ``forward_with_aux``, directly and through DistributedDataParallel."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from monai_exudate.engines import ForwardWithAuxInferer, forward_with_aux
from monai_exudate.networks import build_exudate_network


def _dual_pspnet() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_exudate_network("pspnet", dual=True, width=4, layers=(1, 1, 1, 1), dropout=0.0)


def test_inferer_gives_the_loss_the_auxiliary_outputs():
    net = _dual_pspnet().train()
    x, x_small = torch.randn(2, 3, 32, 32), torch.randn(2, 3, 24, 24)
    outputs = ForwardWithAuxInferer()(x, net, x_small)
    assert outputs["large"]["aux"].shape == (2, 1, 32, 32) and outputs["small"]["out"].shape == (2, 1, 24, 24)
    assert isinstance(net(x), torch.Tensor)  # forward itself is untouched: the logits alone


def test_a_network_without_forward_with_aux_is_refused():
    with pytest.raises(TypeError, match="Conv2d has no forward_with_aux"):
        forward_with_aux(torch.nn.Conv2d(3, 1, 1), torch.randn(1, 3, 4, 4))


@pytest.fixture
def process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_ddp_runs_forward_with_aux_inside_its_own_forward(process_group):
    net = _dual_pspnet().train()
    ddp = DistributedDataParallel(net, find_unused_parameters=True)
    wrapper_calls = []
    ddp.register_forward_pre_hook(lambda module, inputs: wrapper_calls.append(len(inputs)))
    x = torch.randn(2, 3, 32, 32)
    for _ in range(2):  # a second step fails in DDP when the first one's reduction never started
        outputs = forward_with_aux(ddp, x, x.flip(-1))
        sum(o.mean() for branch in outputs.values() for o in branch.values()).backward()
    assert wrapper_calls == [2, 2]  # each call went through the wrapper, with both batches
    assert set(outputs["large"]) == {"out", "aux"}
    assert all(p.grad is not None for p in net.parameters())
    assert "forward" not in net.__dict__  # the redirection is undone: forward gives the logits again
    assert isinstance(ddp(x), torch.Tensor)
