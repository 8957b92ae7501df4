"""The model's provenance record: written at the start of training, read back at inference, demo models announced."""

from __future__ import annotations

import json
import logging

import pytest
from ignite.engine import Engine

from monai_exudate.engines import PROVENANCE_FILE, ModelProvenanceWriter
from monai_exudate.engines.provenance import datalist_sha256, git_commit
from monai_exudate.inference import DEMO_MODEL_WARNING, model_origin

DATALIST = {
    "training": [{"image": "a.jpg", "EX": "a_EX.tif"}, {"image": "b.jpg", "EX": "b_EX.tif"}],
    "testing": [{"image": "c.jpg", "EX": "c_EX.tif"}],
    "unused": [{"image": "d.jpg"}],
}


def _writer(path, synthetic="true", sections=("training", "testing")) -> ModelProvenanceWriter:
    return ModelProvenanceWriter(
        path, "exudate_dsm", "0.5.0", "/data/IDRiD", synthetic, DATALIST, list(sections), 3, {"arch": "unet"}
    )


def test_written_when_training_starts_and_read_back_beside_the_weights(tmp_path):
    engine = Engine(lambda engine, batch: None)
    _writer(tmp_path / PROVENANCE_FILE).attach(engine)
    engine.run([0], max_epochs=1)
    record = json.loads((tmp_path / PROVENANCE_FILE).read_text())
    assert record["synthetic"] is True and record["images"] == {"training": 2, "testing": 1}
    assert record["settings"] == {"arch": "unet"} and record["seed"] == 3 and record["version"] == "0.5.0"
    assert record["datalist_sha256"] == datalist_sha256({k: DATALIST[k] for k in ("training", "testing")})
    assert record["packages"]["torch"] and "monai_exudate" in record["packages"]
    origin = model_origin(tmp_path / "model.pt")
    assert origin["known"] and origin["synthetic"] and origin["trained_on"] == "the synthetic demo set"
    _writer(tmp_path / PROVENANCE_FILE, synthetic=False)()
    assert model_origin(tmp_path / "model.pt")["trained_on"] == "/data/IDRiD"


def test_the_datalist_hash_follows_the_content_not_the_key_order():
    reordered = {"testing": DATALIST["testing"], "training": [dict(reversed(d.items())) for d in DATALIST["training"]]}
    assert datalist_sha256(reordered) == datalist_sha256({k: DATALIST[k] for k in ("training", "testing")})
    assert datalist_sha256(DATALIST) != datalist_sha256(reordered)


def test_unknown_and_unreadable_records(tmp_path):
    assert model_origin(None) == {"known": False}
    assert model_origin(tmp_path / "model.ts") == {"known": False}
    (tmp_path / PROVENANCE_FILE).write_text("{half")
    with pytest.raises(ValueError, match=r"provenance\.json: the model's provenance record cannot be read"):
        model_origin(tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"sections \['validation'\] not found"):
        _writer(tmp_path / "x.json", sections=("training", "validation"))


def test_git_commit_outside_a_checkout_is_none(tmp_path):
    assert git_commit(tmp_path) is None


def test_demo_model_is_announced_at_start_and_end(tmp_path, caplog):
    from monai.transforms import Compose

    from monai_exudate.data.transforms import LoadFundusd
    from monai_exudate.inference import FundusInferenceRunner

    runner = FundusInferenceRunner(
        lambda x: x,
        Compose([LoadFundusd(lesions=[])]),
        Compose([]),
        output_dir=tmp_path / "out",
        progress=False,
        provenance={"model": {"known": True, "synthetic": True}},
    )
    with caplog.at_level(logging.WARNING):
        runner.run([])
    assert caplog.text.count(DEMO_MODEL_WARNING) == 2
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["settings"]["provenance"]["model"]["synthetic"] is True
