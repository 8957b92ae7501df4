"""Branch fusion rules of the dual-branch networks: probabilities (the paper) and logits (the authors' code)."""

from __future__ import annotations

import pytest
import torch

from monai_exudate.networks import BRANCH_FUSIONS, build_exudate_network, fuse_branches


def test_rules_differ_where_the_branches_disagree_with_unequal_confidence():
    large, small = torch.tensor([[[[-8.0, 2.0, 0.0]]]]), torch.tensor([[[[6.0, 2.0, 0.0]]]])
    probabilities = fuse_branches(large, small, "probabilities")
    logits = fuse_branches(large, small, "logits")
    # one branch near 0, the other near 1: the probability mean sits on 0.5, the logit mean follows the surer one
    assert probabilities[0, 0, 0, 0] == pytest.approx(0.5, abs=2e-3)
    assert logits[0, 0, 0, 0] == pytest.approx(torch.sigmoid(torch.tensor(-1.0)).item())
    # where the branches agree both rules give the same map
    assert torch.allclose(probabilities[..., 1:], logits[..., 1:])


def test_unknown_rule_is_refused_by_name():
    with pytest.raises(ValueError, match="fusion must be one of"):
        fuse_branches(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), "max")
    with pytest.raises(ValueError, match="'mean'"):
        build_exudate_network("unet", dual=True, width=2, dropout=0.0, fusion="mean")


@pytest.mark.parametrize("arch", ["unet", "pspnet"])
@pytest.mark.parametrize("fusion", BRANCH_FUSIONS)
def test_dual_networks_apply_their_rule_in_eval_mode(arch, fusion):
    torch.manual_seed(0)
    kwargs = {"layers": (1, 1, 1, 1), "width": 8} if arch == "pspnet" else {"width": 2, "dropout": 0.0}
    net = build_exudate_network(arch, dual=True, fusion=fusion, **kwargs).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        branches = net.forward_branches(x)
        expected = fuse_branches(branches["large"]["out"], branches["small"]["out"], fusion)
        assert torch.allclose(net(x), expected)
    assert net.fusion == fusion
