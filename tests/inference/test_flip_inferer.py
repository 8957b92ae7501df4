"""Test-time flip averaging around any MONAI inferer, and its wiring in both bundles (off by default)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.inferers import SimpleInferer, SlidingWindowInferer

from monai_exudate.inference import FlipAveragedInferer

REPO = Path(__file__).resolve().parents[2]


def _network() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Conv2d(3, 2, kernel_size=3, padding=1).eval()  # not flip-symmetric: its kernel is random


def test_no_flip_is_the_wrapped_inferer_and_flips_average_the_mirrored_logits():
    net, x = _network(), torch.randn(1, 3, 12, 10)
    with torch.no_grad():
        plain = SimpleInferer()(x, net)
        assert torch.equal(FlipAveragedInferer(SimpleInferer())(x, net), plain)
        flipped = FlipAveragedInferer(SimpleInferer(), spatial_axes=[0])(x, net)
        mirror = torch.flip(net(torch.flip(x, (2,))), (2,))
        torch.testing.assert_close(flipped, (plain + mirror) / 2)
        both = FlipAveragedInferer(SlidingWindowInferer(roi_size=(8, 8), overlap=0.5), spatial_axes=[0, 1])(x, net)
        assert both.shape == plain.shape and not torch.allclose(both, plain)


def test_bad_flip_axes_are_refused_by_setting_name():
    with pytest.raises(ValueError, match="tta_flip_axes"):
        FlipAveragedInferer(SimpleInferer(), spatial_axes=[0, 0])
    with pytest.raises(ValueError, match="tta_flip_axes"):
        FlipAveragedInferer(SimpleInferer(), spatial_axes=[1])(torch.zeros(1, 3, 4), _network())


@pytest.mark.parametrize("bundle", ["exudate_dsm", "fundus_lesion_hrdecoder"])
def test_both_bundles_evaluate_and_infer_without_flips_unless_asked(bundle, tmp_path):
    configs = REPO / "bundles" / bundle / "configs"
    for files, key in ((["train.json", "evaluate.json"], "validate#inferer"), (["inference.json"], "inferer")):
        parser = ConfigParser()
        parser.read_config([str(configs / f) for f in files])
        parser.update({"ckpt_dir": str(tmp_path), "ckpt_path": str(tmp_path / "absent.pt")})
        assert parser.get_parsed_content(key).spatial_axes == []
        parser.update({"tta_flip_axes": [0]})
        assert parser.get_parsed_content(key, instantiate=True, lazy=False).spatial_axes == [0]
