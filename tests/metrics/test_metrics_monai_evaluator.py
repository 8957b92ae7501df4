"""The metrics inside a MONAI SupervisedEvaluator with its logging handlers."""

import pytest
import torch
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator
from monai.handlers import StatsHandler, from_engine

from monai_exudate.metrics import LesionMetricsReport, PixelMetric, RegionFMetric


def _loader():
    g = torch.Generator().manual_seed(0)
    data = []
    for i in range(4):
        label = (torch.rand(2, 16, 16, generator=g) < 0.2).float()
        # the "image" already holds probabilities; the identity network passes them through as the prediction
        image = (0.5 * label + 0.6 * torch.rand(2, 16, 16, generator=g)).clamp(0, 1)
        data.append({"image": image, "label": label, "present": torch.tensor([True, i % 2 == 0])})
    return DataLoader(data, batch_size=2)


def _evaluator(handlers):
    return SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=_loader(),
        network=torch.nn.Identity(),
        key_val_metric={"val_aupr": PixelMetric("aupr", output_transform=from_engine(["pred", "label"]))},
        additional_metrics={
            "val_rf": RegionFMetric(0.5),
            "report": LesionMetricsReport(["EX", "SE"], present_key="present", missing_masks="ignore"),
        },
        val_handlers=handlers,
    )


def test_key_metric_and_stats_handler(capsys):
    evaluator = _evaluator([StatsHandler(iteration_log=False, name="lesion_eval")])
    evaluator.run()
    metrics = evaluator.state.metrics
    assert evaluator.state.best_metric == pytest.approx(metrics["val_aupr"])
    assert evaluator.state.best_metric_epoch == 1
    assert 0.0 < metrics["val_aupr"] <= 1.0
    assert isinstance(metrics["val_rf"], float)
    assert {"EX_iou", "SE_aupr", "mIoU", "mAUPR", "mF_sigma0.5"} <= set(metrics)
    assert "mIoU" in capsys.readouterr().out


def test_mlflow_handler_logs_flat_report(tmp_path):
    pytest.importorskip("mlflow")
    from monai.handlers import MLFlowHandler

    uri = f"sqlite:///{tmp_path}/mlruns.db"
    handler = MLFlowHandler(
        tracking_uri=uri, iteration_log=False, experiment_name="lesion_metrics", close_on_complete=True
    )
    evaluator = _evaluator([handler])
    evaluator.run()
    import mlflow

    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("lesion_metrics")
    (run,) = client.search_runs([exp.experiment_id])
    logged = run.data.metrics
    assert logged["mIoU"] == pytest.approx(evaluator.state.metrics["mIoU"])
    assert logged["val_aupr"] == pytest.approx(evaluator.state.metrics["val_aupr"])
    assert "EX_f_sigma0.5" in logged
