"""Atomic checkpoint saving: a save that breaks half-way leaves the previous checkpoint intact."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from monai_exudate.engines import AtomicCheckpointSaver


def test_interrupted_save_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    net = torch.nn.Linear(2, 2)
    engine = Engine(lambda e, b: None)
    # n_saved=2, as in the bundles: the previous checkpoint stays until the next one is complete
    AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict={"model": net}, save_interval=1, n_saved=2).attach(engine)
    real_save = torch.save

    def broken_save(obj, f, **kwargs):  # writes part of the file, then the process "dies"
        real_save(obj, f, **kwargs)
        f.truncate(10)
        raise KeyboardInterrupt("killed while saving")

    def break_saving_after_epoch_1(engine: Engine) -> None:
        if engine.state.epoch == 2:
            monkeypatch.setattr(torch, "save", broken_save)

    engine.add_event_handler(Events.EPOCH_STARTED, break_saving_after_epoch_1)
    with pytest.raises(KeyboardInterrupt):
        engine.run([0], max_epochs=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_epoch=1.pt"]  # no partial or temporary file
    state = torch.load(tmp_path / "model_epoch=1.pt", weights_only=True)
    torch.testing.assert_close(state["weight"], net.weight.detach())


def test_saved_file_is_group_readable(tmp_path):
    engine = Engine(lambda e, b: None)
    AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict={"model": torch.nn.Linear(1, 1)}, save_interval=1,
                          n_saved=1).attach(engine)  # fmt: skip
    engine.run([0], max_epochs=1)
    (saved,) = tmp_path.glob("*.pt")
    assert saved.stat().st_mode & 0o044 == 0o044


def test_nonfinite_weights_are_never_checkpointed(tmp_path):
    from monai_exudate.engines import NonFiniteWeightsError

    net = torch.nn.Linear(2, 2)
    engine = Engine(lambda e, b: None)
    AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict={"model": net}, save_interval=1, n_saved=1).attach(engine)

    def break_weights(engine: Engine) -> None:
        if engine.state.epoch == 2:
            with torch.no_grad():
                net.weight[0, 0] = float("nan")

    engine.add_event_handler(Events.EPOCH_STARTED, break_weights)
    with pytest.raises(NonFiniteWeightsError, match=r"model_epoch=2\.pt.*weight"):
        engine.run([0], max_epochs=2)
    # n_saved=1: the epoch-1 file was due for removal, but it stays since its successor was refused
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_epoch=1.pt"]
    assert torch.isfinite(torch.load(tmp_path / "model_epoch=1.pt", weights_only=True)["weight"]).all()


def test_fixed_name_file_is_replaced_in_place_never_removed_first(tmp_path, monkeypatch):
    net = torch.nn.Linear(2, 2)
    engine = Engine(lambda e, b: None)
    saver = AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict={"model": net}, save_key_metric=True,
                                  key_metric_name="score", key_metric_filename="model.pt")  # fmt: skip
    saver.attach(engine)
    scores = iter([0.1, 0.5])
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: e.state.metrics.update(score=next(scores)))
    real_save = torch.save

    def broken_save(obj, f, **kwargs):
        if engine.state.epoch == 2:
            assert (tmp_path / "model.pt").is_file()  # the best so far is still there while its successor is written
            raise KeyboardInterrupt("killed while saving")
        real_save(obj, f, **kwargs)

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        engine.run([0], max_epochs=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_restarted_saver_keeps_n_saved_across_runs(tmp_path):
    net = torch.nn.Linear(2, 2)

    def run(max_epochs: int, start_epoch: int) -> None:
        engine = Engine(lambda e, b: None)
        engine.add_event_handler(Events.STARTED, lambda e: setattr(e.state, "epoch", start_epoch))  # as on resume
        AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict={"model": net}, save_interval=1,
                              n_saved=2).attach(engine)  # fmt: skip
        engine.run([0], max_epochs=max_epochs)

    run(3, 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_epoch=2.pt", "model_epoch=3.pt"]
    (tmp_path / "tmpab_3x9k1").write_bytes(b"PK")  # what a save killed half-way leaves behind
    run(5, 3)  # a restart at epoch 3: the files of epochs 2 and 3 count toward n_saved; the leftover goes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_epoch=4.pt", "model_epoch=5.pt"]
