"""Post-processing of network logits: branch fusion and the sigmoid, as the bundles wire them."""

from __future__ import annotations

import pytest
import torch
from monai.transforms import Activationsd, Compose

from monai_exudate.inference import FuseBranchLogitsd
from monai_exudate.networks import fuse_branch_logits


@pytest.mark.parametrize("fusion", ["logits", "probabilities"])
def test_dual_output_becomes_the_fused_probability(fusion):
    torch.manual_seed(0)
    logits = 4 * torch.randn(2, 5, 7)  # large branch channel 0, small branch channel 1
    chain = Compose([FuseBranchLogitsd("pred", num_branches=2, fusion=fusion), Activationsd("pred", sigmoid=True)])
    prob = chain({"pred": logits})["pred"]
    assert prob.shape == (1, 5, 7)
    torch.testing.assert_close(prob, torch.sigmoid(fuse_branch_logits(logits[:1], logits[1:], fusion)))
    if fusion == "probabilities":
        torch.testing.assert_close(prob, torch.sigmoid(logits).mean(0, keepdim=True), atol=1e-6, rtol=0)


def test_single_branch_output_passes_unchanged():
    logits = torch.randn(4, 3, 3)
    out = FuseBranchLogitsd("pred", num_branches=1)({"pred": logits, "other": 1})
    assert out["pred"] is logits and out["other"] == 1


def test_bad_settings_and_inputs_are_named():
    with pytest.raises(ValueError, match="num_branches must be 1"):
        FuseBranchLogitsd("pred", num_branches=3)
    with pytest.raises(ValueError, match="fusion must be one of"):
        FuseBranchLogitsd("pred", num_branches=2, fusion="max")
    with pytest.raises(ValueError, match="3 channels cannot hold 2 branches"):
        FuseBranchLogitsd("pred", num_branches=2)({"pred": torch.zeros(3, 4, 4)})
    with pytest.raises(ValueError, match="'pred' must be channel-first logits"):
        FuseBranchLogitsd("pred", num_branches=2)({"pred": [0.5]})
