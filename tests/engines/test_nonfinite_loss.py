"""NonFiniteLossHandler: "stop" ends the run before the bad step reaches the weights; "skip" drops that step."""

from __future__ import annotations

import hashlib

import pytest
import torch
from ignite.engine import Events
from monai.handlers import CheckpointSaver, StatsHandler
from torch import nn
from torch.utils.data import DataLoader

from monai_exudate.engines import DualBranchTrainer, NonFiniteLossError, NonFiniteLossHandler
from monai_exudate.losses.factory import build_exudate_loss
from monai_exudate.networks import build_exudate_network

ITERS_PER_EPOCH = 3


class NaNAtCall(nn.Module):
    """Wrap a loss and multiply it by NaN on chosen calls (1-based), keeping the graph to the weights."""

    def __init__(self, loss: nn.Module, bad_calls: set[int]) -> None:
        super().__init__()
        self.loss = loss
        self.bad_calls = bad_calls
        self.calls = 0

    def forward(self, *args):
        self.calls += 1
        value = self.loss(*args)
        return value * float("nan") if self.calls in self.bad_calls else value


def make_trainer(mode: str, bad_calls: set[int], max_epochs: int) -> tuple[DualBranchTrainer, NonFiniteLossHandler]:
    torch.manual_seed(0)
    net = build_exudate_network("pspnet", dual=True, width=8, layers=(1, 1, 1, 1))
    g = torch.Generator().manual_seed(0)
    data = [
        {"image": torch.randn(3, 32, 32, generator=g), "label": (torch.rand(1, 32, 32, generator=g) < 0.1).float()}
        for _ in range(2 * ITERS_PER_EPOCH)
    ]
    loss = build_exudate_loss("dsm", dual=True)
    loss.loss.alpha = 0.5
    handler = NonFiniteLossHandler(mode)
    trainer = DualBranchTrainer(
        device="cpu",
        max_epochs=max_epochs,
        train_data_loader=DataLoader(data, batch_size=2, shuffle=True),
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4),
        loss_function=NaNAtCall(loss, bad_calls),
        small_branch_loader=DataLoader(data, batch_size=2, shuffle=True),
        train_handlers=[handler, StatsHandler(output_transform=lambda x: None)],
    )
    return trainer, handler


def params(net: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.named_parameters()}


def momentum(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [optimizer.state[p]["momentum_buffer"].clone() for g in optimizer.param_groups for p in g["params"]]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_invalid_mode():
    with pytest.raises(ValueError, match="mode"):
        NonFiniteLossHandler("ignore")


def test_stop_raises_and_keeps_weights_and_checkpoint(tmp_path):
    bad = ITERS_PER_EPOCH + 2  # epoch 2, iteration 5
    trainer, _ = make_trainer("stop", {bad}, max_epochs=3)
    net = trainer.network
    save_dict = {"model": net, "optimizer": trainer.optimizer}
    CheckpointSaver(str(tmp_path), save_dict, save_interval=1, n_saved=1, epoch_level=True).attach(trainer)
    snapshots = {}
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: snapshots.update({e.state.iteration: params(net)}))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: snapshots.update({"epoch": params(net)}))

    with pytest.raises(NonFiniteLossError, match=rf"epoch 2, iteration {bad}\b"):
        trainer.run()

    assert max(k for k in snapshots if isinstance(k, int)) == bad - 1
    assert same(params(net), snapshots[bad - 1])  # the bad step never reached the weights
    files = sorted(tmp_path.glob("*.pt"))
    assert [f.name for f in files] == ["checkpoint_epoch=1.pt"]
    saved = torch.load(files[0], map_location="cpu", weights_only=True)["model"]
    assert same({k: saved[k] for k in snapshots["epoch"]}, snapshots["epoch"])


def test_stop_leaves_an_earlier_checkpoint_file_untouched(tmp_path):
    trainer, _ = make_trainer("stop", {ITERS_PER_EPOCH + 1}, max_epochs=2)
    save_dict = {"model": trainer.network, "optimizer": trainer.optimizer}
    CheckpointSaver(str(tmp_path), save_dict, save_interval=1, n_saved=1, epoch_level=True).attach(trainer)
    digest = {}

    def hash_files(engine):
        digest.update({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.glob("*.pt")})

    # registered after the saver: runs once the epoch-1 checkpoint is on disk
    trainer.add_event_handler(Events.EPOCH_COMPLETED, hash_files)
    with pytest.raises(NonFiniteLossError, match="epoch 2, iteration 4"):
        trainer.run()
    assert digest == {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in tmp_path.glob("*.pt")}
    assert list(digest) == ["checkpoint_epoch=1.pt"]


def test_skip_drops_the_step_and_training_goes_on():
    trainer, handler = make_trainer("skip", {2}, max_epochs=2)
    net = trainer.network
    snapshots, buffers, statistics, losses = {}, {}, {}, {}

    def record(engine):
        it = engine.state.iteration
        snapshots[it] = params(net)
        buffers[it] = momentum(engine.optimizer)
        statistics[it] = {k: v.clone() for k, v in net.named_buffers()}
        losses[it] = float(engine.state.output[0]["loss"])

    trainer.add_event_handler(Events.ITERATION_COMPLETED, record)
    initial = params(net)
    trainer.run()

    assert trainer.state.epoch == 2 and trainer.state.iteration == 2 * ITERS_PER_EPOCH
    assert handler.skipped == 1
    assert same(snapshots[2], snapshots[1])  # the NaN step left every weight ...
    assert all(torch.equal(a, b) for a, b in zip(buffers[2], buffers[1]))  # ... and the momentum as they were
    assert statistics[2].keys() and same(statistics[2], statistics[1])  # BatchNorm never saw the bad batch
    assert not same(statistics[3], statistics[2])
    assert not same(snapshots[3], snapshots[2])  # later steps train again
    assert not same(snapshots[1], initial)
    assert all(torch.isfinite(v).all() for v in params(net).values())
    assert losses[2] == 0.0 and all(0.0 < losses[i] < 2.0 for i in losses if i != 2)


def test_skip_mode_stops_after_too_many_skips_in_a_row():
    trainer, handler = make_trainer("skip", bad_calls={2, 3, 4, 5}, max_epochs=2)
    handler.max_consecutive_skips = 3
    with pytest.raises(NonFiniteLossError, match=r"3 steps in a row skipped \(max_consecutive_skips=3\)"):
        trainer.run()
    assert trainer.state.iteration == 4 and handler.skipped == 3


def test_skip_mode_counts_only_consecutive_skips():
    trainer, handler = make_trainer("skip", bad_calls={1, 2, 4, 5}, max_epochs=2)  # never 3 in a row
    handler.max_consecutive_skips = 3
    trainer.run()
    assert handler.skipped == 4 and handler.consecutive == 0


def test_skip_limit_must_be_positive():
    with pytest.raises(ValueError, match="max_consecutive_skips"):
        NonFiniteLossHandler("skip", max_consecutive_skips=0)
