"""Networks return logits; the bundles' post-processing reproduces the probabilities the networks gave up to 0.4.0.

``data/eval_probabilities_v0_4.json`` holds summaries (mean, std, nine evenly spaced values) of the eval-mode
probabilities of seeded tiny networks, recorded when the networks still applied the sigmoid and the branch fusion
themselves (bundle version 0.4.0). Checkpoints hold the same parameters, so trained models keep their predictions.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.transforms import Activationsd, Compose

from monai_exudate.inference import FuseBranchLogitsd
from monai_exudate.networks import build_exudate_network, build_hrdecoder

REFERENCE = json.loads((Path(__file__).parent / "data" / "eval_probabilities_v0_4.json").read_text())
HRDECODER_TINY = {"width": 4, "num_blocks": 1, "num_modules": 1, "stage1_channels": 8, "stem_channels": 8}


@pytest.fixture(autouse=True)
def _single_thread():
    """The reference was recorded single-threaded; the thread count is restored for the other tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _summary(prob: torch.Tensor) -> dict:
    flat = prob.double().flatten()
    index = torch.linspace(0, flat.numel() - 1, 9).long()
    return {"mean": float(flat.mean()), "std": float(flat.std()), "values": [float(v) for v in flat[index]]}


def _probabilities(network: torch.nn.Module, x: torch.Tensor, chain: Compose) -> torch.Tensor:
    with torch.no_grad():
        logits = network.eval()(x)
    return torch.stack([chain({"pred": item})["pred"] for item in logits])


CASES = [
    (arch, dual, fusion)
    for arch in ("pspnet", "deeplabv3", "hed", "unet")
    for dual in (False, True)
    for fusion in (("logits", "probabilities") if dual else ("logits",))
]


@pytest.mark.parametrize(("arch", "dual", "fusion"), CASES)
def test_exudate_networks_keep_their_seeded_probabilities(arch, dual, fusion):
    torch.manual_seed(0)
    layers = {} if arch == "unet" else {"layers": (1, 1, 1, 1)}
    network = build_exudate_network(arch, dual=dual, width=4 if arch in ("hed", "unet") else 8, **layers)
    torch.manual_seed(1)
    x = torch.randn(2, 3, 48, 40)
    chain = Compose(
        [FuseBranchLogitsd("pred", num_branches=2 if dual else 1, fusion=fusion), Activationsd("pred", sigmoid=True)]
    )
    got = _summary(_probabilities(network, x, chain))
    expected = REFERENCE[f"{arch}_{'dual' if dual else 'single'}_{fusion}"]
    assert got["mean"] == pytest.approx(expected["mean"], abs=1e-6)
    assert got["std"] == pytest.approx(expected["std"], abs=1e-6)
    assert got["values"] == pytest.approx(expected["values"], abs=1e-6)


@pytest.mark.parametrize("lr_only", [False, True])
def test_hrdecoder_keeps_its_seeded_probabilities(lr_only):
    torch.manual_seed(0)
    network = build_hrdecoder(hr_scale=32, head_channels=8, lr_only=lr_only, **HRDECODER_TINY)
    torch.manual_seed(1)
    x = torch.randn(1, 3, 64, 64)
    got = _summary(_probabilities(network, x, Compose([Activationsd("pred", sigmoid=True)])))
    expected = REFERENCE[f"hrdecoder_lr_only_{lr_only}"]
    assert got["values"] == pytest.approx(expected["values"], abs=1e-6)
    assert got["mean"] == pytest.approx(expected["mean"], abs=1e-6)
