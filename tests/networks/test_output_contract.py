"""The networks' output contract: ``forward`` returns the logits tensor in training and evaluation alike,
``forward_with_aux`` the dict with the auxiliary outputs; parameter names, and the shipped models' logits, stay put.

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

from monai_exudate.inference import FuseBranchLogitsd, load_network_weights
from monai_exudate.networks import SegmentationModel, build_exudate_network, build_hrdecoder

REPO = Path(__file__).resolve().parents[2]
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


def _network(name: str) -> torch.nn.Module:
    """A tiny network of each kind: ``<arch>_<single|dual>``, ``pspnet_dual_authors`` (one layer4 block and the
    auxiliary head shared, the authors' layout) or ``hrdecoder``."""
    torch.manual_seed(0)
    if name == "hrdecoder":
        return build_hrdecoder(hr_scale=32, head_channels=8, num_crops=2, **HRDECODER_TINY)
    arch, kind = name.split("_", 1)
    layers = {} if arch in ("hed", "unet") else {"layers": (1, 1, 1, 2)}
    extra = {"branch_layer4_blocks": 1, "shared_aux_head": True} if kind == "dual_authors" else {}
    return build_exudate_network(arch, dual=kind != "single", width=4, **layers, **extra)


# each network's auxiliary outputs, per branch for the dual ones (the main logits are "out", HRDecoder's "fused")
AUX_OUTPUTS = {
    "pspnet_single": {"aux"},
    "pspnet_dual": {"aux"},
    "pspnet_dual_authors": {"aux"},
    "deeplabv3_single": set(),
    "deeplabv3_dual": set(),
    "hed_single": {"side"},
    "hed_dual": {"side"},
    "unet_single": set(),
    "unet_dual": set(),
    "hrdecoder": {"lr", "hr", "hr_boxes"},
}


@pytest.mark.parametrize("name", sorted(AUX_OUTPUTS))
def test_forward_returns_the_logits_tensor_in_training_and_evaluation(name):
    network = _network(name)
    assert isinstance(network, SegmentationModel)
    x = torch.randn(2, 3, 32, 48)
    channels = {"hrdecoder": 4}.get(name, 2 if "dual" in name else 1)
    with torch.no_grad():
        train_logits = network.train()(x)
        eval_logits = network.eval()(x)
    for logits in (train_logits, eval_logits):
        assert type(logits) is torch.Tensor and logits.shape == (2, channels, 32, 48)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("name", sorted(AUX_OUTPUTS))
def test_forward_with_aux_gives_the_auxiliary_outputs(name, training):
    network = _network(name).train(training)
    x = torch.randn(2, 3, 32, 48)
    with torch.no_grad():
        outputs = network.forward_with_aux(x)
        logits = network(x) if not training else None
    main = "fused" if name == "hrdecoder" else "out"
    branches = [outputs["large"], outputs["small"]] if "dual" in name else [outputs]
    if "dual" in name:
        assert set(outputs) == {"large", "small"}
    for branch in branches:
        assert set(branch) == {main} | AUX_OUTPUTS[name]
        assert branch[main].shape[-2:] == (32, 48)
    if logits is not None:  # eval mode: the dict's logits are forward's (BatchNorm statistics fixed)
        torch.testing.assert_close(torch.cat([b[main] for b in branches], dim=1), logits)
    if "side" in AUX_OUTPUTS[name]:
        assert all(len(b["side"]) == 5 for b in branches)


def test_dual_forward_with_aux_feeds_each_branch_its_own_batch():
    network = _network("pspnet_dual_authors").train()
    outputs = network.forward_with_aux(torch.randn(2, 3, 32, 48), torch.randn(3, 3, 24, 40))
    assert outputs["large"]["out"].shape == outputs["large"]["aux"].shape == (2, 1, 32, 48)
    assert outputs["small"]["out"].shape == outputs["small"]["aux"].shape == (3, 1, 24, 40)


# (number of keys, their first two name parts): the parameter names the shipped and users' checkpoints hold
STATE_DICT_KEYS = {
    "pspnet_single": (160, {"aux_head.block", "aux_head.classifier", "backbone.bn1", "backbone.conv1",
                            "backbone.layer1", "backbone.layer2", "backbone.layer3", "backbone.layer4",
                            "head.bottleneck", "head.classifier", "head.stages"}),
    "pspnet_dual": (242, {"large.aux_head", "large.head", "large.layer4", "shared.bn1", "shared.conv1",
                          "shared.layer1", "shared.layer2", "shared.layer3", "small.aux_head", "small.head",
                          "small.layer4"}),
    "pspnet_dual_authors": (210, {"aux_head.block", "aux_head.classifier", "large.head", "large.layer4",
                                  "shared.bn1", "shared.conv1", "shared.layer1", "shared.layer2", "shared.layer3",
                                  "shared.layer4", "small.head", "small.layer4"}),
    "deeplabv3_single": (164, {"backbone.bn1", "backbone.conv1", "backbone.layer1", "backbone.layer2",
                               "backbone.layer3", "backbone.layer4", "head.bottleneck", "head.branches",
                               "head.classifier", "head.image_pool", "head.project"}),
    "deeplabv3_dual": (250, {"large.head", "large.layer4", "shared.bn1", "shared.conv1", "shared.layer1",
                             "shared.layer2", "shared.layer3", "small.head", "small.layer4"}),
    "hed_single": (38, {"backbone.features", "head.fuse", "head.side"}),
    "hed_dual": (62, {"large.features", "large.head", "shared.features", "small.features", "small.head"}),
    "unet_single": (136, {"branch.classifier", "branch.down_4", "branch.upcat_1", "branch.upcat_2",
                          "branch.upcat_3", "branch.upcat_4", "encoder.conv_0", "encoder.down_1", "encoder.down_2",
                          "encoder.down_3"}),
    "unet_dual": (216, {"large.classifier", "large.down_4", "large.upcat_1", "large.upcat_2", "large.upcat_3",
                        "large.upcat_4", "shared.conv_0", "shared.down_1", "shared.down_2", "shared.down_3",
                        "small.classifier", "small.down_4", "small.upcat_1", "small.upcat_2", "small.upcat_3",
                        "small.upcat_4"}),
    "hrdecoder": (332, {"backbone.bn1", "backbone.bn2", "backbone.conv1", "backbone.conv2", "backbone.layer1",
                        "backbone.stage2", "backbone.stage3", "backbone.stage4", "backbone.transition1",
                        "backbone.transition2", "backbone.transition3", "head.classifier", "head.compress",
                        "head.convs"}),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(STATE_DICT_KEYS))
def test_state_dict_keys_are_unchanged(name):
    keys = list(_network(name).state_dict())
    count, prefixes = STATE_DICT_KEYS[name]
    assert len(keys) == count
    assert {".".join(k.split(".")[:2]) for k in keys} == prefixes


def _shipped_network(bundle: str) -> torch.nn.Module:
    """The shipped model of ``bundle`` built from its package's settings (as inference.json does) and loaded
    strictly."""
    models = REPO / "bundles" / bundle / "models"
    s = json.loads((models / "model_package.json").read_text())["settings"]
    if bundle == "exudate_dsm":
        network = build_exudate_network(
            s["arch"], dual=s["dual"], out_channels=len(s["lesions"]), width=s["net_width"], layers=s["net_layers"],
            branch_layer4_blocks=s["branch_layer4_blocks"] if s["dual"] else None, dropout=s["net_dropout"],
            head_prior=s["head_prior"], shared_aux_head=s["shared_aux_head"], pooling_norm=s["pooling_norm"],
        )  # fmt: skip
    else:
        network = build_hrdecoder(
            width=s["net_width"], num_classes=len(s["lesions"]), hr_scale=s["hr_scale"], downscale=s["downscale"],
            num_crops=0, divisor=s["divisor"], head_channels=s["head_channels"], lr_only=s["lr_only"],
            head_kernel_size=s["head_kernel_size"], head_num_convs=s["head_num_convs"], num_blocks=s["net_blocks"],
            num_modules=s["net_modules"], stage1_channels=s["stage1_channels"], stem_channels=s["stem_channels"],
        )  # fmt: skip
    return load_network_weights(network, models / "model.pt").eval()


# logits of the shipped models on a seeded random input (exudate_dsm: recorded before the networks were composed
# as SegmentationModel; fundus_lesion_hrdecoder: its 0.11.0 weights):
# (input shape, output shape, mean, std, seven evenly spaced values)
SHIPPED_LOGITS = {
    "exudate_dsm": ((1, 3, 64, 96), (1, 2, 64, 96), -4.866274494260627, 1.036057928007958,
                    [-5.711802, -6.082426, -6.185756, -5.534805, -3.62119, -3.1401, -4.608724]),
    "fundus_lesion_hrdecoder": ((1, 3, 96, 128), (1, 4, 96, 128), -6.825825673435854, 2.198506054459647,
                                [-8.248772, -8.692049, -4.95754, -4.930255, -3.960519, -6.913494, -7.26636]),
}  # fmt: skip


@pytest.mark.parametrize("bundle", sorted(SHIPPED_LOGITS))
def test_shipped_models_load_and_keep_their_logits(bundle):
    shape, out_shape, mean, std, values = SHIPPED_LOGITS[bundle]
    network = _shipped_network(bundle)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = network(x)
    assert logits.shape == out_shape
    flat = logits.double().flatten()
    assert float(flat.mean()) == pytest.approx(mean, abs=1e-5)
    assert float(flat.std()) == pytest.approx(std, abs=1e-5)
    index = torch.linspace(0, flat.numel() - 1, len(values)).long()
    assert [float(v) for v in flat[index]] == pytest.approx(values, abs=1e-5)


def test_a_network_without_a_decoder_cannot_be_built():
    from monai_exudate.networks.segmentation_model import SegmentationModel

    class EncoderOnly(SegmentationModel):
        def encode(self, x: torch.Tensor) -> torch.Tensor:
            return x

    with pytest.raises(TypeError, match="abstract method decode"):
        EncoderOnly()
