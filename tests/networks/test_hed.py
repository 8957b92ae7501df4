"""The authors' per-layer learning rates of HED, as SGD parameter groups."""

import pytest

from monai_exudate.networks import build_exudate_network, hed_parameter_groups


@pytest.mark.parametrize("dual", [False, True])
def test_hed_parameter_groups_take_the_authors_rates(dual):
    net = build_exudate_network("hed", dual=dual, width=4)
    groups = hed_parameter_groups(net, 1e-3, 2e-4)
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))  # every parameter, once
    rates = sorted((round(g["lr"] / 1e-3, 6), g["weight_decay"]) for g in groups)
    assert rates == [(0.001, 2e-4), (0.002, 0.0), (0.01, 2e-4), (0.02, 0.0), (1.0, 2e-4), (2.0, 0.0),
                     (100.0, 2e-4), (200.0, 0.0)]  # fmt: skip
    conv5 = next(g for g in groups if g["lr"] == pytest.approx(0.1) and g["weight_decay"])
    assert len(conv5["params"]) == (6 if dual else 3)  # conv5_1-3 weights, one copy per branch
