"""Branch fusion rules of the dual-branch networks: probabilities (the paper) and logits (the authors' code)."""

from __future__ import annotations

import pytest
import torch

from monai_exudate.networks import BRANCH_FUSIONS, build_exudate_network, fuse_branch_logits, split_branches


def test_rules_differ_where_the_branches_disagree_with_unequal_confidence():
    large, small = torch.tensor([[[[-8.0, 2.0, 0.0]]]]), torch.tensor([[[[6.0, 2.0, 0.0]]]])
    probabilities = torch.sigmoid(fuse_branch_logits(large, small, "probabilities"))
    logits = torch.sigmoid(fuse_branch_logits(large, small, "logits"))
    # one branch near 0, the other near 1: the probability mean sits on 0.5, the logit mean follows the surer one
    assert probabilities[0, 0, 0, 0] == pytest.approx(0.5, abs=2e-3)
    assert logits[0, 0, 0, 0] == pytest.approx(torch.sigmoid(torch.tensor(-1.0)).item())
    # where the branches agree both rules give the same map
    assert torch.allclose(probabilities[..., 1:], logits[..., 1:])


def test_probability_rule_is_the_mean_of_the_sigmoids_without_overflow():
    torch.manual_seed(0)
    large, small = 20 * torch.randn(4096), 20 * torch.randn(4096)
    large[:2], small[:2] = torch.tensor([200.0, -200.0]), torch.tensor([200.0, -200.0])
    fused = fuse_branch_logits(large, small, "probabilities")
    assert torch.isfinite(fused).all()
    expected = 0.5 * (torch.sigmoid(large) + torch.sigmoid(small))
    torch.testing.assert_close(torch.sigmoid(fused), expected, atol=1e-6, rtol=0)


def test_unknown_rule_is_refused_by_name():
    with pytest.raises(ValueError, match="fusion must be one of"):
        fuse_branch_logits(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), "max")


def test_split_branches_refuses_uneven_channels():
    large, small = split_branches(torch.arange(6.0).reshape(6, 1), 2)
    assert large.flatten().tolist() == [0, 1, 2] and small.flatten().tolist() == [3, 4, 5]
    with pytest.raises(ValueError, match="5 channels cannot hold 2 branches"):
        split_branches(torch.zeros(5, 2), 2)


@pytest.mark.parametrize("arch", ["unet", "pspnet"])
def test_dual_networks_return_both_branches_logits_in_eval_mode(arch):
    torch.manual_seed(0)
    kwargs = {"layers": (1, 1, 1, 1), "width": 8} if arch == "pspnet" else {"width": 2, "dropout": 0.0}
    net = build_exudate_network(arch, dual=True, out_channels=2, **kwargs).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        branches = net.forward_with_aux(x)
        expected = torch.cat([branches["large"]["out"], branches["small"]["out"]], dim=1)
        torch.testing.assert_close(net(x), expected)
    assert expected.shape == (1, 4, 32, 32)


def test_fusion_choices_are_the_papers_and_the_authors_code():
    assert set(BRANCH_FUSIONS) == {"probabilities", "logits"}
