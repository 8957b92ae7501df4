"""DualBranchTrainer: one batch per branch from two independently shuffled loaders; single-branch fallback."""

from __future__ import annotations

import torch
from ignite.engine import Events
from monai.engines import SupervisedTrainer
from torch import nn
from torch.utils.data import DataLoader

from monai_exudate.engines import DualBranchTrainer, ForwardWithAuxInferer
from monai_exudate.losses import SingleBranchLoss
from monai_exudate.losses.factory import build_exudate_loss
from monai_exudate.networks import build_exudate_network

SIZE = 32


def make_items(num: int, seed: int = 0) -> list[dict[str, torch.Tensor]]:
    """Images whose pixel (0, 0) of every channel holds the sample id, so a batch can be traced to its samples."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(num):
        image = torch.randn(3, SIZE, SIZE, generator=g)
        image[:, 0, 0] = float(i)
        label = torch.zeros(1, SIZE, SIZE)
        label[:, 4 + i % 8 : 12 + i % 8, 6:14] = 1.0
        items.append({"image": image, "label": label})
    return items


def ids(x: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(round(v)) for v in x[:, 0, 0, 0].tolist())


class Recorder(nn.Module):
    """Pass-through wrapper that records the sample ids of every input of each ``forward_with_aux`` call, the one the
    trainers make."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.calls: list[tuple[tuple[int, ...], ...]] = []

    def forward_with_aux(self, *inputs: torch.Tensor):
        self.calls.append(tuple(ids(x) for x in inputs))
        return self.net.forward_with_aux(*inputs)


def loader(items, seed: int, shuffle: bool = True) -> DataLoader:
    return DataLoader(items, batch_size=2, shuffle=shuffle, generator=torch.Generator().manual_seed(seed))


def dual_trainer(net, main_loader, small_loader, max_epochs: int, lr: float = 0.01) -> DualBranchTrainer:
    loss = build_exudate_loss("dsm", dual=True, mode="expected")
    loss.loss.alpha = 0.5  # both branches get a gradient (alpha = 1 would leave the small branch untouched)
    return DualBranchTrainer(
        device="cpu",
        max_epochs=max_epochs,
        train_data_loader=main_loader,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9),
        loss_function=loss,
        small_branch_loader=small_loader,
    )


def tiny_net(dual: bool) -> nn.Module:
    torch.manual_seed(0)
    return build_exudate_network("pspnet", dual=dual, width=8, layers=(1, 1, 1, 1), dropout=0.0)


def test_each_branch_gets_its_own_loader_batch():
    main_items = make_items(6)
    small_items = make_items(4, seed=1)
    for k, item in enumerate(small_items):  # ids 100.. mark the second loader's samples
        item["image"][:, 0, 0] = 100.0 + k
    net = Recorder(tiny_net(dual=True))
    trainer = dual_trainer(net, loader(main_items, 0), loader(small_items, 1), max_epochs=2)
    engine_batches = []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: engine_batches.append(ids(e.state.batch["image"])))
    trainer.run()

    assert len(net.calls) == 6  # 3 iterations per epoch, 2 epochs
    assert all(len(call) == 2 for call in net.calls)  # net.forward_with_aux(x_large, x_small)
    assert [call[0] for call in net.calls] == engine_batches  # large branch: the engine's (main loader's) batch
    for epoch in range(2):
        calls = net.calls[3 * epoch : 3 * epoch + 3]
        assert sorted(i for call in calls for i in call[0]) == list(range(6))
        small = [i for call in calls for i in call[1]]
        assert set(small) <= set(range(100, 104))
        # the small loader has 2 batches per pass: a fresh pass starts each epoch and wraps round after its end
        assert sorted(small[:4]) == list(range(100, 104))


def test_two_loaders_over_one_set_shuffle_independently():
    items = make_items(6)
    net = Recorder(tiny_net(dual=True))
    trainer = dual_trainer(net, loader(items, 0), loader(items, 1), max_epochs=4)
    trainer.run()

    pairs = [(tuple(sorted(large)), tuple(sorted(small))) for large, small in net.calls]
    by_epoch = [pairs[3 * e : 3 * e + 3] for e in range(4)]
    for epoch in by_epoch:  # each loader passes over the whole set once per epoch
        assert sorted(i for large, _ in epoch for i in large) == list(range(6))
        assert sorted(i for _, small in epoch for i in small) == list(range(6))
    assert any(large != small for large, small in pairs)  # not the same batch fed twice
    assert len({tuple(epoch) for epoch in by_epoch}) > 1  # the pairing changes from epoch to epoch


def test_dual_step_changes_weights_and_lowers_loss():
    items = make_items(2)  # one batch, seen again and again
    net = tiny_net(dual=True)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    trainer = dual_trainer(net, loader(items, 0), loader(items, 1), max_epochs=12, lr=0.05)
    losses = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output[0]["loss"])))
    trainer.run()

    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] - 0.05
    changed = [k for k, v in net.named_parameters() if not torch.equal(before[k], v)]
    assert any(k.startswith("large.") for k in changed)
    assert any(k.startswith("small.") for k in changed)
    assert any(k.startswith("shared.") for k in changed)


def test_without_small_loader_matches_supervised_trainer():
    items = make_items(4)

    def run(trainer_cls, **extra):
        net = Recorder(tiny_net(dual=False))
        loss = build_exudate_loss("dice", dual=False)
        trainer = trainer_cls(
            device="cpu",
            max_epochs=2,
            train_data_loader=loader(items, 0, shuffle=False),
            network=net,
            optimizer=torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9),
            loss_function=loss,
            **extra,
        )
        trainer.run()
        return net, trainer

    plain_net, _ = run(SupervisedTrainer, inferer=ForwardWithAuxInferer())
    net, trainer = run(DualBranchTrainer, small_branch_loader=None)

    assert not trainer.dual
    assert isinstance(trainer.loss_function, SingleBranchLoss)
    assert all(len(call) == 1 for call in net.calls)  # single input: no small-branch batch
    assert [c[0] for c in net.calls] == [(0, 1), (2, 3)] * 2
    for (name, a), b in zip(plain_net.state_dict().items(), net.state_dict().values()):
        assert torch.equal(a, b), name
    assert not torch.equal(tiny_net(dual=False).state_dict()["head.classifier.weight"], net.net.head.classifier.weight)
