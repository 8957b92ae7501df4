"""CalibratedSigmoidd and the calibration a model package ships."""

from __future__ import annotations

import json

import pytest
import torch
from monai.data import MetaTensor

from monai_exudate.inference import CalibratedSigmoidd, package_calibration
from monai_exudate.inference.calibration import check_calibration

CALIBRATION = {"method": "isotonic", "lesions": {"EX": {"logits": [-2.0, 0.0, 4.0], "probabilities": [0.0, 0.1, 0.6]}}}


def test_without_calibration_it_is_the_sigmoid():
    logits = torch.randn(2, 5, 7)
    out = CalibratedSigmoidd("pred", ["EX", "HE"])({"pred": logits})["pred"]
    assert torch.allclose(out, torch.sigmoid(logits))


def test_calibrated_lesions_use_their_knots_and_others_the_sigmoid():
    logits = MetaTensor(torch.tensor([[[0.0, 2.0, 4.0]], [[0.0, 2.0, 4.0]]]), meta={"note": "kept"})
    out = CalibratedSigmoidd("pred", ["EX", "HE"], CALIBRATION)({"pred": logits})["pred"]
    assert out[0].flatten().tolist() == pytest.approx([0.1, 0.35, 0.6])
    assert torch.allclose(out[1], torch.sigmoid(logits[1].as_tensor()))
    assert isinstance(out, MetaTensor) and out.meta["note"] == "kept"  # Invertd still finds the metadata


def test_wrong_channel_count_is_refused():
    with pytest.raises(ValueError, match="one logit channel per lesion"):
        CalibratedSigmoidd("pred", ["EX"])({"pred": torch.zeros(2, 3, 3)})


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"lesions": {}}, "must hold 'lesions'"),
        ({"lesions": {"EX": {"logits": [0.0, 0.0], "probabilities": [0.1, 0.2]}}}, "not monotone"),
        ({"lesions": {"EX": {"logits": [0.0, 1.0], "probabilities": [0.3, 0.2]}}}, "not monotone"),
        ({"lesions": {"EX": {"logits": [0.0], "probabilities": [1.5]}}}, "outside"),
        ({"lesions": {"EX": {"logits": [0.0, 1.0], "probabilities": [0.1]}}}, "1 probabilities"),
    ],
)
def test_invalid_calibrations_are_refused_naming_the_source(bad, message):
    with pytest.raises(ValueError, match=message):
        check_calibration(bad, source="pkg.json")


def test_package_calibration_reads_the_package_beside_the_model(tmp_path):
    model = tmp_path / "model.pt"
    assert package_calibration(model) is None  # no package
    package = {"settings": {"lesions": ["EX"]}}
    (tmp_path / "model_package.json").write_text(json.dumps(package))
    assert package_calibration(model) is None  # a package never calibrated
    (tmp_path / "model_package.json").write_text(json.dumps({**package, "calibration": CALIBRATION}))
    assert package_calibration(model)["lesions"]["EX"]["probabilities"] == [0.0, 0.1, 0.6]
    broken = {**package, "calibration": {"lesions": {"EX": {"logits": [1.0, 0.0], "probabilities": [0.0, 1.0]}}}}
    (tmp_path / "model_package.json").write_text(json.dumps(broken))
    with pytest.raises(ValueError, match="model_package|model.pt"):
        package_calibration(model)


def test_non_finite_knots_are_refused():
    with pytest.raises(ValueError, match="non-finite"):
        check_calibration({"lesions": {"EX": {"logits": [0.0, float("nan")], "probabilities": [0.1, 0.2]}}})


def test_a_calibration_of_other_weights_is_not_applied(tmp_path, caplog):
    from monai_exudate.utils.hashing import file_sha256

    model = tmp_path / "model.pt"
    model.write_bytes(b"weights of the calibrated model")
    fitted = {**CALIBRATION, "fitted_on": {"weights_sha256": file_sha256(model)}}
    (tmp_path / "model_package.json").write_text(json.dumps({"settings": {}, "calibration": fitted}))
    assert package_calibration(model) is not None
    model.write_bytes(b"weights trained further")  # the package's calibration no longer describes them
    with caplog.at_level("WARNING"):
        assert package_calibration(model) is None
    assert "fitted on other weights" in caplog.text
