"""ResumeHandler and latest_checkpoint: an interrupted run continues where it stopped; bad files fail clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ignite.engine import Events
from monai.handlers import CheckpointSaver, LrScheduleHandler
from torch.utils.data import DataLoader

from monai_exudate.engines import AlphaScheduleHandler, DualBranchTrainer, ResumeHandler, latest_checkpoint
from monai_exudate.losses import ParabolicDecay
from monai_exudate.losses.factory import build_exudate_loss
from monai_exudate.networks import build_exudate_network

TOTAL_EPOCHS = 4
ITERS = 2  # iterations per epoch
LR, POWER = 0.03, 0.9


def poly_lr(iteration: int) -> float:
    """Learning rate of the poly schedule after ``iteration`` scheduler steps."""
    return LR * (1.0 - iteration / (TOTAL_EPOCHS * ITERS)) ** POWER


def build(max_epochs: int, ckpt_dir: Path, seed: int) -> tuple[DualBranchTrainer, dict, ResumeHandler]:
    """A trainer wired like the bundle: handlers at construction, resume and saver attached afterwards."""
    torch.manual_seed(seed)
    net = build_exudate_network("pspnet", dual=True, width=8, layers=(1, 1, 1, 1))
    g = torch.Generator().manual_seed(0)
    data = [
        {"image": torch.randn(3, 32, 32, generator=g), "label": (torch.rand(1, 32, 32, generator=g) < 0.1).float()}
        for _ in range(2 * ITERS)
    ]
    loss = build_exudate_loss("dsm", dual=True)
    optimizer = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.PolynomialLR(optimizer, total_iters=TOTAL_EPOCHS * ITERS, power=POWER)
    trainer = DualBranchTrainer(
        device="cpu",
        max_epochs=max_epochs,
        train_data_loader=DataLoader(data, batch_size=2, shuffle=True),
        network=net,
        optimizer=optimizer,
        loss_function=loss,
        small_branch_loader=DataLoader(data, batch_size=2, shuffle=True),
        train_handlers=[
            AlphaScheduleHandler(loss, ParabolicDecay(TOTAL_EPOCHS)),
            LrScheduleHandler(scheduler, epoch_level=False, print_lr=False),
        ],
    )
    objects = {"model": net, "optimizer": optimizer, "lr_scheduler": scheduler, "trainer": trainer}
    resume = ResumeHandler(ckpt_dir, objects)
    resume.attach(trainer)
    CheckpointSaver(str(ckpt_dir), objects, save_interval=1, n_saved=1, epoch_level=True).attach(trainer)
    return trainer, {"loss": loss.loss, **objects}, resume


def record_run(trainer: DualBranchTrainer, dsm) -> dict[str, list]:
    seen: dict[str, list] = {"epochs": [], "alpha": [], "lr": []}
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: seen["epochs"].append(e.state.epoch))
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: seen["alpha"].append((e.state.alpha, dsm.alpha)))
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: seen["lr"].append(e.optimizer.param_groups[0]["lr"]))
    return seen


def test_resume_continues_epochs_optimizer_lr_and_alpha(tmp_path):
    first, parts, resume = build(2, tmp_path, seed=0)
    seen_first = record_run(first, parts["loss"])
    first.run()
    assert resume.loaded is None  # nothing to resume from at first
    assert seen_first["epochs"] == [1, 2]
    assert [p.name for p in tmp_path.glob("*.pt")] == ["checkpoint_epoch=2.pt"]
    weights = {k: v.clone() for k, v in parts["model"].state_dict().items()}
    momentum = [s["momentum_buffer"].clone() for s in parts["optimizer"].state.values()]
    lr_after = parts["optimizer"].param_groups[0]["lr"]

    second, parts2, resume2 = build(TOTAL_EPOCHS, tmp_path, seed=1)
    loaded = {}

    def check_loaded(engine):  # registered after the ResumeHandler, so it sees the restored state
        loaded["epoch"], loaded["iteration"] = engine.state.epoch, engine.state.iteration
        loaded["weights"] = all(torch.equal(weights[k], v) for k, v in parts2["model"].state_dict().items())
        buffers = [s["momentum_buffer"] for s in parts2["optimizer"].state.values()]
        loaded["momentum"] = len(buffers) == len(momentum) and all(map(torch.equal, buffers, momentum))
        loaded["lr"] = parts2["optimizer"].param_groups[0]["lr"]
        loaded["scheduler_steps"] = parts2["lr_scheduler"].last_epoch

    second.add_event_handler(Events.STARTED, check_loaded)
    seen = record_run(second, parts2["loss"])
    second.run()

    assert resume2.loaded == tmp_path / "checkpoint_epoch=2.pt"
    assert loaded == {
        "epoch": 2,
        "iteration": 2 * ITERS,
        "weights": True,
        "momentum": True,
        "lr": pytest.approx(lr_after),
        "scheduler_steps": 2 * ITERS,
    }
    assert seen["epochs"] == [3, 4]
    assert second.state.epoch == TOTAL_EPOCHS and second.state.iteration == TOTAL_EPOCHS * ITERS
    alpha3 = ParabolicDecay(TOTAL_EPOCHS)(3)
    assert alpha3 == pytest.approx(0.75)
    assert seen["alpha"][:ITERS] == [(pytest.approx(alpha3), pytest.approx(alpha3))] * ITERS
    # the learning rate of every iteration, across the interruption, is one poly schedule
    lrs = seen_first["lr"] + seen["lr"]
    assert lrs == pytest.approx([poly_lr(i) for i in range(TOTAL_EPOCHS * ITERS)], rel=1e-6)
    assert latest_checkpoint(tmp_path).name == "checkpoint_epoch=4.pt"


def test_disabled_or_empty_folder_starts_from_scratch(tmp_path):
    trainer, _, resume = build(1, tmp_path / "none_yet", seed=0)
    trainer.run()
    assert resume.loaded is None and trainer.state.epoch == 1
    trainer, _, resume = build(2, tmp_path / "none_yet", seed=0)
    resume.enabled = False
    epochs = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs.append(e.state.epoch))
    trainer.run()
    assert resume.loaded is None and epochs == [1, 2]


@pytest.mark.parametrize("content", ["garbage", "truncated", "empty"])
def test_corrupt_checkpoint_names_the_file(tmp_path, content):
    good = tmp_path / "source"
    build(1, good, seed=0)[0].run()
    data = (good / "checkpoint_epoch=1.pt").read_bytes()
    bad = tmp_path / "models" / "checkpoint_epoch=3.pt"
    bad.parent.mkdir()
    bad.write_bytes({"garbage": b"not a checkpoint" * 8, "truncated": data[: len(data) // 2], "empty": b""}[content])
    trainer, _, _ = build(TOTAL_EPOCHS, bad.parent, seed=0)
    with pytest.raises(RuntimeError, match=r"checkpoint_epoch=3\.pt"):
        trainer.run()


def test_latest_checkpoint_picks_highest_epoch(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    for name in (
        "checkpoint_epoch=2.pt",
        "checkpoint_epoch=10.pt",
        "checkpoint_epoch=9.pt",
        ".checkpoint_epoch=11.pt.tmp",
        "model.pt",
        "checkpoint_final_iteration=50.pt",
        "other_epoch=12.pt",
    ):
        (tmp_path / name).write_bytes(b"")
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint_epoch=10.pt"
    assert latest_checkpoint(tmp_path, prefix="other") == tmp_path / "other_epoch=12.pt"


@pytest.mark.parametrize("damage", ["truncated", "nonfinite"])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, caplog, damage):
    source = tmp_path / "source"
    build(1, source, seed=0)[0].run()
    models = tmp_path / "models"
    models.mkdir()
    good = models / "checkpoint_epoch=1.pt"
    good.write_bytes((source / "checkpoint_epoch=1.pt").read_bytes())
    bad = models / "checkpoint_epoch=2.pt"
    if damage == "truncated":
        bad.write_bytes(good.read_bytes()[:300])
    else:
        state = torch.load(good, weights_only=False)
        next(iter(state["model"].values())).view(-1)[0] = float("nan")
        torch.save(state, bad)
    trainer, _, resume = build(TOTAL_EPOCHS, models, seed=0)
    epochs = []
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs.append(e.state.epoch))
    with caplog.at_level("WARNING", logger="monai_exudate.engines.resume"):
        trainer.run()
    assert resume.loaded == good and resume.skipped == [bad]
    assert epochs == [2, 3, 4]  # the epoch of the damaged file is trained again
    said = caplog.text
    assert str(bad) in said and ("unreadable" in said if damage == "truncated" else "non-finite" in said)
    assert f"resumed from {good}" in said
